"""Wall-clock timing of commands in fresh processes, and of calls in this one.

Commands are run round-robin (one run of each, then the next round), so that
a change in the machine's load during the benchmark affects all of them
alike. Each figure is the median of the runs, with the fastest beside it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Timing:
    """The wall-clock times of one command or call, in seconds."""

    label: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def fastest(self) -> float:
        return min(self.samples)

    def ms(self) -> str:
        return f"{self.median * 1000:.1f} ms"


def command_environment(pycache: Path, extra: dict[str, str]) -> dict[str, str]:
    """Return the environment for timed commands.

    Bytecode is written to `pycache`, outside the source tree, so kmsguard's
    modules load from bytecode as they do in any normal installation, even
    where PYTHONDONTWRITEBYTECODE is set.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=str(pycache), NO_COLOR="1", **extra)
    return env


def run_once(argv: Sequence[str], env: dict[str, str]) -> float:
    """Run a command with its output discarded; return its wall-clock time."""
    started = time.perf_counter()
    subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - started


def time_commands(
    commands: Mapping[str, Sequence[str]],
    env: dict[str, str],
    runs: int,
    warmup: int = 3,
) -> dict[str, Timing]:
    """Time each command `runs` times, round-robin, after `warmup` untimed rounds."""
    for _ in range(warmup):
        for argv in commands.values():
            run_once(argv, env)
    samples: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, argv in commands.items():
            samples[label].append(run_once(argv, env))
    return {label: Timing(label, tuple(values)) for label, values in samples.items()}


def time_call(label: str, call: Callable[[], object], runs: int) -> Timing:
    """Time a call in this process `runs` times."""
    values = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        values.append(time.perf_counter() - started)
    return Timing(label, tuple(values))
