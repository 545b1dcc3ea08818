"""dunno.outputs and the atomic writes: output directories checked before any work, locked
against concurrent runs, cleared of interrupted writes; OS errors as one line."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dunno.outputs as outputs
from dunno.checkpoints import atomic_save, atomic_write_text, remove_stale_temp_files
from dunno.classify import train_classifier
from dunno.cli import main
from dunno.errors import OutputLockedError
from dunno.outputs import LOCK_NAME, check_output_dir, lock_output_dir, run_output_dir

REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder: Path, pid: int, host: str | None = None) -> Path:
    lock = folder / LOCK_NAME
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "started": time.time()}))
    return lock


# ----------------------------------------------------------------------------- writable
def test_check_output_dir_creates_and_probes(tmp_path):
    folder = check_output_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe is gone


def test_a_file_where_the_directory_should_be_is_named(tmp_path):
    target = tmp_path / "out"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file") as info:
        check_output_dir(target)
    assert info.value.filename == str(target)
    with pytest.raises(NotADirectoryError, match=rf"cannot create the output directory: "
                                                 rf"'{target}' is a file") as info:
        check_output_dir(target / "sub" / "run")
    assert info.value.filename == str(target / "sub" / "run")


def _deny_probe(monkeypatch):
    real_open = os.open

    def fake_open(path, flags, *args):
        if "write-probe" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(outputs.os, "open", fake_open)


def test_an_unwritable_directory_fails_before_any_data_is_loaded(tmp_path, monkeypatch):
    _deny_probe(monkeypatch)
    with pytest.raises(PermissionError, match=r"not writable \(Permission denied\)") as info:
        # the dataset does not exist either: the output directory is checked first
        train_classifier(data="nosuchset", out=tmp_path / "run")
    assert info.value.filename == str(tmp_path / "run")


def test_cli_os_errors_are_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    commands = [
        ["train", "classifier", "--data", "nosuchset", "--out", str(target)],
        ["density", "train", "nade", "--data", "nosuchset", "--out", str(target)],
        ["gan", "train", "gan", "--data", "nosuchset", "--out", str(target)],
        ["calibrate", "--checkpoint", str(tmp_path / "none.pt"), "--data", "digits",
         "--out", str(target)],
        ["uci", "--method", "mc-dropout", "--out", str(target)],
        ["density", "score", "--checkpoint", str(tmp_path / "none.pt"), "--data", "digits",
         "--out", str(target)],
        ["gan", "eval", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(target)],
        ["ood", "--checkpoint", str(tmp_path / "none.pt"), "--in", "digits", "--out",
         "noise", "--report-dir", str(target)],
        ["demo", "--out", str(target), "--smoke"],
    ]
    for argv in commands:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err
        assert f"cannot use '{target}'" in err and "is a file" in err, (argv, err)
    _deny_probe(monkeypatch)
    run = tmp_path / "run"
    assert main(["train", "classifier", "--data", "digits", "--epochs", "1", "--out", str(run),
                 "--quiet", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"dunno train classifier: error: cannot use '{run}': the output directory "
                   "is not writable (Permission denied)")
    assert list(run.iterdir()) == []  # refused before the first epoch


# ----------------------------------------------------------------------------- the lock
def test_lock_is_created_removed_and_reentrant(tmp_path):
    with lock_output_dir(tmp_path) as folder:
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with lock_output_dir(folder):  # the same process again (CLI, then the library)
            pass
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_a_live_process_is_refused_with_the_holder(tmp_path):
    _write_lock(tmp_path, 1)  # pid 1 always runs
    with pytest.raises(OutputLockedError, match=r"another run is using this output "
                                                r"directory \(pid 1 on host ") as info:
        with lock_output_dir(tmp_path):
            pass
    assert info.value.filename == str(tmp_path)
    assert (tmp_path / LOCK_NAME).exists()  # someone else's lock is left alone


def test_lock_from_another_host_is_refused_and_names_the_file(tmp_path):
    lock = _write_lock(tmp_path, _dead_pid(), host="elsewhere.example")
    with pytest.raises(OutputLockedError, match=rf"another host: delete {lock}"):
        with lock_output_dir(tmp_path):
            pass


def test_stale_lock_of_a_dead_process_is_replaced_with_a_message(tmp_path, capsys):
    pid = _dead_pid()
    _write_lock(tmp_path, pid)
    with lock_output_dir(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert "removed the stale lock" in err and f"pid {pid}" in err
    assert not (tmp_path / LOCK_NAME).exists()


def test_locks_of_reused_pids_and_empty_lock_files_are_stale(tmp_path, capsys):
    lock = _write_lock(tmp_path, 1)
    info = json.loads(lock.read_text())
    lock.write_text(json.dumps({**info, "started": 1000.0}))  # pid 1 started after that
    with lock_output_dir(tmp_path):
        pass
    _write_lock(tmp_path, os.getpid())  # this process, but not a lock it holds
    with lock_output_dir(tmp_path):
        pass
    lock.write_text("")  # a writer that died between creating and filling the file
    os.utime(lock, (time.time() - 60, time.time() - 60))
    with lock_output_dir(tmp_path):
        pass
    assert capsys.readouterr().err.count("removed the stale lock") == 3
    assert not lock.exists()


def test_a_concurrent_run_on_the_same_out_is_refused(tmp_path, capsys):
    """A real second process holds the lock; the library and the CLI both refuse."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dunno.outputs import run_output_dir\n"
         f"with run_output_dir({str(out)!r}):\n    print('locked', flush=True)\n"
         "    sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=rf"pid {holder.pid} on host"):
            train_classifier(data="digits", epochs=1, out=out, device="cpu")
        assert main(["train", "classifier", "--epochs", "1", "--out", str(out), "--quiet",
                     "--device", "cpu"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"dunno train classifier: error: cannot use '{out}': another "
                              f"run is using this output directory (pid {holder.pid}")
        assert "\n" not in err and not (out / "model.pt").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()
    assert not (out / LOCK_NAME).exists()  # released by its holder on exit


# ----------------------------------------------------------------------------- temp files
class _Bomb:
    def __reduce__(self):
        raise RuntimeError("interrupted while writing")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_leaves_the_old_file_and_no_temp_file(tmp_path, error):
    path = tmp_path / "model.pt"
    atomic_save({"weights": torch.arange(3)}, path)
    bomb = _Bomb() if error is RuntimeError else None

    def interrupted(handle):
        raise KeyboardInterrupt

    with pytest.raises(error):
        if bomb is not None:
            atomic_save({"weights": bomb}, path)
        else:  # an interrupt in the middle of the writer
            from dunno import checkpoints

            checkpoints._atomic_write(path, interrupted, "wb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.arange(3))


def test_stale_temp_files_of_dead_writers_are_removed_on_startup(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stale = tmp_path / f".model.pt.dunno-{dead}-abc123.tmp"
    live = tmp_path / f".history.csv.dunno-{alive}-xyz.tmp"
    foreign = tmp_path / "notes.tmp"
    for path in (stale, live, foreign):
        path.write_text("partial")
    atomic_write_text("kept", tmp_path / "report.md")
    assert remove_stale_temp_files(tmp_path / "missing") == []
    with run_output_dir(tmp_path):
        names = sorted(p.name for p in tmp_path.iterdir())
    assert stale.name not in names
    assert {live.name, foreign.name, "report.md", LOCK_NAME} <= set(names)
