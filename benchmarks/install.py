"""A regular install of the working tree, for timing start-up as operators see it.

`make install` installs kmsguard editable, and setuptools' editable finder
runs at the start of every Python process in that environment, kmsguard or
not. Operators install a wheel. So the start-up commands run from a new
virtual environment with kmsguard installed from the working tree the usual
way, and its dependencies from the package index pip is configured with.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Install:
    """The interpreter and kmsguard command the start-up figures come from."""

    python: Path
    kmsguard: list[str]
    description: str


def regular_install(folder: Path) -> Install:
    """Install the working tree into a new venv in `folder`; fall back to this one.

    When pip cannot install (no package index reachable), the figures come
    from the current environment instead, and the page states it.
    """
    target = folder / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return Install(
            python,
            [str(target / "bin" / "kmsguard")],
            "a new virtual environment with kmsguard installed from the working "
            "tree as a regular package (`pip install .`, not editable)",
        )
    print(f"regular install failed, timing this environment:\n{result.stderr}")
    beside = Path(sys.executable).parent / "kmsguard"
    return Install(
        Path(sys.executable),
        [str(beside)],
        "the benchmark's own environment, because a regular install failed "
        "(an editable install adds its import hook to every start-up here)",
    )
