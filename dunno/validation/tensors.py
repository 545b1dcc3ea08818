"""Checks of array inputs that the torch-based methods read as tensors.

:func:`as_tensor` accepts a tensor, a numpy array or a list / tuple; :func:`as_labels`
validates integer class labels ``(N,)``. Both raise :class:`ValueError` naming the argument,
what was expected and what was given. (The numpy-returning checks used by the metrics are in
:mod:`dunno.validation.arrays`.) torch is imported when a check first runs, so that importing
:mod:`dunno.validation` (as the numpy-only metrics do) does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dunno.validation.params import check_inferred_classes, owner_name

if TYPE_CHECKING:
    import torch

__all__ = ["as_labels", "as_tensor", "check_finite_tensor"]


def as_tensor(value: Any, name: str, *, list_dtype: Any = None) -> torch.Tensor:
    """A tensor or NumPy array as a (detached) tensor; a list or tuple read through NumPy
    (as ``list_dtype`` when given). Anything else is a ValueError naming ``name``."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if not value.flags.writeable or any(st < 0 for st in value.strides):
            value = np.array(value)  # torch.from_numpy needs writable, positive strides
        try:
            return torch.from_numpy(value)
        except TypeError as err:  # a dtype torch lacks: str, object, longdouble
            raise ValueError(
                f"The '{name}' argument must hold numbers of a dtype torch supports (bool, "
                f"int, float). Got a numpy array of dtype {value.dtype} instead."
            ) from err
    if isinstance(value, list | tuple):
        try:
            return torch.as_tensor(np.asarray(value, dtype=list_dtype))
        except (TypeError, ValueError) as err:
            raise ValueError(f"The '{name}' argument could not be read as an array: {err}") from err
    raise ValueError(
        f"The '{name}' argument must be a torch.Tensor or numpy array. "
        f"Got {type(value).__name__} instead."
    )


def as_labels(labels: Any, n: int, num_classes: int | None = None, *, name: str = "labels",
              rows_of: str = "x") -> torch.Tensor:
    """Validate integer class labels ``(N,)``, returned as int64.

    ``n`` is the row count of the array called ``rows_of`` that the labels go with; labels
    must lie in ``[0, num_classes)`` when ``num_classes`` is given, else be >= 0 with a class
    count ``max + 1`` of at most ``max(N, MAX_INFERRED_CLASSES)``
    (:func:`~dunno.validation.params.check_inferred_classes`). Whole-valued floats are
    accepted.
    """
    import torch

    y = as_tensor(labels, name)
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
            raise ValueError(
                f"The '{name}' argument must hold integer class indices. Got non-integer "
                f"values of dtype {y.dtype}."
            )
        if y.numel() and not bool((y.abs() < 2.0**53).all()):
            # Floats this large are not exact integers, and their int64 cast is undefined.
            raise ValueError(
                f"The '{name}' argument must hold class indices (floats below 2**53 in "
                f"magnitude). Got values in [{float(y.min()):g}, {float(y.max()):g}] of dtype "
                f"{y.dtype} instead."
            )
    elif y.dtype == torch.bool or y.is_complex():
        raise ValueError(
            f"The '{name}' argument must hold integer class indices. Got dtype {y.dtype}."
        )
    if y.ndim != 1:
        raise ValueError(
            f"The '{name}' argument must be 1-D of shape (N,). Got shape {tuple(y.shape)} instead."
        )
    if len(y) != n:
        raise ValueError(
            f"The '{rows_of}' and '{name}' arguments must have the same number of rows. Got {n} "
            f"rows in {rows_of} and {len(y)} in {name}."
        )
    if len(y) == 0:
        return y.to(torch.int64)
    y = y.to(torch.int64)
    low, high = int(y.min()), int(y.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        interval = "[0, ...)" if num_classes is None else f"[0, {num_classes - 1}]"
        classes = "" if num_classes is None else f" for {num_classes} classes"
        raise ValueError(
            f"The '{name}' argument must hold class indices in {interval}{classes}. Got values "
            f"in [{low}, {high}] instead."
        )
    if num_classes is None:
        check_inferred_classes(high, len(y), None, name)
    return y


def check_finite_tensor(x: torch.Tensor, name: str, owner: object = None, *,
                        offset: int = 0) -> None:
    """Raise a ValueError unless the floating tensor ``x`` holds no NaN or inf.

    The message names the argument, its ``owner`` (e.g. ``"KNNDetector.score"``), the value
    and its index; ``offset`` is added to the first index (the position of a loader's batch in
    the data). Integer and bool tensors are finite by construction and pass.
    """
    import torch

    if not x.is_floating_point() or x.numel() == 0:
        return
    if bool(torch.isfinite(x.sum())):
        return  # a NaN or an inf makes the sum NaN or inf (a finite overflow: checked below)
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    flat = int((~finite).flatten().nonzero()[0])
    value = float(x.flatten()[flat])
    index = [int(i) for i in np.unravel_index(flat, tuple(x.shape))]
    index[0] += offset
    where = str(index[0]) if len(index) == 1 else str(tuple(index))
    of = "" if owner is None else f" of {owner_name(owner)}"
    raise ValueError(
        f"The '{name}' argument{of} must be finite (no NaN or inf); found {value} at index "
        f"{where}."
    )
