"""Output for people and for machines: aligned tables and JSON lines.

Every listing command prints a readable table by default and one JSON
object per line with `--json`, so scripts never parse the table.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any, Iterable, Sequence, TextIO

import msgspec

_json = msgspec.json.Encoder()


def json_line(obj: Any, out: TextIO | None = None) -> None:
    """Write one object as a JSON line and flush (so pipes see it at once)."""
    out = out or sys.stdout
    out.write(_json.encode(obj).decode() + "\n")
    out.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print rows under headers; the last column is cut to the terminal width."""
    out = out or sys.stdout
    text_rows = [["" if v is None else str(v).replace("\n", " ") for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, value in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(value))
    width = shutil.get_terminal_size((120, 20)).columns
    used = sum(w + 2 for w in widths[:-1])
    last = max(20, width - used)

    def line(values: Sequence[str]) -> str:
        cells = [v.ljust(widths[i]) for i, v in enumerate(values[:-1])]
        tail = values[-1] if len(values[-1]) <= last else values[-1][: last - 1] + "…"
        return "  ".join([*cells, tail]).rstrip()

    out.write(line(list(headers)) + "\n")
    for row in text_rows:
        out.write(line(row) + "\n")
    out.flush()
