"""The report of a run: :class:`Report` (sections of paragraphs, tables and figures), its files
(``report.md``, ``report.html``, ``report.json``) and its stdout renderings. Imported through
:mod:`dunno.reporting`.

``report.html`` is one self-contained file: inline CSS, the tables as HTML, every PNG / SVG
figure embedded as a base64 ``data:`` URI; no script and no external asset, so it opens the
same offline, attached to a mail or years later. ``report.json`` is the record of what the
report shows (the tables' shown values, the figures' paths relative to the run directory);
:func:`read_report` reads it back, so ``dunno report RUN_DIR`` rebuilds both documents from
the run directory alone.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dunno.checkpoints import atomic_write_text
from dunno.tables import Table, render_table, table_html

__all__ = ["REPORT_FILES", "Figure", "Report", "Section", "combine_reports", "read_report",
           "render_report", "run_names", "write_report", "write_side_by_side"]

#: The files :func:`write_report` writes into a run directory.
REPORT_FILES = ("report.json", "report.md", "report.html")
_FORMAT, _VERSION = "dunno-report", 1
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}


@dataclass
class Figure:
    """A figure file of the run: ``path`` relative to the run directory, and a caption."""

    path: str
    caption: str = ""

    def __post_init__(self):
        if isinstance(self.path, os.PathLike):  # a pathlib.Path: kept as its POSIX text
            self.path = Path(self.path).as_posix()
        if not isinstance(self.path, str):
            raise TypeError(f"A report Figure's 'path' must be a str (relative to the run "
                            f"directory). Got {type(self.path).__name__}.")


Block = str | Table | Figure


@dataclass
class Section:
    """A titled part of a report: ``blocks`` are paragraphs (``str``, Markdown inline code
    and bold allowed), :class:`~dunno.tables.Table` s and :class:`Figure` s, in order."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]


@dataclass
class Report:
    """What one run shows: ``kind`` (the command: ``ood``, ``calibrate``, ``density score``,
    ``gan eval``, ``uci``, ``demo``, or ``side by side``), a title, the sections and free
    ``meta`` data (the data set, the run names). ``primary`` names the table ``--format csv``
    prints (the first table when ``None``)."""

    kind: str
    title: str
    sections: list[Section]
    meta: dict[str, Any] = field(default_factory=dict)
    primary: str | None = None

    def tables(self) -> list[Table]:
        """Every table, in order."""
        return [t for s in self.sections for t in s.tables()]

    def table(self, name: str | None = None) -> Table:
        """The table called ``name`` (:attr:`primary`, else the first, when ``None``)."""
        tables = self.tables()
        if not tables:
            raise ValueError(f"The {self.kind} report {self.title!r} has no table.")
        name = name or self.primary
        if name is None:
            return tables[0]
        for table in tables:
            if table.name == name:
                return table
        raise ValueError(f"The {self.kind} report has no table {name!r}; it has "
                         f"{[t.name for t in tables]}.")

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]

    def to_dict(self) -> dict[str, Any]:
        """The record of ``report.json`` (:func:`read_report` reads it back)."""
        sections = []
        for s in self.sections:
            blocks = []
            for b in s.blocks:
                if isinstance(b, Table):
                    blocks.append({"type": "table", **b.to_dict()})
                elif isinstance(b, Figure):
                    blocks.append({"type": "figure", "path": b.path, "caption": b.caption})
                else:
                    blocks.append({"type": "text", "text": str(b)})
            sections.append({"title": s.title, "blocks": blocks})
        return {"format": _FORMAT, "version": _VERSION, "kind": self.kind,
                "title": self.title, "primary": self.primary, "meta": _plain(self.meta),
                "sections": sections}

    @classmethod
    def from_dict(cls, data: Any, source: str = "report.json") -> Report:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{source!r} is not a dunno report record (its 'format' is not "
                             f"{_FORMAT!r}).")
        if data.get("version") != _VERSION:
            raise ValueError(f"{source!r} is a dunno report record of version "
                             f"{data.get('version')!r}; this dunno reads version {_VERSION}.")
        try:
            sections = []
            for s in data["sections"]:
                blocks: list[Block] = []
                for b in s["blocks"]:
                    if b["type"] == "table":
                        blocks.append(Table.from_dict(b))
                    elif b["type"] == "figure":
                        blocks.append(Figure(str(b["path"]), str(b.get("caption", ""))))
                    else:
                        blocks.append(str(b["text"]))
                sections.append(Section(str(s["title"]), blocks))
            return cls(str(data["kind"]), str(data["title"]), sections,
                       dict(data.get("meta") or {}), data.get("primary"))
        except (KeyError, TypeError) as err:
            raise ValueError(f"{source!r} is a malformed dunno report record (missing or bad "
                             f"{err}).") from None


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return str(obj)
    if isinstance(obj, float) and obj != obj:
        return "nan"
    return obj


# ----------------------------------------------------------------------------- renderings
def _markdown(report: Report, figures: bool = True) -> str:
    lines = [f"# {report.title}", ""]
    for section in report.sections:
        if section.title:
            lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                if block.title:
                    lines += [f"**{block.title}**", ""]
                lines += [render_table(block, "md"), ""]
                lines += [f"_{note}_" for note in block.notes]
                if block.notes:
                    lines.append("")
            elif isinstance(block, Figure):
                if figures:
                    lines += [f"![{block.caption or block.path}]({block.path})", ""]
            else:
                lines += [block, ""]
    return "\n".join(lines).rstrip() + "\n"


def _text(report: Report) -> str:
    lines: list[str] = []
    printed = [s for s in report.sections  # a section of figures only prints nothing
               if any(isinstance(b, str | Table) for b in s.blocks)]
    several = len(printed) > 1
    for section in printed:
        if several and section.title:
            lines += [f"== {section.title} =="]
        for block in section.blocks:
            if isinstance(block, Table):
                if block.title:
                    lines.append(f"{block.title}:")
                lines += [render_table(block, "table"), *block.notes, ""]
            elif isinstance(block, str):
                lines += [block.replace("`", "").replace("**", ""), ""]
    return "\n".join(lines).rstrip()


def render_report(report: Report, fmt: str = "table") -> str:
    """``report`` for stdout: ``table`` (paragraphs and aligned tables), ``md`` (the Markdown
    of ``report.md`` without the figures), ``csv`` (the :attr:`Report.primary` table) or
    ``json`` (the record of ``report.json``)."""
    if fmt == "table":
        return _text(report)
    if fmt == "md":
        return _markdown(report, figures=False).rstrip()
    if fmt == "csv":
        return render_table(report.table(), "csv").rstrip("\n")
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2)
    raise ValueError(f"The 'fmt' argument of render_report must be one of table, md, csv, "
                     f"json. Got {fmt!r} instead.")


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#1b1f23;background:#fff;line-height:1.45}
h1{border-bottom:2px solid #2f6fb0;padding-bottom:.3em}
h2{margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:14px}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #c6cdd5;padding:4px 10px}
thead th{background:#e8eef6}
th.group{background:#cfdcee;text-align:center}
td.txt{white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#f5f8fb}
figure{margin:1em 0;display:inline-block;vertical-align:top}
figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{font-size:13px;color:#57606a}
code{background:#eff1f3;padding:0 .3em;border-radius:3px}
.note{color:#57606a;font-size:13px}
.missing{color:#b42318}
"""


def _inline(text: str) -> str:
    """A paragraph as HTML: escaped, `code` and **bold** kept."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _figure_html(figure: Figure, base: Path) -> str:
    path = base / figure.path
    caption = html.escape(figure.caption or figure.path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        return (f'<p class="note">Figure <code>{html.escape(figure.path)}</code> ({caption}): '
                f"a {path.suffix} file, not embedded; open it next to this report.</p>")
    if not path.is_file():
        return (f'<p class="missing">Figure <code>{html.escape(figure.path)}</code> is missing '
                "from the run directory.</p>")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{caption}" src="data:{mime};base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _html(report: Report, base: Path) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(report.title)}</title>", f"<style>{_CSS}</style>",
             "</head><body>", f"<h1>{html.escape(report.title)}</h1>"]
    for section in report.sections:
        if section.title:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(table_html(block))
                parts += [f'<p class="note">{_inline(n)}</p>' for n in block.notes]
            elif isinstance(block, Figure):
                parts.append(_figure_html(block, base))
            else:
                parts.append(f"<p>{_inline(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(report: Report, out: str | os.PathLike) -> list[Path]:
    """Write ``report`` into the run directory ``out``: ``report.json`` (the record),
    ``report.md`` (figures linked by their relative paths) and ``report.html`` (figures
    embedded), each atomically; returns the three paths. The figures must already be in
    ``out`` (a missing one is named in the HTML, in red)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for figure in report.figures():
        if Path(figure.path).is_absolute() or ".." in Path(figure.path).parts:
            raise ValueError(f"A report's figure paths are relative to its run directory, "
                             f"inside it; got {figure.path!r}.")
    return [
        atomic_write_text(json.dumps(report.to_dict(), indent=2) + "\n", out / "report.json"),
        atomic_write_text(_markdown(report), out / "report.md"),
        atomic_write_text(_html(report, out), out / "report.html"),
    ]


def read_report(run_dir: str | os.PathLike) -> Report:
    """The :class:`Report` recorded in the run directory ``run_dir`` (its ``report.json``).
    A path that is not a directory, or a directory without a report record, raises
    ValueError saying what a run directory is."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{str(run_dir)!r} is not a run directory: "
                         f"{'it does not exist' if not run_dir.exists() else 'it is a file'}.")
    record = run_dir / "report.json"
    if not record.is_file():
        raise ValueError(
            f"{str(run_dir)!r} is not a run directory: it has no report.json (the record "
            "that dunno calibrate, ood --report-dir, density score --out, gan eval --out, "
            "uci --out and demo write next to report.md and report.html).")
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(record)!r} is not valid JSON ({err}).") from None
    return Report.from_dict(data, str(record))


def run_names(run_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """Short distinct names of run directories: the folder name, with its parent's name in
    front where two folders share a name (``a/ood``, ``b/ood``), numbered if still equal."""
    paths = [Path(os.path.abspath(p)) for p in run_dirs]
    names = [p.name or "run" for p in paths]
    names = [f"{p.parent.name}/{n}" if names.count(n) > 1 else n
             for p, n in zip(paths, names, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if names.count(name) == 1 else f"{name}-{seen[name]}")
    return out


def combine_reports(reports: Sequence[Report], names: Sequence[str]) -> Report:
    """One report of several runs of one kind, side by side: each table that the runs share
    (by name, within a section of the same title) becomes one table with the run names as
    column groups (:func:`dunno.tables.side_by_side`); each run's paragraphs and figures
    follow, marked with its name, the figures' paths prefixed with ``NAME/`` (where
    :func:`write_side_by_side` copies them)."""
    from dunno.tables import side_by_side

    if len(reports) != len(names) or not reports:
        raise ValueError(f"combine_reports needs one name per report; got {len(reports)} "
                         f"reports and {len(names)} names.")
    kinds = {r.kind for r in reports}
    if len(kinds) > 1:
        given = ", ".join(f"{n} ({r.kind})" for n, r in zip(names, reports, strict=True))
        raise ValueError(f"dunno report puts runs of one command side by side; got {given}.")
    titles = list(dict.fromkeys(s.title for r in reports for s in r.sections))
    sections = []
    for title in titles:
        parts = [(n, s) for n, r in zip(names, reports, strict=True)
                 for s in r.sections if s.title == title]
        blocks: list[Block] = []
        tables = list(dict.fromkeys(t.name for _, s in parts for t in s.tables()))
        for table_name in tables:
            found = [(n, t) for n, s in parts for t in s.tables() if t.name == table_name]
            blocks.append(side_by_side([t for _, t in found], [n for n, _ in found]))
        for name, section in parts:
            for block in section.blocks:
                if isinstance(block, Figure):
                    blocks.append(Figure(f"{_slug(name)}/{block.path}",
                                         f"{name}: {block.caption or block.path}"))
                elif isinstance(block, str):
                    blocks.append(f"**{name}**: {block}")
        sections.append(Section(title, blocks))
    kind = reports[0].kind
    return Report(kind, f"{reports[0].title}: " + ", ".join(names), sections,
                  {"runs": list(names)}, reports[0].primary)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./-]+", "-", name).strip("-./") or "run"


def write_side_by_side(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike
                       ) -> tuple[Report, list[Path]]:
    """Read the report record of every run directory (:func:`read_report`), put them side by
    side (:func:`combine_reports`, one run: its report as it is), copy their figures into
    ``out`` (``out/NAME/...`` for several runs; atomically) and write the report files there
    (:func:`write_report`). Returns the report and the paths written."""
    from dunno.checkpoints import atomic_write_bytes

    if not run_dirs:
        raise ValueError("Give at least one run directory.")
    reports = [read_report(d) for d in run_dirs]
    out = Path(out)
    files = []
    if len(reports) == 1:
        report, names = reports[0], [""]
    else:
        names = run_names(run_dirs)
        report = combine_reports(reports, names)
    for run_dir, run, name in zip(run_dirs, reports, names, strict=True):
        for figure in run.figures():
            source = Path(run_dir) / figure.path
            target = out / (f"{_slug(name)}/{figure.path}" if name else figure.path)
            if source.is_file() and os.path.abspath(source) != os.path.abspath(target):
                files.append(atomic_write_bytes(source.read_bytes(), target))
    files += write_report(report, out)
    return report, files
