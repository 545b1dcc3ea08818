"""dunno.reporting: report.md / report.html / report.json, reading a run back, side by side,
and the HTML as a browser shows it (headless Chromium, skipped where it is not installed)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from dunno.reporting import (
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
from dunno.tables import Column, Table, metric_column


def _report(auroc: float = 0.8765, kind: str = "ood") -> Report:
    table = Table("ood", [Column("detector", "detector"), metric_column("auroc"),
                          metric_column("fpr95")],
                  [{"detector": "msp", "auroc": auroc, "fpr95": 0.25},
                   {"detector": "energy", "auroc": 0.5, "fpr95": 0.75}],
                  index=("detector",), title="AUROC and FPR")
    return Report(kind, "dunno ood: digits", [
        Section("OOD detection", ["In-distribution `digits`; **higher** = more OOD.", table]),
        Section("Figures", [Figure("roc.png", "ROC curve")]),
    ], {"in_data": "digits"})


def _figure(path: Path) -> Path:
    from evaluation.plots import roc_pr_curves

    rng = np.random.default_rng(0)
    roc_pr_curves({"msp": (rng.normal(0, 1, 40), rng.normal(1.5, 1, 40))}, path=path)
    return path


def test_write_report_writes_three_self_contained_files(tmp_path):
    png = _figure(tmp_path / "roc.png")
    files = write_report(_report(), tmp_path)
    assert [p.name for p in files] == ["report.json", "report.md", "report.html"]
    md = (tmp_path / "report.md").read_text()
    assert "| msp | 87.65 | 25.00 |" in md and "![ROC curve](roc.png)" in md
    assert "| detector | AUROC (%) | FPR@95 (%) |" in md
    page = (tmp_path / "report.html").read_text()
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(embedded) == png.read_bytes()  # the figure itself, inline
    assert "<script" not in page.lower() and "http" not in page.lower()  # nothing fetched
    assert re.search(r'(src|href)="(?!data:)', page) is None
    assert "<style>" in page and ">87.65<" in page and "<code>digits</code>" in page
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic writes


def test_a_missing_or_pdf_figure_is_named_not_silently_dropped(tmp_path):
    report = _report()
    report.sections[1].blocks.append(Figure("curve.pdf", "a PDF"))
    write_report(report, tmp_path)  # roc.png was never drawn
    page = (tmp_path / "report.html").read_text()
    assert "<code>roc.png</code> is missing" in page and "curve.pdf" in page
    with pytest.raises(ValueError, match="relative to its run directory"):
        write_report(Report("ood", "t", [Section("s", [Figure("../x.png")])]), tmp_path)


def test_read_report_round_trips(tmp_path):
    report = _report()
    write_report(report, tmp_path)
    back = read_report(tmp_path)
    for fmt in ("table", "md", "csv", "json"):
        assert render_report(back, fmt) == render_report(report, fmt)
    assert back.figures()[0].path == "roc.png" and back.meta == {"in_data": "digits"}


def test_stdout_renderings():
    report = _report()
    text = render_report(report, "table")
    assert "AUROC and FPR:" in text and "higher = more OOD" in text and "`" not in text
    assert "==" not in text and "Figures" not in text  # the figure-only section: nothing
    md = render_report(report, "md")
    assert md.startswith("# dunno ood: digits") and "roc.png" not in md
    assert render_report(report, "csv").splitlines() == [
        "detector,AUROC (%),FPR@95 (%)", "msp,87.65,25.0", "energy,50.0,75.0"]
    assert json.loads(render_report(report, "json"))["kind"] == "ood"
    with pytest.raises(ValueError, match="'fmt' argument of render_report"):
        render_report(report, "xml")


def test_read_report_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not a run directory: it does not exist"):
        read_report(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a run directory: it is a file"):
        read_report(tmp_path / "file")
    with pytest.raises(ValueError, match="has no report.json"):
        read_report(tmp_path)
    (tmp_path / "report.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_report(tmp_path)
    (tmp_path / "report.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a dunno report record"):
        read_report(tmp_path)
    (tmp_path / "report.json").write_text('{"format": "dunno-report", "version": 1}')
    with pytest.raises(ValueError, match="malformed"):
        read_report(tmp_path)


def test_side_by_side_of_two_runs(tmp_path):
    for name, auroc in (("a", 0.9), ("b", 0.6)):
        _figure(tmp_path / name / "roc.png")
        write_report(_report(auroc), tmp_path / name)
    out = tmp_path / "both"
    report, files = write_side_by_side([tmp_path / "a", tmp_path / "b"], out)
    assert (out / "a" / "roc.png").read_bytes() == (tmp_path / "a" / "roc.png").read_bytes()
    table = report.table("ood")
    assert [c.group for c in table.columns] == [None, "a", "a", "b", "b"]
    md = (out / "report.md").read_text()
    assert "| detector | a: AUROC (%) | a: FPR@95 (%) | b: AUROC (%) | b: FPR@95 (%) |" in md
    assert "| msp | 90.00 | 25.00 | 60.00 | 25.00 |" in md
    assert "![a: ROC curve](a/roc.png)" in md and "**b**: In-distribution" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and 'class="group">a</th>' in page
    assert read_report(out).kind == "ood"  # the combined report is a run of its own
    assert {p.name for p in files} >= {"report.json", "report.md", "report.html", "roc.png"}


def test_runs_of_different_commands_are_not_combined():
    with pytest.raises(ValueError, match="runs of one command side by side"):
        combine_reports([_report(), _report(kind="calibrate")], ["x", "y"])


def test_run_names_are_short_and_distinct(tmp_path):
    assert run_names([tmp_path / "m1" / "ood", tmp_path / "m2" / "ood"]) == ["m1/ood", "m2/ood"]
    assert run_names([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    assert run_names([tmp_path / "a", tmp_path / "a"]) == [
        f"{tmp_path.name}/a-1", f"{tmp_path.name}/a-2"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_the_report_renders_in_a_browser(tmp_path):
    from PIL import Image

    _figure(tmp_path / "roc.png")
    write_report(_report(), tmp_path)
    url = (tmp_path / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,900", url])
    assert shot.is_file(), "Chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("RGB"))  # (900, 1200, 3)
    assert pixels.shape == (900, 1200, 3)
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    not_white = float((pixels < 245).any(axis=2).mean())
    assert colours > 50 and not_white > 0.02, (colours, not_white)  # text, tables, a plot
    dom = _chromium(["--dump-dom", url]).stdout
    assert "AUROC (%)" in dom and ">87.65<" in dom and ">energy<" in dom
