"""Output directories that runs cannot clobber: checked before any work, locked while a run
writes there.

:func:`run_output_dir` is what every training recipe (``train_classifier``,
``train_ensemble``, ``train_density``, ``train_gan``) and the CLI commands that write to
``--out`` wrap their work in::

    with run_output_dir("runs/lenet"):      # None: nothing to check, nothing locked
        ...                                 # load data, train, write files

1. :func:`check_output_dir` creates the directory and writes and removes a probe file, so an
   unusable ``--out`` (a file of that name, no permission, read-only disk) fails in the first
   second, as an :class:`OSError` whose ``filename`` is the directory and whose message says
   what is wrong -- not after the first epoch.
2. :func:`lock_output_dir` creates ``<dir>/.dunno.lock`` atomically (``O_CREAT | O_EXCL``)
   holding the pid, host and start time of the run, and removes it on exit. A second run on
   the same directory is refused with :class:`~dunno.errors.OutputLockedError` naming the
   directory and the holder. A lock left by a process that no longer runs on this host (its
   pid is gone, or now belongs to a process started after the lock was taken), or a lock
   file left empty for over 10 seconds, is stale: it is replaced, with a message on stderr.
   A lock from another host cannot be checked and is always refused (the message says which
   file to delete if that run is dead). The lock is re-entrant within a process, so the CLI
   can hold it over a whole command while the library function it calls takes it again.
   Under ``torchrun`` only rank 0 (``RANK=0``) locks: the other ranks write nothing.
3. The temporary files that interrupted atomic writes left behind
   (:func:`dunno.checkpoints.remove_stale_temp_files`) are removed once the lock is held.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dunno import distributed
from dunno.checkpoints import remove_stale_temp_files
from dunno.errors import OutputLockedError

__all__ = ["LOCK_NAME", "check_output_dir", "lock_output_dir", "run_output_dir"]

#: The lock file's name inside the output directory.
LOCK_NAME = ".dunno.lock"
_HELD: dict[Path, int] = {}  # locks this process holds -> depth of re-entry


def check_output_dir(path: str | os.PathLike) -> Path:
    """Create directory ``path`` (and its parents) and prove it writable by creating and
    removing a probe file; returns it as a :class:`~pathlib.Path`.

    Raises an :class:`OSError` (``NotADirectoryError``, ``PermissionError``, ...) whose
    ``filename`` is ``path`` and whose ``strerror`` says what is wrong: a file where the
    directory should be, no permission to create or write it, a read-only file system.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "the output directory is a file, not a "
                                 "directory", str(folder))
    for parent in folder.parents:  # the nearest existing ancestor must be a directory
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "cannot create the output directory: "
                                         f"'{parent}' is a file", str(folder))
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(err.errno, "cannot create the output directory "
                        f"({err.strerror or type(err).__name__})", str(folder)) from err
    probe = folder / f".dunno-write-probe-{os.getpid()}.tmp"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as err:
        raise type(err)(err.errno, "the output directory is not writable "
                        f"({err.strerror or type(err).__name__})", str(folder)) from err
    return folder


def _holder_text(info: dict) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(
        started, int | float) else "an unknown time"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, since {when}"


def _read_lock(lock: Path) -> dict:
    try:
        info = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _alive(pid) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch; Linux ``/proc``), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text()
                    .splitlines() if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _stale(info: dict) -> bool:
    """Whether the lock ``info`` was left by a process that no longer runs on this host: its
    pid is gone, is this process (which does not hold it), or belongs to a process started
    after the lock was taken (the pid was reused, e.g. in a restarted container)."""
    pid = info.get("pid")
    if pid == os.getpid() or not _alive(pid):
        return True
    started, locked = _process_start(pid), info.get("started")
    return started is not None and isinstance(locked, int | float) and started > locked + 2


def _try_create(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
            "command": " ".join(sys.argv)[:500]}
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    return True


def _acquire(folder: Path) -> None:
    lock = folder / LOCK_NAME
    host = socket.gethostname()
    for _ in range(50):  # a stale lock replaced, a lock being written: look again
        if _try_create(lock):
            return
        info = _read_lock(lock)
        if not info:  # released meanwhile, being written right now, or unreadable
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < 10:
                time.sleep(0.05)
                continue
        if not info or (info.get("host") == host and _stale(info)):
            if _read_lock(lock) == info:  # still the same stale lock
                lock.unlink(missing_ok=True)
                print(f"dunno: removed the stale lock {lock} of a run that no longer runs "
                      f"({_holder_text(info)})", file=sys.stderr)
            continue
        where = "" if info.get("host") == host else (
            f" (another host: delete {lock} if that run is no longer running)")
        raise OutputLockedError(
            errno.EAGAIN, f"another run is using this output directory ({_holder_text(info)}; "
            f"lock file {lock}){where}; wait for it to finish or choose another output "
            "directory", str(folder))
    raise OutputLockedError(errno.EAGAIN, f"could not take the lock {lock} (another run keeps "
                            "taking it, or it cannot be read); delete it if no run is using "
                            "this output directory", str(folder))


@contextmanager
def lock_output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of the existing directory ``path`` for the ``with`` block (see the
    module docstring); raises :class:`~dunno.errors.OutputLockedError` when another run
    holds it."""
    folder = Path(path)
    key = folder.resolve()
    if key not in _HELD:
        _acquire(folder)
    _HELD[key] = _HELD.get(key, 0) + 1
    try:
        yield folder
    finally:
        _HELD[key] -= 1
        if _HELD[key] == 0:
            del _HELD[key]
            lock = folder / LOCK_NAME
            if _read_lock(lock).get("pid") == os.getpid():
                lock.unlink(missing_ok=True)


def _writes_files() -> bool:
    """Whether this process is the one of its run that writes: rank 0 of a process group
    (any process inside :func:`dunno.distributed.local_only`), or, before the group exists,
    the process that ``torchrun`` started with ``RANK=0``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return distributed.is_main_process()
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def run_output_dir(path: str | os.PathLike | None) -> Iterator[Path | None]:
    """Check ``path`` (:func:`check_output_dir`), lock it (:func:`lock_output_dir`) and
    remove the temporary files of interrupted writes in it, for the ``with`` block; yields
    the directory (``None`` and nothing done when ``path`` is None)."""
    if path is None:
        yield None
        return
    folder = check_output_dir(path)
    if not _writes_files():
        yield folder
        return
    with lock_output_dir(folder):
        remove_stale_temp_files(folder)
        yield folder
