"""Text and JSON rendering that needs no click: tables, cells, colour choice.

The full command line (kmsguard.commands.common) and the quick status path
(kmsguard.commands.quick_status) both render with these, so the two print the
same bytes. Colour itself is click's: only the decision whether to colour is
made here.
"""

from __future__ import annotations

import os
import sys

# mypy reads the block below by this name; at run time typing is not imported.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Paint = Callable[[str], str]

# The space between two columns of a text table.
COLUMN_GAP = "  "


def use_color(err: bool = False) -> bool:
    """Return whether to colour output: only on a terminal, never with NO_COLOR.

    NO_COLOR follows no-color.org, so any non-empty value turns colour off.
    """
    stream = sys.stderr if err else sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def to_json(data: dict[str, Any]) -> str:
    """Render one JSON object the way every command prints it."""
    import json

    return json.dumps(data, indent=2, sort_keys=True, default=str)


def table_lines(
    rows: list[dict[str, Any]],
    columns: list[tuple[str, str]],
    header: Paint = str,
    continued: bool = False,
) -> list[str]:
    """Render rows as an aligned text table with a header.

    Args:
        columns: (key in each row, column title) pairs, left to right.
        header: adds colour to the header line, if any.
        continued: keep every line of the last column. The first line of a
            row's last cell stays in the row. Each further line follows the
            row on a line of its own, indented to start under the last column.
            So a multi-line message loses nothing, and the columns stay
            aligned.
    """
    titles = [title for _, title in columns]
    body = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [
        max(len(text) for text in column) for column in zip(titles, *body, strict=True)
    ]
    indent = " " * (sum(widths[:-1]) + len(COLUMN_GAP) * (len(widths) - 1))
    last_key = columns[-1][0]
    lines = [header(aligned(titles, widths))]
    for row, cells in zip(rows, body, strict=True):
        lines.append(aligned(cells, widths))
        if continued:
            further = further_lines(row.get(last_key))
            lines.extend((indent + line).rstrip() for line in further)
    return lines


def cell(value: Any) -> str:
    """Render one value for a table cell or a `name: value` line."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, sort_keys=True)
    # A line break would break the table's alignment, so only the first line shows.
    return str(value).split("\n")[0]


def further_lines(value: Any) -> list[str]:
    """Return the lines of a text cell after the first one that `cell` shows."""
    if not isinstance(value, str):
        return []
    return value.split("\n")[1:]


def aligned(cells: list[str], widths: list[int]) -> str:
    padded = (text.ljust(width) for text, width in zip(cells, widths, strict=True))
    return COLUMN_GAP.join(padded).rstrip()
