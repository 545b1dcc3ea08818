"""Watching a run from the command line: progress on stderr (plain lines when stderr is not
a terminal -- pytest's capture is not one), --quiet, history.csv as the run goes, and
--tensorboard events that hold the values of the history, figures and image grids."""

from __future__ import annotations

import csv
import json
import re
import sys

import numpy as np
import pytest
import torch

from dunno import nets
from dunno.checkpoints import save_checkpoint
from dunno.cli import main
from dunno.progress import reporting

pytestmark = pytest.mark.one_thread


@pytest.fixture(autouse=True)
def _every_pass_reports():
    """These runs take milliseconds: let every pass leave its final line."""
    with reporting(None, min_seconds=0):
        yield

TRAIN = ["train", "classifier", "--data", "digits:n=200", "--batch-size", "64", "--device",
         "cpu"]


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _assert_scalars_equal_history(acc, rows, columns, prefix=""):
    for column in columns:
        events = acc.Scalars(prefix + column)
        assert [e.step for e in events] == [int(r["epoch"]) for r in rows], column
        assert [e.value for e in events] == [np.float32(r[column]) for r in rows], column


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    torch.manual_seed(0)
    model = nets.create("lenet5", 1, 10, input_size=8).eval()
    path = tmp_path_factory.mktemp("lenet") / "model.pt"
    return save_checkpoint(path, model, arch="nets", config=model.config)


def test_train_classifier_progress_history_and_tensorboard(tmp_path, capsys):
    out, tb = tmp_path / "run", tmp_path / "tb"
    assert main([*TRAIN, "--epochs", "2", "--out", str(out), "--tensorboard", str(tb)]) == 0
    captured = capsys.readouterr()
    rows = _rows(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # one plain line per epoch on stderr, with the values history.csv holds
    epoch_lines = [line for line in captured.err.splitlines() if " epoch " in line]
    assert len(epoch_lines) == 2
    for line, row in zip(epoch_lines, rows, strict=True):
        assert line.startswith(f"lenet5 epoch {row['epoch']}/2: loss "
                               f"{float(row['train_nll']):.4g}  acc ")
        assert f"val_loss {float(row['val_nll']):.4g}" in line
    assert " epoch " not in captured.out and "\r" not in captured.err  # stdout: tables only
    acc = _events(tb)
    _assert_scalars_equal_history(acc, rows, ["train_nll", "train_acc", "val_nll", "val_acc",
                                              "lr", "seconds"])
    assert {"reliability/val", "training"} <= set(acc.Tags()["images"])
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    (final,) = acc.Scalars("final/test_acc")
    assert final.step == 2 and final.value == np.float32(metrics["test_acc"])


def test_quiet_silences_stderr(tmp_path, capsys):
    assert main([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "train_nll" in captured.out
    assert len(_rows(tmp_path / "run" / "history.csv")) == 1


def test_missing_tensorboard_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "1", "--out", str(out), "--tensorboard",
                 str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert "--tensorboard needs the optional 'tensorboard' package" in err
    assert "pip install 'dunno[tensorboard]'" in err and "Traceback" not in err
    assert not (out / "model.pt").exists() and not (out / "history.csv").exists()


def test_ensemble_writes_a_history_per_member(tmp_path, capsys):
    out, tb = tmp_path / "ens", tmp_path / "tb"
    assert main([*TRAIN, "--epochs", "1", "--ensemble", "2", "--out", str(out),
                 "--tensorboard", str(tb), "--quiet"]) == 0
    for k in (0, 1):
        rows = _rows(out / f"member{k}" / "history.csv")
        assert [int(r["epoch"]) for r in rows] == [1] and "member" not in rows[0]
        _assert_scalars_equal_history(_events(tb), rows, ["train_nll", "val_nll"],
                                      prefix=f"member{k}/")


def test_density_train_and_score_report_and_log_images(tmp_path, capsys):
    out, tb = tmp_path / "vae", tmp_path / "tb"
    assert main(["density", "train", "vae", "--data", "digits", "--epochs", "2",
                 "--option", "latent_dim=4", "--option", "hidden=[16]", "--lr", "3e-3",
                 "--samples-k", "5", "--val-samples-k", "2", "--val-size", "40",
                 "--test-size", "40", "--samples", "9", "--out", str(out),
                 "--tensorboard", str(tb), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert len(re.findall(r"^vae epoch [12]/2: loss ", captured.err, re.M)) == 2
    assert re.search(r"^IWAE log p\(x\), K=5 digits: 40/40 img \(100%\) in ", captured.err,
                     re.M)  # the test scoring
    rows = _rows(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    acc = _events(tb)
    _assert_scalars_equal_history(acc, rows, ["loss", "val_loss", "val_bpd", "minutes"])
    assert {"samples", "reconstructions", "learning_curve"} <= set(acc.Tags()["images"])
    assert acc.Images("samples")[-1].step == 2
    assert main(["density", "score", "--checkpoint", str(out / "model.pt"), "--data",
                 "digits", "--binarize", "fixed", "--samples-k", "5", "--size", "30"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"IWAE log p\(x\), K=5 digits.*: 30/30 img \(100%\) in ", err)


def test_gan_train_logs_samples_and_code_sweeps_and_eval_reports(tmp_path, capsys, lenet):
    out, tb = tmp_path / "info", tmp_path / "tb"
    assert main(["gan", "train", "infogan", "--data", "digits", "--epochs", "2",
                 "--batch-size", "64", "--train-size", "128", "--grid", "9", "--out", str(out),
                 "--tensorboard", str(tb), "--device", "cpu",
                 "--option", "noise_dim=4", "--option", "categorical=3",
                 "--option", "continuous=1", "--option", "width=4", "--option", "hidden=8"]) == 0
    err = capsys.readouterr().err
    assert len(re.findall(r"^infogan epoch [12]/2: d_loss ", err, re.M)) == 2
    rows = _rows(out / "history.csv")
    acc = _events(tb)
    _assert_scalars_equal_history(acc, rows, ["d_loss", "g_loss", "q_loss"])
    assert [e.step for e in acc.Images("samples")] == [1, 2]
    assert [e.step for e in acc.Images("infogan/c1")] == [1, 2]
    assert main(["gan", "eval", "--checkpoint", str(out / "model.pt"), "--classifier",
                 str(lenet), "--data", "digits", "-n", "40", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^gan eval \(sources scored\): 2/2 source \(100%\) in ", err, re.M)


def test_ood_reports_its_passes_and_the_detectors(tmp_path, capsys, lenet):
    args = ["ood", "--checkpoint", str(lenet), "--in", "digits", "--out", "gaussian-noise",
            "--detectors", "msp,odin,rapp", "--param", "rapp.epochs=2", "--device", "cpu"]
    assert main(args) == 0
    captured = capsys.readouterr()
    err = captured.err
    for pattern in (r"^logits digits \(train\): 1257/1257 ex \(100%\) in ",
                    r"^logits digits \(test\): 360/360 ex \(100%\) in ",
                    r"^logits gaussian-noise: 360/360 ex \(100%\) in ",
                    r"^ODIN T=1000 eps=0\.0014: 360/360 ex \(100%\) in ",
                    r"^RaPP autoencoder: 2/2 epoch \(100%\) in ",
                    r"^detectors \(fit\): 3/3 detector \(100%\) in ",
                    r"^detectors \(score\): 3/3 detector \(100%\) in "):
        assert re.search(pattern, err, re.M), pattern
    assert "AUROC" in captured.out and "detector (" not in captured.out
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_calibrate_reports_its_passes_and_every_calibrator(tmp_path, capsys, lenet):
    from dunno.checkpoints import load_model
    from uncertainty.calibration import run_calibration

    assert main(["calibrate", "--checkpoint", str(lenet), "--data", "digits", "--method",
                 "temperature", "--out", str(tmp_path / "cal"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^logits digits \(val\): 1/1 batch \(100%\) in ", err, re.M)
    assert re.search(r"^calibrators \(fit, evaluate\): 1/1 method \(100%\) in .*"
                     r"method temperature$", err, re.M)
    # --method all, as a library call (the same reports; no figures written)
    result = run_calibration(load_model(lenet), "digits", "all", progress=True)
    err = capsys.readouterr().err
    final = re.search(r"^calibrators \(fit, evaluate\): (\d+)/(\d+) method \(100%\) in .*"
                      r"method (\w+)$", err, re.M)
    assert final and int(final.group(1)) == int(final.group(2)) == len(result.after) >= 5
    assert final.group(3) == list(result.after)[-1]  # the last one fitted


def test_uci_history_tensorboard_and_progress(tmp_path, capsys, data_dir):
    out, tb = tmp_path / "uci", tmp_path / "tb"
    assert main(["uci", "--method", "mdn", "--dataset", "yacht", "--splits", "2", "--quick",
                 "--data-dir", str(data_dir), "--out", str(out), "--tensorboard",
                 str(tb)]) == 0
    err = capsys.readouterr().err
    rows = _rows(out / "history_mdn.csv")
    epochs = [int(r["epoch"]) for r in rows]
    assert {r["dataset"] for r in rows} == {"yacht"} and epochs == list(range(1, len(rows) + 1))
    assert re.search(rf"^StackedMLP: {len(rows)}/{len(rows)} epoch \(100%\) in ", err, re.M)
    assert re.search(r"^\[uci mdn\] Yacht +RMSE ", err, re.M)
    acc = _events(tb)
    _assert_scalars_equal_history(acc, rows, ["loss", "lr"], prefix="yacht/")
    (table,) = _rows(out / "uci_mdn.csv")
    assert acc.Scalars("yacht/rmse")[0].value == np.float32(table["rmse"])
