"""Measure kmsguard's start-up, scale and scan times; write docs/benchmarks.md.

Run it as `python benchmarks/run.py` (or `make benchmark`). It needs the
kmsguard command installed in this interpreter's environment, moto with its
server, and about 1 GB of free disk for the scale database. The AWS CLI is
optional: without `aws` the comparison with it is reported as not measured.
Nothing here reaches AWS: every AWS call goes to a moto server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The benchmark modules import each other by name, as scripts in one folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import evidence_scan
import import_costs
import report
import scale_data
import step_timing
from install import Install, regular_install
from machine import aws_cli_version
from timing import Timing, command_environment, time_commands

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Options:
    runs: int
    scale_runs: int
    step_runs: int
    resources_per_kind: int
    data: Path | None
    output: Path


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=30, help="runs per start-up command"
    )
    parser.add_argument(
        "--scale-runs", type=int, default=15, help="runs on the large database"
    )
    parser.add_argument(
        "--step-runs", type=int, default=200, help="start/cancel step pairs"
    )
    parser.add_argument(
        "--resources", type=int, default=100, help="buckets, streams and queues each"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="keep the large database here and reuse it on the next run",
    )
    parser.add_argument("--output", type=Path, default=DOCS, help="the page to write")
    args = parser.parse_args(argv)
    return Options(
        args.runs,
        args.scale_runs,
        args.step_runs,
        args.resources,
        args.data,
        args.output,
    )


def small_database(folder: Path, env: dict[str, str], install: Install) -> Path:
    """Create a database with one environment through the command line."""
    db_path = folder / "small.db"
    add = ["env", "add", "prod", "--region", "eu-west-1", "--pipeline-account"]
    subprocess.run(
        [*install.kmsguard, "--db", str(db_path), *add, "210987654321"],
        env=env,
        capture_output=True,
        check=True,
    )
    return db_path


def start_up(
    small_db: Path, env: dict[str, str], runs: int, aws: bool, install: Install
) -> dict[str, Timing]:
    db = ["--db", str(small_db)]
    kmsguard, python = install.kmsguard, str(install.python)
    full_cli = [python, "-c", "from kmsguard.cli import main; main()"]
    commands: dict[str, list[str]] = {
        "python -c pass": [python, "-c", "pass"],
        'python -c "import click"': [python, "-c", "import click"],
        "kmsguard --help": [*kmsguard, "--help"],
        "kmsguard status": [*kmsguard, *db, "status"],
        report.FULL_STATUS: [*full_cli, *db, "status"],
        "kmsguard history prod": [*kmsguard, *db, "history", "prod"],
        "kmsguard audit verify": [*kmsguard, *db, "audit", "verify"],
        "kmsguard diagram rotation": [*kmsguard, "diagram", "rotation"],
    }
    if aws:
        commands["aws --version"] = ["aws", "--version"]
    return time_commands(commands, env, runs)


def scale(
    folder: Path, env: dict[str, str], options: Options, install: Install
) -> dict[str, Timing]:
    path = options.data or folder / "large.db"
    if not path.exists():
        print(f"building {path} (10,000 runs, 1,000,000 events)", file=sys.stderr)
        scale_data.build(path)
    db = ["--db", str(path)]
    kmsguard = install.kmsguard
    small = scale_data.SMALL_ENVIRONMENT
    commands = {
        "kmsguard status": [*kmsguard, *db, "status"],
        f"kmsguard history {small}": [*kmsguard, *db, "history", small],
    }
    return time_commands(commands, env, options.scale_runs)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    aws_version = aws_cli_version()
    with tempfile.TemporaryDirectory(prefix="kmsguard-bench-") as temporary:
        folder = Path(temporary)
        env = command_environment(folder / "pycache", {})
        print("installing kmsguard for the start-up timings", file=sys.stderr)
        install = regular_install(folder)
        print("timing start-up", file=sys.stderr)
        small_db = small_database(folder, env, install)
        startup = start_up(
            small_db, env, options.runs, aws_version is not None, install
        )
        imports = import_costs.import_costs(small_db, env, install.python)
        print("timing the large database", file=sys.stderr)
        large = scale(folder, env, options, install)
        print("timing steps in process", file=sys.stderr)
        steps = step_timing.time_steps(folder / "steps.db", options.step_runs)
        print("timing the evidence scan against moto", file=sys.stderr)
        scan = evidence_scan.run_scan_benchmark(options.resources_per_kind)
    page = report.render(
        report.Results(
            startup,
            imports,
            large,
            steps,
            scan,
            aws_version,
            options.runs,
            install.description,
        )
    )
    options.output.write_text(page, encoding="utf-8")
    print(f"wrote {options.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
