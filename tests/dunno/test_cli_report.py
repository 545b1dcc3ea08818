"""``--format table | md | csv | json`` of the evaluating commands, their report files, and
``dunno report`` (rebuild one run, put runs side by side, refuse what is not a run)."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from dunno import nets
from dunno.checkpoints import save_checkpoint
from dunno.cli import main
from dunno.reporting import read_report

IN = "digits:classes=0-4"
OOD = ["--in", IN, "--out", "digits:classes=5-9,gaussian-noise", "--detectors", "msp,energy",
       "--device", "cpu", "--no-histograms"]
PERCENT = {"auroc", "aupr_in", "aupr_out", "fpr95", "detection_error", "accuracy", "ece",
           "adaptive_ece", "mce"}

pytestmark = pytest.mark.one_thread


def _checkpoint(folder, classes: int, seed: int = 0):
    torch.manual_seed(seed)
    model = nets.create("lenet5", 1, classes, input_size=8).eval()  # untrained is enough
    return save_checkpoint(folder / "model.pt", model, arch="nets", config=model.config)


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("five"), 5)


@pytest.fixture(scope="module")
def ten(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ten"), 10)


def _ood_rows(report_dir):
    """The library's values (fractions), as run_ood returned them (ood.json)."""
    saved = json.loads((report_dir / "ood.json").read_text())
    rows = {(r["detector"], r["ood_set"]): r for r in saved["rows"]}
    for det, means in saved["mean"].items():
        rows[(det, "mean")] = means
    return rows


def _md_rows(text: str, first_header: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, [c.strip() for c in line.strip("|").split("|")],
                             strict=True)))
    return rows


LABELS = {"auroc": "AUROC (%)", "aupr_in": "AUPR-In (%)", "aupr_out": "AUPR-Out (%)",
          "fpr95": "FPR@95 (%)", "detection_error": "detection error (%)"}


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "json"])
def test_ood_formats_show_the_library_values_in_percent(five, tmp_path, capsys, fmt):
    report = tmp_path / "r"
    assert main(["ood", "--checkpoint", str(five), *OOD, "--report-dir", str(report),
                 "--format", fmt]) == 0
    out, err = capsys.readouterr()
    rows = _ood_rows(report)
    if fmt == "table":
        assert "AUROC (%):" in out and "wrote" in out and "AUROC (%)" in out
        return
    assert "wrote" in err and "wrote" not in out  # stdout holds only the tables
    if fmt == "json":
        data = json.loads(out)
        assert data == json.loads((report / "report.json").read_text())  # = the record
        table = next(b for s in data["sections"] for b in s["blocks"]
                     if b.get("name") == "ood")
        shown = {(r["detector"], r["ood_set"]): r for r in table["rows"]}
        for key, row in rows.items():
            for metric in LABELS:
                assert shown[key][metric] == pytest.approx(100 * row[metric], rel=1e-10)
    elif fmt == "csv":
        parsed = list(csv.DictReader(io.StringIO(out)))
        assert len(parsed) == len(rows) == 6
        for r in parsed:
            for metric, label in LABELS.items():
                assert float(r[label]) == pytest.approx(
                    100 * rows[(r["detector"], r["OOD set"])][metric], rel=1e-10)
    else:
        parsed = _md_rows(out, "detector")
        assert len(parsed) == 6
        for r in parsed:
            for metric, label in LABELS.items():
                assert r[label] == f"{100 * rows[(r['detector'], r['OOD set'])][metric]:.2f}"
        md = (report / "report.md").read_text()
        assert "\n".join(out.splitlines()[2:12]) in md  # stdout shows the report's table


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_calibrate_formats_show_the_library_values(ten, tmp_path, capsys, fmt):
    out_dir = tmp_path / "cal"
    assert main(["calibrate", "--checkpoint", str(ten), "--data", "digits", "--method",
                 "temperature", "--out", str(out_dir), "--device", "cpu",
                 "--format", fmt]) == 0
    out = capsys.readouterr().out
    saved = json.loads((out_dir / "calibration.json").read_text())
    library = {"uncalibrated": saved["before"], "temperature": saved["after"]["temperature"]}
    keys = ("accuracy", "ece", "adaptive_ece", "mce", "nll", "brier")
    if fmt == "json":
        data = json.loads(out)
        (table,) = [b for s in data["sections"] for b in s["blocks"] if b["type"] == "table"]
        for row in table["rows"]:
            for key in keys:
                factor = 100 if key in PERCENT else 1
                assert row[key] == pytest.approx(factor * library[row["method"]][key],
                                                 rel=1e-10)
    elif fmt == "csv":
        parsed = list(csv.DictReader(io.StringIO(out)))
        assert [r["method"] for r in parsed] == ["uncalibrated", "temperature"]
        for r in parsed:
            assert float(r["ECE (%)"]) == pytest.approx(100 * library[r["method"]]["ece"])
            assert float(r["NLL (nats)"]) == pytest.approx(library[r["method"]]["nll"])
            assert float(r["accuracy (%)"]) == pytest.approx(
                100 * library[r["method"]]["accuracy"])
    else:
        parsed = _md_rows(out, "method")
        assert [r["method"] for r in parsed] == ["uncalibrated", "temperature"]
        for r in parsed:
            assert r["ECE (%)"] == f"{100 * library[r['method']]['ece']:.2f}"
            assert r["MCE (%)"] == f"{100 * library[r['method']]['mce']:.2f}"
            assert r["NLL (nats)"] == f"{library[r['method']]['nll']:.4f}"
    for name in ("report.md", "report.html", "report.json"):
        assert (out_dir / name).is_file()


def test_calibrate_prints_its_table_once(ten, tmp_path, capsys):
    assert main(["calibrate", "--checkpoint", str(ten), "--data", "digits", "--method",
                 "temperature", "--out", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("uncalibrated") == 1 and out.count("  ECE (%)") == 1
    assert "best ECE:" in out and "fitted temperature T" in out
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1  # the reliability diagram, embedded


def test_report_rebuilds_and_puts_two_models_side_by_side(five, tmp_path, capsys):
    other = _checkpoint(tmp_path, 5, seed=1)
    for name, model in (("a", five), ("b", other)):
        assert main(["ood", "--checkpoint", str(model), *OOD,
                     "--report-dir", str(tmp_path / name)]) == 0
    (tmp_path / "a" / "report.md").unlink()
    (tmp_path / "a" / "report.html").unlink()
    assert main(["report", str(tmp_path / "a")]) == 0  # rebuilt from report.json alone
    assert (tmp_path / "a" / "report.html").is_file()
    capsys.readouterr()
    both = tmp_path / "both"
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(both),
                 "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "| detector | OOD set | a: AUROC (%) |" in out and "| b: AUROC (%) |" in out
    combined = read_report(both).table("ood")
    a, b = _ood_rows(tmp_path / "a"), _ood_rows(tmp_path / "b")
    msp = next(r for r in combined.rows if r["detector"] == "msp"
               and r["ood_set"] == "gaussian-noise")
    assert msp["a/auroc"] == pytest.approx(100 * a[("msp", "gaussian-noise")]["auroc"])
    assert msp["b/auroc"] == pytest.approx(100 * b[("msp", "gaussian-noise")]["auroc"])
    assert (both / "a" / "roc_gaussian-noise.png").is_file()
    assert "a/roc_gaussian-noise.png" in (both / "report.md").read_text()


def test_report_refuses_what_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a run directory: it has no report.json" in err and "Traceback" not in err
    assert main(["report", str(tmp_path / "x"), str(tmp_path / "y")]) == 2
    assert "--out DIR is needed" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for a refused run
