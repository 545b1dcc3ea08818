"""Validation specific to the predictive-uncertainty methods: regression inputs (the parameter
and label checks are in :mod:`dunno.validation`).

Every check raises :class:`ValueError` (never ``assert``) naming the argument, what was
expected and what was given, in scikit-learn's phrasing::

    The 'num_samples' parameter of MCDropout must be an int >= 1. Got 0 instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dunno.inputs import as_arrays
from dunno.validation import as_tensor

__all__ = ["as_features", "as_regression_data"]


# ----------------------------------------------------------------------------- inputs
def _real_2d(value: Any, name: str, what: str) -> torch.Tensor:
    t = as_tensor(value, name, list_dtype=np.float64)
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or t.dtype in (
        torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"The '{name}' argument must hold real numbers. Got dtype {t.dtype}.")
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(
            f"The '{name}' argument must be {what}. Got shape {tuple(t.shape)} instead."
        )
    if t.shape[0] == 0:
        raise ValueError(f"The '{name}' argument is empty (0 rows).")
    t = t.to(torch.float32)
    check_finite_rows(t, f"The '{name}' argument")
    return t


def check_finite_rows(t: torch.Tensor, what: str) -> None:
    """Raise a ValueError naming ``what`` and the number of rows of ``t (N, D)`` that hold
    NaN or infinite values, if any."""
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t).all(dim=1)).sum())
        raise ValueError(f"{what} contains NaN or infinite values (in {bad} of {t.shape[0]} "
                         "rows).")


def as_features(x: Any, *, num_features: int | None = None, name: str = "x",
                owner: str | None = None) -> torch.Tensor:
    """Validate inputs ``(N, D)`` (a 1-D array is read as ``(N, 1)``); float32, finite.
    ``x`` is any kind read by :mod:`dunno.inputs` (labels of a pair or dataset are ignored);
    ``num_features`` is the ``D`` seen in ``fit``; ``owner`` is named in messages."""
    if not isinstance(x, list | tuple) or _is_data_pair(x):
        x, _ = as_arrays(x, name=name, owner=owner)
    t = _real_2d(x, name, "a 2-D array of shape (N, D)")
    if num_features is not None and t.shape[1] != num_features:
        raise ValueError(
            f"The '{name}' argument has {t.shape[1]} features (columns) but the model was "
            f"fitted on {num_features}."
        )
    return t


def _is_data_pair(value: Any) -> bool:
    """A tuple / list ``(x, y)`` of arrays (read by :mod:`dunno.inputs`), not a nested list of
    numbers (read as one array)."""
    return bool(value) and isinstance(value[0], np.ndarray | torch.Tensor)


def as_regression_data(x: Any, y: Any = None, owner: str | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a regression training set: ``x (N, D)``, ``y (N, O)`` (1-D ``y`` is read as
    ``(N, 1)``), both finite float32 with the same number of rows. ``x`` may also be an
    ``(x, y)`` pair, a Dataset or a DataLoader (:mod:`dunno.inputs`) with ``y=None``."""
    if not isinstance(x, list | tuple) or _is_data_pair(x):
        x, y = as_arrays(x, labels=y, owner=owner, require_labels=True)
    xt = as_features(x, owner=owner)
    yt = _real_2d(y, "y", "a 1-D array (N,) or a 2-D array (N, O) of regression targets")
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"The 'x' and 'y' arguments must have the same number of rows. Got "
            f"{xt.shape[0]} rows in x and {yt.shape[0]} in y."
        )
    return xt, yt
