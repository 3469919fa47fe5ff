"""Import times of `kmsguard status`, per module, from `python -X importtime`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The modules worth naming: what click itself costs, and what kmsguard adds.
MODULES = (
    "click",
    "logging",
    "json",
    "sqlite3",
    "kmsguard.workflow.errors",
    "kmsguard.workflow.records",
    "kmsguard.workflow.store",
    "kmsguard.workflow.app",
    "kmsguard.commands.common",
    "kmsguard.commands.lazy",
    "kmsguard.cli",
)


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


def status_import_costs(
    db_path: Path, env: dict[str, str], runs: int = 7
) -> dict[str, float]:
    """Return the fastest cumulative import time of each of MODULES, in ms."""
    code = f"from kmsguard.cli import main; main(['--db', {str(db_path)!r}, 'status'])"
    best: dict[str, float] = {}
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        for name, micros in parse_importtime(result.stderr).items():
            if name in MODULES:
                best[name] = min(best.get(name, float("inf")), micros / 1000)
    return {name: best[name] for name in MODULES if name in best}
