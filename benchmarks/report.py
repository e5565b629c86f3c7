"""Printing a benchmark's result as a plain-text table (``python benchmarks/<name>.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def cell(value: Any) -> str:
    """A table cell: floats to four significant digits, a missing value as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_result(result: dict[str, Any], out: Callable[[str], None] = print) -> None:
    out(result["title"])
    rows = result["rows"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(cell(row.get(c, ""))) for row in rows)) for c in columns}
    out("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        out("  ".join(cell(row.get(c, "")).ljust(widths[c]) for c in columns))
    for note in result["notes"]:
        out(f"- {note}")
