"""What a training run leaves behind *while* it runs: ``history.csv`` row by row and,
optionally, TensorBoard event files.

* :class:`HistoryCSV` appends one row per epoch to a CSV file and flushes and fsyncs it, so
  the rows written so far survive a crash, a ``kill`` or a power cut; a resumed run drops the
  rows of the epochs it trains again; :meth:`HistoryCSV.write_all` rewrites the whole file
  atomically from the final history.
* :class:`TensorBoardLog` writes scalars, image grids and matplotlib figures through
  :class:`torch.utils.tensorboard.SummaryWriter` (``tensorboard --logdir DIR`` shows them).
  TensorBoard is an optional extra (``pip install 'dunno[tensorboard]'``); without it the
  constructor raises :class:`~dunno.errors.MissingDependencyError` at once, before any work.
* :class:`RunLog` joins the two for the ``on_epoch_end`` callback of a training recipe: the
  CSV columns and the TensorBoard tags are the same names, the step is the epoch.

Rows are the epoch records of :func:`dunno.training.fit` (``epoch``, the mean step outputs
such as ``loss``, the validation values, ``lr``, ``seconds``, ``train_seconds``,
``examples``, ...) under the column names a command chooses (``rename``).
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dunno.checkpoints import atomic_write_text
from dunno.errors import MissingDependencyError

__all__ = [
    "TENSORBOARD_INSTALL",
    "HistoryCSV",
    "RunLog",
    "TensorBoardLog",
    "history_row",
    "require_tensorboard",
]

#: how to add the optional TensorBoard support
TENSORBOARD_INSTALL = "pip install 'dunno[tensorboard]'"


def require_tensorboard():
    """:class:`torch.utils.tensorboard.SummaryWriter`, or a
    :class:`~dunno.errors.MissingDependencyError` naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise MissingDependencyError(
            f"--tensorboard needs the optional 'tensorboard' package, which is not installed "
            f"({err}). Install the extra: {TENSORBOARD_INSTALL}."
        ) from None
    return SummaryWriter


def history_row(record: Mapping[str, Any],
                rename: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One epoch ``record`` as a history row: keys renamed by ``rename`` (``{record key:
    column}``), ``epoch`` as an int, tensors and numpy scalars as Python numbers, ``None``
    and booleans as text."""
    rename = rename or {}
    row = {rename.get(k, k): _cell(v) for k, v in record.items()}
    if isinstance(row.get("epoch"), float) and float(row["epoch"]).is_integer():
        row["epoch"] = int(row["epoch"])
    return row


def _cell(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    return value


class HistoryCSV:
    """``history.csv`` written one epoch at a time (see the module docstring).

    Parameters
    ----------
    path : path-like
        The CSV file (its folder is created).
    resume : bool
        Keep the rows of an existing file, except those of the epochs from the first logged
        one on (a resumed run trains them again); otherwise the file starts afresh.
    rename : mapping, optional
        ``{record key: column name}`` (e.g. ``{"loss": "train_nll"}``); other keys keep
        their names. ``epoch`` is written as an int.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False,
                 rename: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.resume = bool(resume)
        self.rename = dict(rename or {})
        self.columns: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self._started = False

    def row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` under the column names (:func:`history_row`)."""
        return history_row(record, self.rename)

    def log(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append the row of one epoch record, flushed and fsynced; returns the row."""
        row = self.row(record)
        if not self._started:
            self._start(row)
        new = [k for k in row if k not in self.columns]
        self.rows.append(row)
        if new:  # a column the header lacks: rewrite the file with the wider header
            self.columns.extend(new)
            self._rewrite()
            return row
        with open(self.path, "a", newline="") as handle:
            handle.write(self._text([row], header=False))
            handle.flush()
            os.fsync(handle.fileno())
        return row

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> Path:
        """Rewrite the whole file atomically from ``records`` (the final history)."""
        self.rows = [self.row(r) for r in records]
        self.columns = []
        for row in self.rows:
            self.columns.extend(k for k in row if k not in self.columns)
        self._started = True
        return self._rewrite()

    def _start(self, row: Mapping[str, Any]) -> None:
        self._started = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows, self.columns = [], list(row)
        if self.resume and self.path.is_file():
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle)
                kept = list(reader)
                columns = list(reader.fieldnames or [])
            first = row.get("epoch")
            if isinstance(first, int | float):
                kept = [r for r in kept if not _epoch_at_least(r.get("epoch"), first)]
            self.rows = kept
            self.columns = columns + [k for k in self.columns if k not in columns]
        self._rewrite()

    def _text(self, rows: list[Mapping[str, Any]], *, header: bool) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore",
                                lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def _rewrite(self) -> Path:
        return atomic_write_text(self._text(self.rows, header=True), self.path)


def _epoch_at_least(text: Any, epoch: float) -> bool:
    try:
        return float(text) >= epoch
    except (TypeError, ValueError):
        return False


class TensorBoardLog:
    """Scalars, image grids and figures for ``tensorboard --logdir logdir``.

    The import of TensorBoard is checked at once (a
    :class:`~dunno.errors.MissingDependencyError` names ``pip install 'dunno[tensorboard]'``);
    the event file is created on the first write, so a process that never logs (a
    non-zero rank) leaves none.
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        self._writer_class = require_tensorboard()
        self.logdir = Path(logdir)
        if self.logdir.exists() and not self.logdir.is_dir():
            raise FileExistsError(errno.EEXIST, "a file of that name exists", str(self.logdir))
        self._writer = None

    @property
    def writer(self):
        """The :class:`~torch.utils.tensorboard.SummaryWriter` (made on first use)."""
        if self._writer is None:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = self._writer_class(log_dir=str(self.logdir))
        return self._writer

    def scalars(self, step: int, values: Mapping[str, Any], *, prefix: str = "") -> None:
        """``prefix + name`` -> value at ``step`` for every finite number in ``values``."""
        for key, value in values.items():
            value = _cell(value)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(prefix + key, float(value), step)
        self.flush()

    def images(self, tag: str, images, step: int) -> None:
        """A grid of images ``(N, C, H, W)`` with values in [0, 1] (TensorBoard tiles
        them)."""
        self.writer.add_images(tag, images, step, dataformats="NCHW")
        self.flush()

    def figure(self, tag: str, figure, step: int) -> None:
        """A matplotlib :class:`~matplotlib.figure.Figure`, rendered to an image."""
        self.writer.add_figure(tag, figure, step, close=False)
        self.flush()

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """A text entry (e.g. the run's configuration)."""
        self.writer.add_text(tag, text, step)
        self.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class RunLog:
    """``history.csv`` and, optionally, TensorBoard scalars for one run, fed one epoch record
    at a time (:meth:`epoch`); the TensorBoard tags are the CSV column names and the step is
    the epoch. A context manager (closes the event file).

    Parameters
    ----------
    history_path : path-like, optional
        The CSV file (:class:`HistoryCSV`); None: no CSV.
    tensorboard : TensorBoardLog, optional
        Where the scalars go; None: no TensorBoard.
    resume, rename :
        As for :class:`HistoryCSV`.
    group : str, optional
        A record key whose value splits the run into parts trained one after another or
        side by side (``"member"`` of a deep ensemble): the records of value ``v`` go to
        ``history_path.parent / f"{group}{v}" / history_path.name`` under the tags
        ``f"{group}{v}/..."``, without the ``group`` column.
    """

    def __init__(self, history_path: str | os.PathLike | None = None,
                 tensorboard: TensorBoardLog | None = None, *, resume: bool = False,
                 rename: Mapping[str, str] | None = None, group: str | None = None) -> None:
        self.history_path = None if history_path is None else Path(history_path)
        self.tensorboard = tensorboard
        self.resume, self.rename, self.group = resume, dict(rename or {}), group
        self.histories: dict[Any, HistoryCSV] = {}

    def history(self, part: Any = None) -> HistoryCSV | None:
        """The :class:`HistoryCSV` of ``part`` (a value of ``group``; None without groups)."""
        if self.history_path is None:
            return None
        if part not in self.histories:
            path = self.history_path
            if self.group is not None:
                path = path.parent / f"{self.group}{part}" / path.name
            self.histories[part] = HistoryCSV(path, resume=self.resume, rename=self.rename)
        return self.histories[part]

    def epoch(self, epoch: int, record: Mapping[str, Any], *, prefix: str = "") -> None:
        """Log one epoch record: a CSV row, and its numbers as scalars at step ``epoch``
        (tags ``prefix + column``)."""
        part = None
        if self.group is not None:
            value = _cell(record[self.group])
            part = int(value) if isinstance(value, float) and value.is_integer() else value
            record = {k: v for k, v in record.items() if k != self.group}
            prefix = f"{prefix}{self.group}{part}/"
        history = self.history(part)
        row = history.log(record) if history is not None else history_row(record, self.rename)
        if self.tensorboard is not None:
            self.tensorboard.scalars(int(epoch), {k: v for k, v in row.items()
                                                  if k != "epoch"}, prefix=prefix)

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> Path | None:
        """Rewrite the (ungrouped) history file atomically from the final ``records``."""
        history = self.history()
        return None if history is None else history.write_all(records)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
