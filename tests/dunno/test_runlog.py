"""dunno.runlog: history.csv written epoch by epoch (surviving an interrupted or killed run),
TensorBoard events that hold the values of the history, the missing-extra error."""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import signal
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from dunno.classify import ClassifierConfig, train_classifier
from dunno.errors import MissingDependencyError
from dunno.runlog import HistoryCSV, RunLog, TensorBoardLog, history_row, require_tensorboard

pytestmark = pytest.mark.one_thread

FAST = dict(backbone="lenet5", data="digits:n=200", epochs=3, batch_size=64, seed=0,
            device="cpu")


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_history_row_renames_and_converts():
    row = history_row({"epoch": 2.0, "loss": torch.tensor(0.5), "acc": np.float64(0.25),
                       "note": None, "flag": True}, {"loss": "train_nll"})
    assert row == {"epoch": 2, "train_nll": 0.5, "acc": 0.25, "note": "", "flag": "True"}
    assert isinstance(row["epoch"], int) and isinstance(row["acc"], float)


def test_history_csv_appends_rows_widens_the_header_and_resumes(tmp_path):
    path = tmp_path / "run" / "history.csv"
    log = HistoryCSV(path)
    log.log({"epoch": 1.0, "loss": 0.5})
    log.log({"epoch": 2.0, "loss": 0.25})
    assert path.read_text() == "epoch,loss\n1,0.5\n2,0.25\n"
    log.log({"epoch": 3.0, "loss": 0.125, "val_loss": 0.75})  # a new column: header rewritten
    assert path.read_text() == "epoch,loss,val_loss\n1,0.5,\n2,0.25,\n3,0.125,0.75\n"
    # a resumed run keeps the epochs before its first one and drops those it trains again
    again = HistoryCSV(path, resume=True)
    again.log({"epoch": 3.0, "loss": 0.1, "val_loss": 0.7})
    assert _rows(path) == [{"epoch": "1", "loss": "0.5", "val_loss": ""},
                           {"epoch": "2", "loss": "0.25", "val_loss": ""},
                           {"epoch": "3", "loss": "0.1", "val_loss": "0.7"}]
    # a new (not resumed) run starts afresh; write_all rewrites from the final history
    fresh = HistoryCSV(path)
    fresh.log({"epoch": 1.0, "loss": 9.0})
    assert _rows(path) == [{"epoch": "1", "loss": "9.0"}]
    fresh.write_all([{"epoch": 1.0, "loss": 1.0}, {"epoch": 2.0, "loss": 2.0, "lr": 0.1}])
    assert path.read_text() == "epoch,loss,lr\n1,1.0,\n2,2.0,0.1\n"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_values_round_trip_exactly(tmp_path):
    values = [1 / 3, math.pi * 1e-7, 2.0 ** -40, 123456.789]
    log = HistoryCSV(tmp_path / "h.csv")
    for i, v in enumerate(values, 1):
        log.log({"epoch": float(i), "loss": v})
    assert [float(r["loss"]) for r in _rows(tmp_path / "h.csv")] == values


def test_training_interrupted_after_two_epochs_keeps_their_rows(tmp_path):
    """A run stopped from a callback (as by a kill) leaves the rows of the finished epochs,
    equal to what the epochs recorded."""
    seen = []
    with RunLog(tmp_path / "history.csv", rename={"loss": "train_nll"}) as log:

        def on_epoch_end(model, epoch, record):
            log.epoch(epoch, record)
            seen.append(dict(record))
            if epoch == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train_classifier(ClassifierConfig(**{**FAST, "epochs": 5}), out=tmp_path / "run",
                             on_epoch_end=on_epoch_end)
    rows = _rows(tmp_path / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row, record in zip(rows, seen, strict=True):
        assert float(row["train_nll"]) == record["loss"]
        assert float(row["val_acc"]) == record["val_acc"]
        assert float(row["lr"]) == record["lr"]
    assert float(rows[0]["lr"]) == 1e-3  # cosine schedule: epoch 1 starts at the base rate
    assert float(rows[1]["lr"]) < 1e-3


def _train_until_killed(args: list[str]) -> None:
    """The child process: `dunno train classifier`, its output discarded."""
    from dunno.cli import main

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    main(args)


def test_killed_command_leaves_complete_rows(tmp_path):
    """SIGKILL a real `dunno train classifier` (a forked process) once two epochs are
    logged: the file holds whole rows of consecutive epochs, and --resume continues it with
    no epoch twice and none missing."""
    from dunno.cli import main

    out = tmp_path / "run"
    args = ["train", "classifier", "--data", "digits:n=200", "--batch-size", "64",
            "--schedule", "constant", "--device", "cpu", "--out", str(out)]
    proc = multiprocessing.get_context("fork").Process(
        target=_train_until_killed, args=([*args, "--epochs", "400"],))
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        proc.start()
    history = out / "history.csv"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.is_alive():
            if history.is_file() and len(_rows(history)) >= 2:
                break
            time.sleep(0.02)
        assert proc.is_alive(), "the run ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.join()
    rows = _rows(history)
    epochs = [int(r["epoch"]) for r in rows]
    assert len(rows) >= 2 and epochs == list(range(1, len(rows) + 1))
    assert all(r["train_nll"] and r["val_nll"] and r["lr"] and r["seconds"] for r in rows)
    done = epochs[-1]
    assert main([*args, "--epochs", str(done + 1), "--resume", "--quiet"]) == 0
    assert [int(r["epoch"]) for r in _rows(history)] == list(range(1, done + 2))


def test_tensorboard_scalars_equal_the_history(tmp_path):
    logdir = tmp_path / "tb"
    with RunLog(tmp_path / "history.csv", TensorBoardLog(logdir),
                rename={"loss": "train_nll"}) as log:
        records = [{"epoch": float(e), "loss": 1.0 / e, "acc": 0.1 * e, "lr": 1e-3 / e,
                    "note": "text", "bad": float("nan")} for e in (1, 2, 3)]
        for r in records:
            log.epoch(int(r["epoch"]), r, prefix="run/")
    acc = _events(logdir)
    rows = _rows(tmp_path / "history.csv")
    tags = set(acc.Tags()["scalars"])
    assert tags == {"run/train_nll", "run/acc", "run/lr"}  # text and NaN are not scalars
    for column in ("train_nll", "acc", "lr"):
        events = acc.Scalars(f"run/{column}")
        assert [e.step for e in events] == [1, 2, 3]
        assert [e.value for e in events] == [np.float32(r[column]) for r in rows]


def test_grouped_run_log_writes_one_history_per_member(tmp_path):
    logdir = tmp_path / "tb"
    with RunLog(tmp_path / "history.csv", TensorBoardLog(logdir), group="member") as log:
        for member in (0, 1):
            for epoch in (1, 2):
                log.epoch(epoch, {"member": float(member), "epoch": float(epoch),
                                  "loss": member + epoch / 10})
    for member in (0, 1):
        rows = _rows(tmp_path / f"member{member}" / "history.csv")
        assert rows == [{"epoch": "1", "loss": str(member + 0.1)},
                        {"epoch": "2", "loss": str(member + 0.2)}]
    acc = _events(logdir)
    assert [e.value for e in acc.Scalars("member1/loss")] == [np.float32(1.1),
                                                             np.float32(1.2)]


def test_tensorboard_images_and_figures(tmp_path):
    from matplotlib.figure import Figure

    tb = TensorBoardLog(tmp_path / "tb")
    tb.images("samples", torch.rand(4, 1, 8, 8), 3)
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    tb.figure("curve", fig, 3)
    tb.text("config", "lr = 0.001")
    tb.close()
    acc = _events(tmp_path / "tb")
    assert set(acc.Tags()["images"]) == {"samples", "curve"}
    image = acc.Images("samples")[0]
    assert image.step == 3 and image.width > 0 and image.height > 0


def test_tensorboard_missing_fails_at_once_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'dunno\[tensorboard\]'"):
        require_tensorboard()
    with pytest.raises(MissingDependencyError, match="--tensorboard needs the optional "
                                                     "'tensorboard' package"):
        TensorBoardLog(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
    assert issubclass(MissingDependencyError, ImportError)


def test_tensorboard_log_refuses_a_file_and_writes_nothing_until_used(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        TensorBoardLog(tmp_path / "file")
    TensorBoardLog(tmp_path / "unused").close()
    assert not (tmp_path / "unused").exists()  # no event file from a process that never logs
