"""One step without AWS calls, commit included, timed in process.

Opening an onboarding run and cancelling it are the two steps that call AWS
for nothing: onboarding has no key yet at `start`, and `cancel` checks no
drift. Each is a full engine step: load, integrity check, order check,
guards, and one BEGIN IMMEDIATE transaction that writes the run and its
hash-chained audit event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from timing import Timing

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App, Settings

ONBOARDING = PROCEDURES["onboarding"]


def time_steps(db_path: Path, runs: int) -> tuple[Timing, Timing, bool]:
    """Time `runs` start and cancel steps; also return whether AWS was reached."""
    app = App(Settings(db_path=db_path, operator="bench"))
    try:
        app.add_environment("bench", "eu-west-1", "210987654321")
        starts, cancels = [], []
        cancel = {"reason": "benchmark"}
        for _ in range(runs):
            starts.append(_timed(lambda: app.start(ONBOARDING, "bench", {})))
            cancels.append(
                _timed(lambda: app.step(ONBOARDING, "cancel", "bench", dict(cancel)))
            )
        # The App builds its AWS session on first use only.
        reached_aws = app._aws is not None
    finally:
        app.close()
    return (
        Timing("onboarding start", tuple(starts)),
        Timing("onboarding cancel", tuple(cancels)),
        reached_aws,
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
