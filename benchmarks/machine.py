"""The machine and the versions a benchmark ran with."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

PACKAGES = ("kmsguard", "click", "sqlite-utils", "transitions", "boto3", "botocore")


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, else platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory() -> str:
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    return "unknown"


def load_average() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def machine_rows() -> list[tuple[str, str]]:
    return [
        ("system", platform.platform()),
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical CPU(s)"),
        ("memory", memory()),
        ("load average at start (1, 5, 15 min)", load_average()),
    ]


def aws_cli_version() -> str | None:
    """Return `aws --version`, or None when the AWS CLI is not installed."""
    found = shutil.which("aws")
    if found is None:
        return None
    result = subprocess.run(
        [found, "--version"], capture_output=True, text=True, check=False
    )
    return (result.stdout or result.stderr).strip() or "unknown version"


def version_rows(aws_version: str | None) -> list[tuple[str, str]]:
    rows = [
        ("Python", sys.version.split()[0]),
        ("SQLite", sqlite3.sqlite_version),
    ]
    for package in PACKAGES:
        try:
            rows.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((package, "not installed"))
    rows.append(("moto", _moto_version()))
    rows.append(("AWS CLI", aws_version or "not installed"))
    return rows


def _moto_version() -> str:
    try:
        return importlib.metadata.version("moto")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
