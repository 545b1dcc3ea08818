"""The `dunno` command: one shape for every command (add_parser + run, defaults in --help,
--version, exit statuses), datasets, train, demo, uci, and errors without tracebacks."""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from dunno.cli import COMMANDS, build_parser, main
from dunno.reporting import read_report


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every subparser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def test_every_command_module_has_add_parser_and_run():
    for name in COMMANDS:
        module = importlib.import_module(f"dunno.cli.{name}")
        assert callable(module.add_parser) and callable(module.run), name
        assert module.__all__ == ["add_parser", "run"], name
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    assert tuple(commands.choices) == COMMANDS
    # the command modules are the only entry points: no runner parses these options again
    assert importlib.util.find_spec("evaluation.benchmarks.uci") is None


def test_every_option_of_every_parser_shows_its_default():
    checked = 0
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if (not action.option_strings or action.required or action.help == argparse.SUPPRESS
                    or action.default in (None, argparse.SUPPRESS)):
                continue
            formatter = parser.formatter_class(prog=parser.prog)
            formatter.add_argument(action)
            text = formatter.format_help()
            assert "(default:" in text, f"{parser.prog} {action.option_strings[0]}: {text}"
            assert text.count("(default:") == 1, text
            checked += 1
    assert checked > 50


def test_help_of_a_subcommand_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "classifier", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--epochs EPOCHS" in out and "(default: 20)" in out and "(default: lenet5)" in out


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"dunno {version('dunno')}"


def test_a_group_without_its_subcommand_prints_usage_and_exits_2(capsys):
    assert main(["train"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: dunno train") and "classifier" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("argv", [["nosuchcommand"], [], ["train", "nosuchthing"],
                                  ["datasets", "--no-such-flag"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: dunno" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["datasets", "--download", "cifar10"],
    ["uci", "--method", "mdn", "--threads", "0"],
    ["uci", "--method", "mdn", "--dataset", "nosuchset", "--splits", "1"],
])
def test_user_errors_are_one_line_with_exit_2(argv, capsys, tmp_path):
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"dunno {argv[0]}: error: ") and "Traceback" not in err


def test_a_file_where_a_directory_is_expected_names_the_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["datasets", "--data-dir", str(tmp_path), "--json",
                 str(blocker / "d.json")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("dunno datasets: error: ") and str(blocker) in err


def test_permission_denied_names_the_path(tmp_path, capsys, monkeypatch):
    import errno

    import dunno.reporting

    target = tmp_path / "locked" / "d.json"

    def refuse(obj, path):  # what the OS answers where the user may not write
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(dunno.reporting, "write_json", refuse)
    assert main(["datasets", "--data-dir", str(tmp_path), "--json", str(target)]) == 1
    err = capsys.readouterr().err
    assert err == f"dunno datasets: error: cannot use '{target}': Permission denied\n"


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
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Classifier</h2>" in page and "data:image/png;base64," in page
    assert read_report(tmp_path).kind == "demo"
    assert "test accuracy (%)" in capsys.readouterr().out  # the report's tables on stdout


def test_demo_with_a_relative_out_directory(tmp_path, monkeypatch):
    """``make demo`` passes a relative ``--out runs/demo``: the report's figures are still
    recorded relative to the run directory (they were working-directory paths, which broke
    report.json), and every figure the report names exists."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--smoke", "--out", "runs/demo", "--quiet", "--device", "cpu"]) == 0
    run = tmp_path / "runs" / "demo"
    record = json.loads((run / "report.json").read_text())
    paths = [b["path"] for sec in record["sections"] for b in sec["blocks"]
             if isinstance(b, dict) and b.get("type") == "figure"]
    assert paths and all(not p.startswith("runs/") for p in paths)
    assert all((run / p).is_file() for p in paths)
    assert read_report(run).kind == "demo"


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


def test_density_commands(tmp_path, capsys):
    out = tmp_path / "nade"
    assert main(["density", "train", "nade", "--data", "digits", "--binarize", "fixed",
                 "--epochs", "1", "--out", str(out), "--device", "cpu",
                 "--option", "hidden=8"]) == 0
    assert (out / "model.pt").is_file()
    assert main(["density", "score", "--checkpoint", str(out / "model.pt"), "--data", "digits",
                 "--binarize", "fixed", "--out", str(tmp_path / "score"), "--device", "cpu"]) == 0
    assert "bits" in capsys.readouterr().out.lower()
    score = json.loads((tmp_path / "score" / "score.json").read_text())
    assert main(["density", "score", "--checkpoint", str(out / "model.pt"), "--data", "digits",
                 "--binarize", "fixed", "--format", "csv", "--device", "cpu"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert float(row["NLL (nats)"]) == pytest.approx(score["nll_nats"])
    assert float(row["bits/dim"]) == pytest.approx(score["bits_per_dim"])
    record = read_report(tmp_path / "score")
    assert record.kind == "density score" and (tmp_path / "score" / "report.html").is_file()


def test_uci_command_prints_and_writes_tables(tmp_path, capsys, data_dir):
    assert main(["uci", "--method", "mc-dropout", "--dataset", "yacht", "--splits", "1",
                 "--quick", "--data-dir", str(data_dir)]) == 0
    assert "Yacht" in capsys.readouterr().out
    assert main(["uci", "--method", "mdn", "--dataset", "yacht", "--splits", "2", "--quick",
                 "--data-dir", str(data_dir), "--out", str(tmp_path),
                 "--param", "num_components=3"]) == 0
    printed = capsys.readouterr().out
    assert "vs mc-dropout" in printed and "vs ensemble" in printed  # compared with both
    assert (tmp_path / "uci_mdn.csv").read_text().startswith("dataset,n_splits,rmse")
    saved = json.loads((tmp_path / "uci_mdn.json").read_text())
    assert saved["anchors"] == ["mc-dropout", "ensemble"]
    assert len(saved["splits"]["yacht"]["test_ll"]) == 2
    assert saved["params"]["yacht"]["num_components"] == 3
    assert "| Yacht |" in (tmp_path / "uci_mdn.md").read_text()
    assert "| Yacht | 2 |" in (tmp_path / "report.md").read_text()
    assert "±" in (tmp_path / "report.html").read_text(encoding="utf-8")
    row = read_report(tmp_path).table("uci_mdn").rows[0]
    assert row["rmse"] == pytest.approx(saved["rows"][0]["rmse"])
    assert row["cov95"] == pytest.approx(100 * saved["rows"][0]["cov95"])
