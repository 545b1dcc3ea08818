"""The `dunno` command: datasets, train, demo, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from dunno.cli import main


def test_datasets_lists_and_verifies(data_dir, capsys, tmp_path):
    assert main(["datasets", "--data-dir", str(data_dir), "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    status = {r["name"]: r["status"] for r in json.loads((tmp_path / "d.json").read_text())}
    assert status["mnist"] == status["fashion-mnist"] == "verified"
    assert all(v == "verified" for k, v in status.items() if k.startswith("uci/"))
    assert status["digits"] == "bundled"
    assert "mnist" in out and "verified" in out


def test_datasets_reports_missing_files(tmp_path, capsys):
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and str(tmp_path) in out


def test_train_classifier_writes_checkpoint_and_reports(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "classifier", "--backbone", "lenet5", "--data", "digits",
                 "--epochs", "2", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    assert (out / "model.pt").is_file() and (out / "history.csv").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.1 < metrics["metrics"]["test_acc"] <= 1.0
    printed = capsys.readouterr().out
    assert "val_acc" in printed and "test_acc" in printed
    # resuming a finished run trains nothing more and gives the same model
    assert main(["train", "classifier", "--data", "digits", "--epochs", "2", "--out", str(out),
                 "--quiet", "--resume", "--device", "cpu"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["metrics"]["test_acc"] == metrics["metrics"]["test_acc"]


def test_train_list_shows_backbones(capsys):
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    assert "lenet5" in out and "resnet" in out


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    code = main(["train", "classifier", "--data", "nosuchset", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Unknown dataset 'nosuchset'" in err and "Traceback" not in err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "dunno.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("datasets", "train", "demo"):
        assert command in out


def test_demo_smoke(tmp_path, capsys):
    assert main(["demo", "--smoke", "--out", str(tmp_path), "--quiet", "--device", "cpu"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## Classifier" in report and "test accuracy" in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["Classifier"]["available"] is True
    for title, step in summary.items():  # honest about steps that have not landed
        assert step["available"] or f"## {title}\n\nNot yet available" in report


def test_calibrate_command(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "classifier", "--data", "digits", "--epochs", "3", "--out", str(run),
                 "--quiet", "--device", "cpu"]) == 0
    out = tmp_path / "cal"
    assert main(["calibrate", "--checkpoint", str(run / "model.pt"), "--data", "digits",
                 "--method", "temperature,isotonic", "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "uncalibrated" in printed and "temperature" in printed and "isotonic" in printed
    result = json.loads((out / "calibration.json").read_text())
    assert (out / "reliability_temperature.png").is_file()
    assert "temperature" in json.dumps(result)
    code = main(["calibrate", "--checkpoint", str(tmp_path / "missing.pt"), "--data", "digits",
                 "--out", str(out)])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_ood_command(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "classifier", "--data", "digits:classes=0-4", "--epochs", "3",
                 "--out", str(run), "--quiet", "--device", "cpu"]) == 0
    report = tmp_path / "ood"
    assert main(["ood", "--checkpoint", str(run / "model.pt"), "--in", "digits:classes=0-4",
                 "--out", "digits:classes=5-9,gaussian-noise", "--detectors", "msp,energy",
                 "--report-dir", str(report), "--device", "cpu", "--no-histograms"]) == 0
    printed = capsys.readouterr().out
    assert "msp" in printed and "energy" in printed and "gaussian-noise" in printed
    rows = json.loads((report / "ood.json").read_text())
    assert "digits:classes=5-9" in json.dumps(rows)


def test_density_and_uci_commands(tmp_path, capsys, data_dir):
    out = tmp_path / "nade"
    assert main(["density", "train", "nade", "--data", "digits", "--binarize", "fixed",
                 "--epochs", "1", "--out", str(out), "--device", "cpu",
                 "--option", "hidden=8"]) == 0
    assert (out / "model.pt").is_file()
    assert main(["density", "score", "--checkpoint", str(out / "model.pt"), "--data", "digits",
                 "--binarize", "fixed", "--out", str(tmp_path / "score"), "--device", "cpu"]) == 0
    assert "bits" in capsys.readouterr().out.lower()
    assert main(["uci", "--method", "mc-dropout", "--dataset", "yacht", "--splits", "1",
                 "--quick", "--data-dir", str(data_dir)]) == 0
    assert "Yacht" in capsys.readouterr().out
