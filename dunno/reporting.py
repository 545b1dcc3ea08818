"""Small helpers for command output: aligned text tables, JSON/CSV files, and the one report
writer of every evaluating command.

A :class:`Report` is sections of paragraphs, :class:`~dunno.tables.Table` s and figures;
:func:`write_report` writes it to a run directory as ``report.md``, a self-contained
``report.html`` (inline CSS, figures embedded as base64 data URIs, no scripts, nothing
fetched) and ``report.json`` -- the record of what the report shows, from which
:func:`read_report` (``dunno report``) rebuilds it; :func:`render_report` prints it on stdout
(``--format table | md | csv | json``), the same tables as the files.

Every file is written atomically (:func:`dunno.checkpoints.atomic_write_text`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dunno.checkpoints import atomic_write_text
from dunno.report_model import (
    REPORT_FILES,
    Figure,
    Report,
    Section,
    combine_reports,
    read_report,
    render_report,
    run_names,
    write_report,
    write_side_by_side,
)

__all__ = [
    "REPORT_FILES",
    "Figure",
    "Report",
    "Section",
    "combine_reports",
    "format_table",
    "markdown_table",
    "read_report",
    "render_report",
    "run_names",
    "write_csv",
    "write_json",
    "write_report",
    "write_side_by_side",
]


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** (-digits)):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                 digits: int = 4) -> str:
    """Render ``rows`` (dicts) as an aligned plain-text table."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c), digits) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
            for r in rows if r.get(c) is not None)
        for c in columns
    ]

    def line(values):  # numbers right-aligned, text left-aligned
        pairs = zip(values, widths, numeric, strict=True)
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in pairs).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                   digits: int = 4) -> str:
    """Render ``rows`` as a GitHub-flavoured Markdown table."""
    if not rows:
        return "_(no rows)_"
    columns = list(columns or rows[0].keys())
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c), digits) for c in columns) + " |")
    return "\n".join(out)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return _jsonable(obj.item())
    if isinstance(obj, os.PathLike):
        return str(obj)
    return obj


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON (numpy/torch scalars converted, inf/nan as strings)."""
    return atomic_write_text(json.dumps(_jsonable(obj), indent=2) + "\n", path)


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike,
              columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as CSV with a header line."""
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _jsonable(v) for k, v in row.items()})
    return atomic_write_text(buffer.getvalue(), path)
