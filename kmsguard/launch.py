"""The `kmsguard` command: a plain status printed at once, else the full CLI."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from kmsguard.commands.quick_status import try_status

    code = try_status(sys.argv[1:], os.environ)
    if code is not None:
        sys.exit(code)
    from kmsguard.cli import main as full_command_line

    full_command_line()
