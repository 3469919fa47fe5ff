"""Import times of `kmsguard status` and `kmsguard history`, from `python -X importtime`."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Modules the quick status path loads, and modules the full command line adds.
QUICK_MODULES = (
    "sqlite3",
    "datetime",
    "kmsguard.commands.text",
    "kmsguard.workflow.status_view",
    "kmsguard.commands.quick_status",
)
FULL_MODULES = (
    "click",
    "logging",
    "kmsguard.workflow.records",
    "kmsguard.workflow.store",
    "kmsguard.workflow.app",
    "kmsguard.commands.common",
    "kmsguard.cli",
)
QUICK_CODE = (
    "import sys; from kmsguard.launch import main; "
    "sys.argv = ['kmsguard', '--db', {db!r}, 'status']; main()"
)
FULL_CODE = "from kmsguard.cli import main; main(['--db', {db!r}, 'history', 'prod'])"


def parse_importtime(text: str) -> dict[str, int]:
    """Return the cumulative microseconds of each module in -X importtime output."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if cumulative.strip().isdigit():
            found[name.strip()] = int(cumulative)
    return found


def fastest_imports(
    python: Path, code: str, env: dict[str, str], modules: tuple[str, ...], runs: int
) -> dict[str, float]:
    """Return the fastest cumulative import time of each of `modules`, in ms."""
    best: dict[str, float] = {}
    for _ in range(runs):
        result = subprocess.run(
            [str(python), "-X", "importtime", "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        for name, micros in parse_importtime(result.stderr).items():
            if name in modules:
                best[name] = min(best.get(name, float("inf")), micros / 1000)
    return {name: best[name] for name in modules if name in best}


def import_costs(
    db_path: Path, env: dict[str, str], python: Path, runs: int = 7
) -> dict[str, dict[str, float]]:
    """Return the import costs of the quick status path and of the full CLI."""
    db = str(db_path)
    return {
        "kmsguard status": fastest_imports(
            python, QUICK_CODE.format(db=db), env, QUICK_MODULES, runs
        ),
        "kmsguard history prod": fastest_imports(
            python, FULL_CODE.format(db=db), env, FULL_MODULES, runs
        ),
    }
