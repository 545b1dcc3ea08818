"""The one table of every printed result and report: :class:`Table`, its :class:`Column` s and
the renderings ``table`` (aligned text), ``md`` (GitHub Markdown), ``csv``, ``json`` and
``html``.

One unit per metric everywhere: :func:`metric_column` knows how each metric of the project is
shown -- rates (AUROC, AUPR, FPR@95, ECE, MCE, accuracy, detection error) in percent with two
decimals, ``%`` in the header; NLL in nats, Brier and bits/dim with four decimals. A table
holds the library's values (fractions) and scales them when it renders, so every command's
stdout, its ``report.md`` and its ``report.html`` show the same numbers::

    from dunno.tables import Table, metric_column, render_table
    table = Table("ood", [Column("detector", "detector"), metric_column("auroc")],
                  [{"detector": "msp", "auroc": 0.9123}], index=("detector",))
    print(render_table(table, "md"))      # | detector | AUROC (%) |  ... | msp | 91.23 |

``csv`` and ``json`` carry the shown values (already in percent) at full precision;
:func:`side_by_side` puts the same table of several runs next to each other, the run names
as column groups.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["FORMATS", "Column", "Table", "metric_column", "render_table", "side_by_side",
           "table_html"]

#: The stdout formats of the evaluating commands (``--format``).
FORMATS = ("table", "md", "csv", "json")

#: How each metric is shown: (header, unit, scale, decimals).
_METRICS: dict[str, tuple[str, str | None, float, int]] = {
    "auroc": ("AUROC", "%", 100.0, 2),
    "aupr_in": ("AUPR-In", "%", 100.0, 2),
    "aupr_out": ("AUPR-Out", "%", 100.0, 2),
    "fpr95": ("FPR@95", "%", 100.0, 2),
    "detection_error": ("detection error", "%", 100.0, 2),
    "accuracy": ("accuracy", "%", 100.0, 2),
    "ece": ("ECE", "%", 100.0, 2),
    "adaptive_ece": ("adaptive ECE", "%", 100.0, 2),
    "mce": ("MCE", "%", 100.0, 2),
    "nll": ("NLL", "nats", 1.0, 4),
    "brier": ("Brier", None, 1.0, 4),
    "nll_nats": ("NLL", "nats", 1.0, 4),
    "bits_per_dim": ("bits/dim", None, 1.0, 4),
    "recon_nats": ("reconstruction", "nats", 1.0, 4),
}


@dataclass(frozen=True)
class Column:
    """One column of a :class:`Table`.

    ``key`` names the value in each row; the header shows ``header`` and, when given,
    ``(unit)``. A number is shown as ``value * scale`` with ``digits`` decimals (integers as
    they are); ``se`` names a second key whose value (scaled alike) is shown as
    ``mean ± se`` in text, Markdown and HTML and as its own column ``HEADER se`` in csv and
    json. ``group`` is the column group (a run's name in :func:`side_by_side`)."""

    key: str
    header: str
    unit: str | None = None
    digits: int = 4
    scale: float = 1.0
    se: str | None = None
    group: str | None = None

    @property
    def label(self) -> str:
        """The header with its unit, e.g. ``AUROC (%)``."""
        return f"{self.header} ({self.unit})" if self.unit else self.header

    @property
    def full_label(self) -> str:
        """:attr:`label` with the group first (``run-a: AUROC (%)``), for flat headers."""
        return f"{self.group}: {self.label}" if self.group else self.label

    def value(self, row: dict[str, Any], key: str | None = None) -> Any:
        """The shown value of ``row[key or self.key]`` (scaled, to 12 significant digits so
        that ``0.8765 * 100`` shows as ``87.65``; ``None`` when missing)."""
        value = _scalar(row.get(self.key if key is None else key))
        if isinstance(value, bool) or not isinstance(value, int | float) or self.scale == 1.0:
            return value
        scaled = value * self.scale
        return float(f"{scaled:.12g}") if math.isfinite(scaled) else scaled

    def cell(self, row: dict[str, Any]) -> str:
        """The shown text of this column in ``row``."""
        text = _number(self.value(row), self.digits)
        if self.se is not None and row.get(self.se) is not None:
            text += " ± " + _number(self.value(row, self.se), self.digits)
        return text


def metric_column(key: str, *, header: str | None = None, group: str | None = None,
                  se: str | None = None) -> Column:
    """The :class:`Column` of a known metric ``key`` (``auroc``, ``aupr_in``, ``aupr_out``,
    ``fpr95``, ``detection_error``, ``accuracy``, ``ece``, ``adaptive_ece``, ``mce``, ``nll``,
    ``brier``, ``nll_nats``, ``bits_per_dim``, ``recon_nats``) in its one unit."""
    if key not in _METRICS:
        raise ValueError(f"The 'key' argument of metric_column must be one of "
                         f"{sorted(_METRICS)}. Got {key!r} instead.")
    name, unit, scale, digits = _METRICS[key]
    return Column(key, header or name, unit, digits, scale, se, group)


def _scalar(value: Any) -> Any:
    """A NumPy or torch scalar (0-d) as the Python number it holds, so that it is scaled and
    rounded like one; anything else as it is."""
    if (not isinstance(value, int | float | str) and getattr(value, "ndim", None) == 0
            and callable(getattr(value, "item", None))):
        return value.item()
    return value


def _number(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


@dataclass
class Table:
    """Rows of the library's values and the columns that show them.

    ``name`` identifies the table within a report (the same name in two runs is the same
    table, for :func:`side_by_side`); ``index`` names the columns that identify a row
    (``detector`` and ``ood_set``, ``method``); ``title`` is printed above it; ``notes`` are
    printed below it."""

    name: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    index: tuple[str, ...] = ()
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = list(self.columns)
        keys = [c.key for c in self.columns]
        if len(set(keys)) != len(keys):
            raise ValueError(f"The 'columns' of table {self.name!r} repeat a key: {keys}.")
        missing = [k for k in self.index if k not in keys]
        if missing:
            raise ValueError(f"The 'index' of table {self.name!r} names no column: {missing}.")
        labels = [label for label, _, _ in self._flat()]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"The 'columns' of table {self.name!r} repeat a header (with its "
                             f"unit and group): {repeated}; each column needs its own, or its "
                             "csv values would be read under the wrong one.")

    def column(self, key: str) -> Column:
        """The column of ``key``."""
        for column in self.columns:
            if column.key == key:
                return column
        raise KeyError(key)

    def _flat(self) -> list[tuple[str, Column, str | None]]:
        """(label, column, key) per csv/json field: a ``se`` column adds ``LABEL se``."""
        out = []
        for c in self.columns:
            out.append((c.full_label, c, None))
            if c.se is not None:
                out.append((f"{c.full_label} se", c, c.se))
        return out

    def display_rows(self) -> list[dict[str, Any]]:
        """The rows as shown, keyed by label: scaled numbers at full precision."""
        return [{label: c.value(r, key) for label, c, key in self._flat()} for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """The table as shown (scaled values), JSON-ready; :meth:`from_dict` reads it back.
        Rows are keyed by column key (a ``se`` value by its own key)."""
        rows = []
        for r in self.rows:
            row = {}
            for _, c, key in self._flat():
                row[key or c.key] = _jsonable(c.value(r, key))
            rows.append(row)
        return {
            "name": self.name, "title": self.title, "index": list(self.index),
            "notes": list(self.notes),
            "columns": [{"key": c.key, "header": c.header, "unit": c.unit, "digits": c.digits,
                         "se": c.se, "group": c.group} for c in self.columns],
            "rows": rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Table:
        """A table from :meth:`to_dict` (the values are the shown ones; scale 1)."""
        try:
            columns = [Column(c["key"], c["header"], c.get("unit"), int(c.get("digits", 4)),
                              1.0, c.get("se"), c.get("group")) for c in data["columns"]]
            rows = [{k: _from_json(v) for k, v in r.items()} for r in data["rows"]]
            return cls(str(data["name"]), columns, rows, tuple(data.get("index", ())),
                       str(data.get("title", "")), list(data.get("notes", [])))
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"Not a table record (dunno.tables.Table.to_dict): missing or "
                             f"malformed {err}.") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": JSON has no such numbers
    if hasattr(value, "item") and callable(value.item):
        return _jsonable(value.item())
    return value


def _from_json(value: Any) -> Any:
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _is_numeric(table: Table, column: Column) -> bool:
    values = [_scalar(r.get(column.key)) for r in table.rows if r.get(column.key) is not None]
    return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                for v in values)


def _text(table: Table) -> str:
    if not table.rows:
        return "(no rows)"
    cols = table.columns
    labels = [c.label for c in cols]
    cells = [[c.cell(r) for c in cols] for r in table.rows]
    widths = [max(len(label), *(len(row[i]) for row in cells)) for i, label in enumerate(labels)]
    numeric = [_is_numeric(table, c) for c in cols]
    groups = [c.group for c in cols]
    if any(groups):  # a group's name must fit over its columns
        i = 0
        while i < len(cols):
            j = i
            while j + 1 < len(cols) and groups[j + 1] == groups[i]:
                j += 1
            if groups[i]:
                span = sum(widths[i:j + 1]) + 2 * (j - i)
                widths[j] += max(0, len(groups[i]) - span)
            i = j + 1

    def line(values: Sequence[str], align: Sequence[bool]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, align, strict=True)]
        return "  ".join(parts).rstrip()

    out = []
    if any(groups):
        parts, i = [], 0
        while i < len(cols):
            j = i
            while j + 1 < len(cols) and groups[j + 1] == groups[i]:
                j += 1
            span = sum(widths[i:j + 1]) + 2 * (j - i)
            parts.append((groups[i] or "").ljust(span))
            i = j + 1
        out.append("  ".join(parts).rstrip())
    out.append(line(labels, numeric))
    out.append(line(["-" * w for w in widths], [False] * len(cols)))
    out.extend(line(row, numeric) for row in cells)
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(table: Table) -> str:
    if not table.rows:
        return "_(no rows)_"
    cols = table.columns
    align = ["---:" if _is_numeric(table, c) else "---" for c in cols]
    out = ["| " + " | ".join(_md_escape(c.full_label) for c in cols) + " |",
           "|" + "|".join(align) + "|"]
    out.extend("| " + " | ".join(_md_escape(c.cell(r)) for c in cols) + " |"
               for r in table.rows)
    return "\n".join(out)


def _csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    flat = table._flat()
    writer.writerow([label for label, _, _ in flat])
    for row in table.display_rows():
        writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v)
                         for v in row.values()])
    return buffer.getvalue()


def table_html(table: Table) -> str:
    """The table as an HTML ``<table>`` (column groups as a header row with ``colspan``)."""
    esc = html.escape
    cols = table.columns
    numeric = [_is_numeric(table, c) for c in cols]
    head = []
    if any(c.group for c in cols):
        cells, i = [], 0
        while i < len(cols):
            j = i
            while j + 1 < len(cols) and cols[j + 1].group == cols[i].group:
                j += 1
            cells.append(f'<th colspan="{j - i + 1}" class="group">{esc(cols[i].group or "")}'
                         "</th>")
            i = j + 1
        head.append("<tr>" + "".join(cells) + "</tr>")
    head.append("<tr>" + "".join(f'<th class="{"num" if n else "txt"}">{esc(c.label)}</th>'
                                 for c, n in zip(cols, numeric, strict=True)) + "</tr>")
    body = ["<tr>" + "".join(f'<td class="{"num" if n else "txt"}">{esc(c.cell(r))}</td>'
                             for c, n in zip(cols, numeric, strict=True)) + "</tr>"
            for r in table.rows]
    caption = f"<caption>{esc(table.title)}</caption>" if table.title else ""
    return (f'<table id="table-{esc(table.name)}">{caption}<thead>{"".join(head)}</thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def render_table(table: Table, fmt: str = "table") -> str:
    """``table`` as ``fmt``: ``table`` (aligned text), ``md``, ``csv``, ``json`` or
    ``html``."""
    renderers = {"table": _text, "md": _markdown, "csv": _csv, "html": table_html,
                 "json": lambda t: json.dumps(t.to_dict(), indent=2)}
    if fmt not in renderers:
        raise ValueError(f"The 'fmt' argument of render_table must be one of "
                         f"{sorted(renderers)}. Got {fmt!r} instead.")
    return renderers[fmt](table)


def side_by_side(tables: Sequence[Table], runs: Sequence[str]) -> Table:
    r"""One table of the same table of several runs: the index columns once, then each run's
    other columns grouped under its name (``runs[i]`` for ``tables[i]``). Rows are matched
    on the index values (the union over the runs, in the order first seen); a row a run lacks
    is left empty there, and a note of the merged table names such rows (a mean row then
    averages different rows in each run). Tables without an index are matched row by row."""
    if len(tables) != len(runs) or not tables:
        raise ValueError(f"side_by_side needs one run name per table; got {len(tables)} "
                         f"tables and {len(runs)} names.")
    if len(set(runs)) != len(runs):
        raise ValueError(f"The run names of side_by_side must differ; got {list(runs)}.")
    first = tables[0]
    index = first.index
    for table in tables[1:]:
        if table.index != index:
            raise ValueError(f"Table {first.name!r} is indexed by {list(index)} in one run "
                             f"and by {list(table.index)} in another.")
    columns = [replace(first.column(k), group=None) for k in index]
    keyed: list[dict[tuple, dict]] = []
    order: dict[tuple, None] = {}
    for table in tables:
        rows: dict[tuple, dict] = {}
        for i, row in enumerate(table.rows):
            key = tuple(row.get(k) for k in index) if index else (i,)
            rows[key] = row
            order.setdefault(key, None)
        keyed.append(rows)
    for run, table in zip(runs, tables, strict=True):
        for c in table.columns:
            if c.key not in index:
                columns.append(replace(c, key=f"{run}/{c.key}", group=run,
                                       se=None if c.se is None else f"{run}/{c.se}"))
    merged = []
    for key in order:
        row = dict(zip(index, key, strict=False)) if index else {}
        for run, table, rows in zip(runs, tables, keyed, strict=True):
            source = rows.get(key, {})
            for c in table.columns:
                if c.key in index:
                    continue
                row[f"{run}/{c.key}"] = source.get(c.key)
                if c.se is not None:
                    row[f"{run}/{c.se}"] = source.get(c.se)
        merged.append(row)
    notes = _unique(note for table in tables for note in table.notes)
    missing = [(key, [run for run, rows in zip(runs, keyed, strict=True) if key not in rows])
               for key in order]
    missing = [(key, absent) for key, absent in missing if absent]
    if missing and index:
        shown = "; ".join(f"{' / '.join(map(str, key))} not in {', '.join(absent)}"
                          for key, absent in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        notes.append(f"The runs' {first.name!r} tables hold different rows ({shown}{more}): "
                     "a row that aggregates others (a mean) averages different rows in each "
                     "run, so compare such rows across the runs with care.")
    return Table(first.name, columns, merged, index, first.title, notes)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
