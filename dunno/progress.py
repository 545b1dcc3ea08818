"""Progress reports on stderr: a ``tqdm`` bar on a terminal, plain flushed lines otherwise.

Every long pass of the toolkit (training epochs, forward passes over a dataset, fitting a
list of calibrators, scoring a density model, the UCI splits) reports through
:class:`Progress`, an iterator wrapper and context manager::

    with Progress(total=len(data), desc="logits mnist (test)", unit="ex") as bar:
        for x, y in batches:
            ...
            bar.update(len(x))

Where the report goes:

* **a terminal** (``stream.isatty()``): a ``tqdm`` bar that redraws itself in place;
* **anything else** (a file, a pipe, ``nohup``'s log): plain lines, each flushed, written when
  the pass has advanced by at least ``fraction`` of its total (10%) **and** at least
  ``interval`` seconds (10 s) have passed since the last line -- whichever of the two is
  rarer -- plus one final line when the pass ends (``leave=False`` drops the final line: a
  training epoch writes its own summary line instead, :meth:`Progress.write`). A pass of
  unknown length writes a line every ``interval`` seconds;
* a pass that ends within ``min_seconds`` (2 s) leaves no trace in either form (no bar, no
  final line), so quick passes do not clutter the log; lines that stay
  (:func:`write_line`, a training epoch's summary) are always written;
* **disabled**: nothing at all, and iterating costs one generator frame.

Whether a pass reports is decided in three places, in this order:

1. the **global quiet switch** (:func:`set_quiet`; ``dunno --quiet`` sets it): when on,
   nothing ever reports;
2. the ``enabled`` argument (the ``progress=`` argument of a library call): ``True`` or
   ``False`` decides for this pass and, through :func:`reporting`, for every pass made
   inside the call (the passes of the detectors inside :func:`uncertainty.ood.run_ood`, the
   validation passes inside :func:`dunno.training.fit`); ``None`` inherits;
3. the enclosing :func:`reporting` scope: off by default, so a library call reports only
   when asked (``progress=True``); the ``dunno`` commands ask unless ``--quiet``.

The stream is ``sys.stderr`` as it is at the time of the report (stdout stays free for the
tables the commands print), or the stream of the enclosing :func:`reporting` scope -- tests
pass a ``StringIO`` with or without ``isatty``.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, TextIO

from dunno.validation import owner_name

__all__ = [
    "Progress",
    "format_duration",
    "format_values",
    "is_quiet",
    "progress_enabled",
    "reporting",
    "reports_progress",
    "set_quiet",
    "write_line",
]


@dataclass(frozen=True)
class _Scope:
    """The settings :func:`reporting` sets for the passes made inside it."""

    enabled: bool = False
    stream: TextIO | None = None
    interval: float = 10.0
    fraction: float = 0.1
    transient: bool = False
    min_seconds: float = 2.0


_DEFAULT = _Scope()
_SCOPE: ContextVar[_Scope] = ContextVar("dunno_progress_scope", default=_DEFAULT)  # noqa: B039
_QUIET = False  # the global switch


def set_quiet(quiet: bool) -> bool:
    """Turn the global quiet switch on (no progress output anywhere) or off; returns the
    previous value, so that a caller can restore it."""
    if not isinstance(quiet, bool):
        raise ValueError(f"The 'quiet' parameter of set_quiet must be a bool. Got {quiet!r} "
                         "instead.")
    global _QUIET
    previous, _QUIET = _QUIET, quiet
    return previous


def is_quiet() -> bool:
    """Whether the global quiet switch is on."""
    return _QUIET


def _check_enabled(enabled: Any, owner: object) -> None:
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"The 'progress' parameter of {owner_name(owner)} must be None or a "
                         f"bool. Got {enabled!r} instead.")


def progress_enabled(enabled: bool | None = None, owner: object = "progress_enabled") -> bool:
    """Whether a pass asked for with ``enabled`` (``progress=``) reports: never under the
    quiet switch; else ``enabled`` when it is a bool, else the enclosing scope's setting.
    A value other than None / a bool is a ValueError naming ``owner``."""
    _check_enabled(enabled, owner)
    if _QUIET:
        return False
    return _SCOPE.get().enabled if enabled is None else enabled


@contextmanager
def reporting(enabled: bool | None = True, *, stream: TextIO | None = None,
              interval: float | None = None, fraction: float | None = None,
              transient: bool | None = None, min_seconds: float | None = None,
              owner: object = "reporting") -> Iterator[None]:
    """A scope for the passes made inside it (see the module docstring).

    ``enabled`` turns their reports on or off (``None``: as the enclosing scope); ``stream``
    is where they go (default ``sys.stderr`` at the time of writing); ``interval`` (seconds)
    and ``fraction`` (of the total) space the plain lines; ``transient=True`` makes them
    drop their final line and their bar when done (the passes inside a training epoch);
    a pass shorter than ``min_seconds`` shows nothing. The
    previous scope is restored on exit. A library call ``f(..., progress=None)`` runs its
    body under ``reporting(progress, owner="f")``, which also refuses a ``progress`` that is
    neither None nor a bool."""
    _check_enabled(enabled, owner)
    if interval is not None and not (isinstance(interval, int | float) and interval >= 0):
        raise ValueError(f"The 'interval' parameter of reporting must be a number >= 0. Got "
                         f"{interval!r} instead.")
    if fraction is not None and not (isinstance(fraction, int | float) and 0 <= fraction <= 1):
        raise ValueError(f"The 'fraction' parameter of reporting must be a number in [0, 1]. "
                         f"Got {fraction!r} instead.")
    if min_seconds is not None and not (isinstance(min_seconds, int | float)
                                        and min_seconds >= 0):
        raise ValueError(f"The 'min_seconds' parameter of reporting must be a number >= 0. "
                         f"Got {min_seconds!r} instead.")
    scope = _SCOPE.get()
    changes = {k: v for k, v in (("enabled", enabled), ("stream", stream),
                                 ("interval", interval), ("fraction", fraction),
                                 ("transient", transient), ("min_seconds", min_seconds))
               if v is not None}
    token = _SCOPE.set(replace(scope, **changes))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def reports_progress(func: Callable) -> Callable:
    """Decorator for a library call with a ``progress=None`` keyword: the call runs under
    ``reporting(progress, owner=<its name>)``, so every pass made inside it reports (or is
    silenced) as asked, and a ``progress`` that is neither None nor a bool is refused."""
    signature = inspect.signature(func)
    if "progress" not in signature.parameters:
        raise TypeError(f"{func.__qualname__} has no 'progress' parameter to report by.")

    @functools.wraps(func)
    def call(*args, **kwargs):
        progress = signature.bind_partial(*args, **kwargs).arguments.get("progress")
        with reporting(progress, owner=func.__qualname__):
            return func(*args, **kwargs)

    return call


def format_duration(seconds: float) -> str:
    """``4.2`` -> ``"4.2s"``, ``185`` -> ``"3m05s"``, ``7384`` -> ``"2h03m"``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_values(values: Mapping[str, Any], digits: int = 4) -> str:
    """``{"loss": 0.12345, "epoch": 3}`` -> ``"loss 0.1235  epoch 3"`` (floats to ``digits``
    significant digits, in the mapping's order)."""
    parts = []
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.{digits}g}"
        parts.append(f"{key} {value}")
    return "  ".join(parts)


def _stream(stream: TextIO | None) -> TextIO:
    return stream if stream is not None else (_SCOPE.get().stream or sys.stderr)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        return False


def write_line(line: str, *, enabled: bool | None = None, stream: TextIO | None = None) -> None:
    """Write ``line`` as a line that stays (a training epoch's summary): above any open bar
    on a terminal, a flushed line otherwise; nothing when reports are off."""
    if not progress_enabled(enabled):
        return
    out = _stream(stream)
    if _isatty(out):
        from tqdm import tqdm

        tqdm.write(line, file=out)
    else:
        out.write(line + "\n")
        out.flush()


class Progress:
    """The progress of one pass (see the module docstring): iterate over it (the pass ends
    with the iterable), or call :meth:`update` and end it with :meth:`close` or a ``with``
    block.

    Parameters
    ----------
    iterable : iterable, optional
        Items to pass through; each counts 1 (``total`` defaults to ``len(iterable)``).
    total : int, optional
        The number of units of the whole pass (``None``: unknown).
    desc : str
        What the pass is, shown first (``"lenet5 3/20"``, ``"logits mnist (test)"``).
    unit : str
        The unit counted (``"step"``, ``"ex"``, ``"epoch"``).
    enabled : bool, optional
        ``progress=`` of the caller (see :func:`progress_enabled`).
    leave : bool, optional
        Keep the bar / write the final line when done (default: yes, except inside a
        ``transient`` scope).
    initial : int
        Units already done (a resumed run).
    stream : text stream, optional
        Where to write (default: the scope's stream, else ``sys.stderr``).
    clock : callable
        The time source (seconds; a fake clock makes the plain lines testable).
    """

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", unit: str = "it", enabled: bool | None = None,
                 leave: bool | None = None, initial: int = 0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        scope = _SCOPE.get()
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.enabled = progress_enabled(enabled)
        self.leave = (not scope.transient) if leave is None else leave
        self.n = self._last_n = initial
        self.clock = clock
        self.interval, self.fraction = scope.interval, scope.fraction
        self.min_seconds = scope.min_seconds
        self._lines = 0
        self.postfix: dict[str, Any] = {}
        self.closed = False
        self._bar = None
        self.stream = _stream(stream) if self.enabled else None
        self._start = self._last_t = clock()
        if self.enabled and _isatty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=self.leave,
                             initial=initial, file=self.stream, dynamic_ncols=True,
                             delay=self.min_seconds)

    # ---------------------------------------------------------------- use
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("This Progress was made without an iterable; call update(n).")
        if not self.enabled:
            yield from self.iterable
            return
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        if not self.enabled or self.closed:
            return
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        if now - self._last_t < self.interval:
            return
        if self.total and self.n - self._last_n < self.fraction * self.total:
            return
        self._emit(now, final=False)

    def set_postfix(self, values: Mapping[str, Any]) -> None:
        """Values shown after the counts (the running loss): on the bar at once, in the next
        plain line otherwise."""
        if not self.enabled or self.closed:
            return
        self.postfix = dict(values)
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v
                                   for k, v in self.postfix.items()}, refresh=False)

    def write(self, line: str) -> None:
        """A line that stays (above the bar on a terminal)."""
        if self.enabled:
            write_line(line, enabled=True, stream=self.stream)

    def close(self) -> None:
        """End the pass: the final line (plain, ``leave``), or the bar closed."""
        if not self.enabled or self.closed:
            self.closed = True
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
            return
        now = self.clock()
        if self.leave and (self._lines or now - self._start >= self.min_seconds):
            self._emit(now, final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- plain lines
    def _emit(self, now: float, *, final: bool) -> None:
        elapsed = now - self._start
        if self.total:
            line = f"{self.n}/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
        else:
            line = f"{self.n} {self.unit}"
        if final:
            line += f" in {format_duration(elapsed)}"
        else:
            line += f", {format_duration(elapsed)} elapsed"
            if self.total and self.n:
                left = elapsed * (self.total - self.n) / self.n
                line += f", ~{format_duration(left)} left"
        if self.postfix:
            line += "  " + format_values(self.postfix)
        self.stream.write(f"{self.desc}: {line}\n" if self.desc else line + "\n")
        self.stream.flush()
        self._last_t, self._last_n = now, self.n
        self._lines += 1
