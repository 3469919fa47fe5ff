"""Write each procedure's state diagram and step table into docs/procedures/.

Each page keeps its own text: only the block between the generated marks is
replaced, and a page without the block gets it appended. With --check nothing
is written, and the exit status is 1 when a page is out of date.

Run it as `python scripts/gen_docs.py [--check]` (or `make docs`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kmsguard.states import PROCEDURES
from kmsguard.workflow.diagram import update_page

DOCS = Path(__file__).resolve().parent.parent / "docs" / "procedures"


def page_path(name: str, docs: Path = DOCS) -> Path:
    return docs / f"{name}.md"


def stale_pages(docs: Path = DOCS) -> list[Path]:
    """Return the pages whose generated block differs from the procedure data."""
    stale = []
    for name, procedure in PROCEDURES.items():
        path = page_path(name, docs)
        text = path.read_text(encoding="utf-8") if path.exists() else None
        if update_page(text, procedure) != text:
            stale.append(path)
    return stale


def write_pages(docs: Path = DOCS) -> list[Path]:
    """Regenerate every page; return the pages that changed."""
    docs.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, procedure in PROCEDURES.items():
        path = page_path(name, docs)
        text = path.read_text(encoding="utf-8") if path.exists() else None
        updated = update_page(text, procedure)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for path in stale:
            print(f"out of date: {path}; run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_pages():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
