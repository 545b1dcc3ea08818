"""Checks of scalar and small-tuple parameters (hyper-parameters, options, config fields).

Every check takes ``(value, name, owner, ...)``, returns the value normalised (``int``,
``float``, ``bool``, a tuple of ints) and raises :class:`ValueError` in scikit-learn's
phrasing::

    The 'num_samples' parameter of MCDropout must be an int >= 1. Got 0 instead.

``owner`` is the object whose parameter is checked (its class name is quoted), a class, or a
name such as ``"expected_calibration_error"`` or ``"VAE.log_prob"``. Numpy integers and floats
are accepted wherever Python ones are; a bool is never taken for a number (``True`` is not an
int >= 1) and never matches a numeric choice.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MAX_BINS",
    "MAX_BIN_CELLS",
    "MAX_INFERRED_CLASSES",
    "MAX_NUM_SAMPLES",
    "check_betas",
    "check_bool",
    "check_choice",
    "check_float",
    "check_hidden",
    "check_image_shape",
    "check_int",
    "check_inferred_classes",
    "check_int_sequence",
    "check_n_bins",
    "check_num_samples",
    "check_probability_level",
    "check_seed",
    "check_shape",
    "owner_name",
]


def owner_name(owner: object) -> str:
    """The name quoted in a message: ``owner`` itself for a string, a class's name for a class,
    else the name of the object's class."""
    if isinstance(owner, str):
        return owner
    if isinstance(owner, type):
        return owner.__name__
    return type(owner).__name__


def _error(name: str, owner: object, expected: str, value: Any) -> ValueError:
    """The one message template."""
    return ValueError(
        f"The '{name}' parameter of {owner_name(owner)} must be {expected}. "
        f"Got {value!r} instead."
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _int_bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def check_int(value: Any, name: str, owner: object, *, low: int | None = None,
              high: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` in ``[low, high]`` (either end may be ``None``: unbounded).

    Python and numpy integers are accepted; bools and floats (even ``2.0``) are not. With
    ``allow_none``, ``None`` is returned as it is.
    """
    if allow_none and value is None:
        return None
    if _is_int(value) and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    none = "None or " if allow_none else ""
    raise _error(name, owner, f"{none}an int{_int_bounds(low, high)}", value)


#: Most bins of a binned calibration metric, reliability table or histogram binning: beyond
#: this a bin array alone is gigabytes, and no calibration set fills that many bins.
MAX_BINS = 10**6
#: Most (class, bin) cells of the class-wise binned metrics and histogram binning
#: (``num_classes * n_bins``).
MAX_BIN_CELLS = 10**8
#: Most classes a class count inferred from labels (``max(labels) + 1``) may give beyond the
#: number of examples: labels far larger than the data (one label of 1e9) are refused before
#: anything of that size is allocated.
MAX_INFERRED_CLASSES = 100_000
#: Most stochastic passes / samples per input where memory grows with them (MC-Dropout's
#: ``num_samples``, a VAE's ``particles``).
MAX_NUM_SAMPLES = 100_000


def check_n_bins(value: Any, owner: object, *, num_classes: int = 1,
                 name: str = "n_bins") -> int:
    """A bin count: an int in ``[1, MAX_BINS]`` with ``num_classes * n_bins <= MAX_BIN_CELLS``
    (refused before any bin array is allocated)."""
    n_bins = check_int(value, name, owner, low=1, high=MAX_BINS)
    if num_classes * n_bins > MAX_BIN_CELLS:
        raise ValueError(
            f"The '{name}' parameter of {owner_name(owner)} gives {num_classes} classes x "
            f"{n_bins} bins = {num_classes * n_bins} cells, more than {MAX_BIN_CELLS}. Got "
            f"{n_bins!r}; use fewer bins."
        )
    return n_bins


def check_num_samples(value: Any, owner: object, name: str = "num_samples") -> int:
    """A count of stochastic passes / samples: an int in ``[1, MAX_NUM_SAMPLES]``."""
    return check_int(value, name, owner, low=1, high=MAX_NUM_SAMPLES)


def check_inferred_classes(max_label: int, n: int, owner: object = None,
                           name: str = "labels") -> int:
    """The class count ``max_label + 1`` inferred from the labels of ``n`` examples; refused
    when it exceeds ``max(n, MAX_INFERRED_CLASSES)`` (labels far larger than the data)."""
    count = int(max_label) + 1
    of = "" if owner is None else f" of {owner_name(owner)}"
    if count > max(int(n), MAX_INFERRED_CLASSES):
        raise ValueError(
            f"The '{name}' argument{of} holds the class index {int(max_label)}, which would "
            f"make {count} classes for {n} examples (at most "
            f"max(N, {MAX_INFERRED_CLASSES}) are inferred from labels). Relabel the classes "
            "0..C-1, or pass the class count."
        )
    return count


def check_seed(value: Any, owner: object, name: str = "seed") -> int:
    """A random seed: an int >= 0."""
    return check_int(value, name, owner, low=0)


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    lo = "(" if low_open or math.isinf(low) else "["
    hi = ")" if high_open or math.isinf(high) else "]"
    return f"{lo}{low:g}, {high:g}{hi}"


def check_float(value: Any, name: str, owner: object, *, low: float = -math.inf,
                high: float = math.inf, low_open: bool = False, high_open: bool = False,
                allow_none: bool = False) -> float | None:
    """``value`` as a finite ``float`` in the interval from ``low`` to ``high``.

    Both ends are closed unless ``low_open`` / ``high_open``; an infinite end only says that
    side is unbounded (NaN and infinities are always refused). Ints and numpy scalars are
    accepted, bools are not. With ``allow_none``, ``None`` is returned as it is.
    """
    if allow_none and value is None:
        return None
    if _is_real(value):
        v = float(value)
        if (
            math.isfinite(v)
            and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high)
        ):
            return v
    none = "None or " if allow_none else ""
    if math.isinf(low) and math.isinf(high):
        expected = f"{none}a finite float"
    else:
        expected = f"{none}a float in {_interval(low, high, low_open, high_open)}"
    raise _error(name, owner, expected, value)


def check_probability_level(value: Any, name: str, owner: object, *,
                            closed: bool = False) -> float:
    """A probability or confidence level: a float in ``(0, 1)`` (``[0, 1]`` when ``closed``)."""
    return check_float(value, name, owner, low=0.0, high=1.0, low_open=not closed,
                       high_open=not closed)


def check_bool(value: Any, name: str, owner: object) -> bool:
    """``value`` as a ``bool`` (a Python or numpy bool; ``0`` / ``1`` are refused)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise _error(name, owner, "a bool", value)


def _matches(value: Any, choice: Any) -> bool:
    if isinstance(value, bool | np.bool_) != isinstance(choice, bool | np.bool_):
        return False  # True is not the choice 1, 1 is not the choice True
    try:
        return bool(value == choice)
    except (TypeError, ValueError):  # e.g. an array compared with a string
        return False


def check_choice(value: Any, name: str, owner: object, choices: Sequence[Any]) -> Any:
    """``value`` if it equals one of ``choices`` (a bool never matches ``0`` / ``1``)."""
    if any(_matches(value, c) for c in choices):
        return value
    raise _error(name, owner, "one of " + ", ".join(repr(c) for c in choices), value)


def _items(value: Any) -> tuple[Any, ...] | None:
    """The items of a list, tuple (``torch.Size`` included) or 1-D array, else None."""
    if isinstance(value, np.ndarray):
        return tuple(value.tolist()) if value.ndim == 1 else None
    if isinstance(value, list | tuple):
        return tuple(value)
    return None


def check_int_sequence(value: Any, name: str, owner: object, *, low: int = 1,
                       length: int | None = None, allow_empty: bool = False,
                       allow_int: bool = False, what: str = "") -> tuple[int, ...]:
    """``value`` as a tuple of ints ``>= low``.

    ``value`` is a list, tuple or 1-D array; with ``allow_int`` a single int means a 1-tuple.
    ``length`` fixes the number of items; otherwise at least one is needed unless
    ``allow_empty``. ``what`` (e.g. ``"layer widths"``) is added to the message in brackets.
    """
    items = (value,) if allow_int and _is_int(value) else _items(value)
    ok = items is not None and all(_is_int(v) and v >= low for v in items)
    if ok:
        ok = len(items) == length if length is not None else (allow_empty or len(items) > 0)
    if ok:
        return tuple(int(v) for v in items)
    if length is not None:
        expected = f"{length} ints >= {low}"
    else:
        expected = f"a {'' if allow_empty else 'non-empty '}sequence of ints >= {low}"
    if allow_int:
        expected = f"an int >= {low} or {expected}"
    raise _error(name, owner, expected + (f" ({what})" if what else ""), value)


def check_hidden(value: Any, owner: object, name: str = "hidden", *,
                 allow_empty: bool = False) -> tuple[int, ...]:
    """Hidden-layer widths: an int >= 1 (one layer) or a sequence of them (``allow_empty``:
    ``()`` means no hidden layer)."""
    what = "layer widths; empty: no hidden layer" if allow_empty else "layer widths"
    return check_int_sequence(value, name, owner, low=1, allow_empty=allow_empty,
                              allow_int=True, what=what)


def check_shape(value: Any, name: str, owner: object) -> tuple[int, ...]:
    """A data shape: a non-empty sequence of ints >= 1, e.g. ``(2,)`` or ``(1, 28, 28)``."""
    return check_int_sequence(value, name, owner, low=1, what="e.g. (2,) or (1, 28, 28)")


def check_image_shape(value: Any, owner: object, name: str = "image_shape", *,
                      channels: tuple[int, ...] | None = None,
                      multiple: int = 1) -> tuple[int, int, int]:
    """An image shape ``(C, H, W)``: ``C`` in ``channels`` (any ``C >= 1`` when None) and
    ``H``, ``W`` positive multiples of ``multiple``."""
    items = _items(value)
    ok = items is not None and len(items) == 3 and all(_is_int(v) and v >= 1 for v in items)
    if ok:
        c, h, w = (int(v) for v in items)
        ok = (channels is None or c in channels) and h % multiple == 0 and w % multiple == 0
    if ok:
        return c, h, w
    chans = "C >= 1" if channels is None else "C in {" + ", ".join(map(str, channels)) + "}"
    sizes = "H, W >= 1" if multiple == 1 else f"H, W positive multiples of {multiple}"
    raise _error(name, owner, f"(C, H, W) with {chans} and {sizes}", value)


def check_betas(value: Any, owner: object, name: str = "betas") -> tuple[float, float]:
    """Adam's ``(beta1, beta2)``: two floats in ``[0, 1)``."""
    items = _items(value)
    if items is not None and len(items) == 2 and all(
        _is_real(b) and 0.0 <= float(b) < 1.0 for b in items
    ):
        return float(items[0]), float(items[1])
    raise _error(name, owner, "two floats in [0, 1) (Adam's beta1, beta2)", value)
