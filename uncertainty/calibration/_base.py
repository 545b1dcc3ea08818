"""The calibrator contract shared by every post-hoc calibration method.

Every calibrator follows scikit-learn's estimator style:

* ``__init__`` only stores hyper-parameters (keyword-only);
* ``fit(logits (N, C), labels (N,))`` validates the parameters and the data, learns the
  state (attributes ending in ``_``) and returns ``self``;
* ``transform(logits) -> (N, C)`` *calibrated logits*: ``softmax(transform(z))`` are the
  calibrated probabilities. The scaling methods (temperature, vector, matrix, Platt, beta)
  return their rescaled logits; the binning methods (histogram binning, isotonic
  regression) return log-probabilities, which are valid logits;
* ``predict_proba(logits) -> (N, C)`` calibrated probabilities, rows summing to 1.

Inputs may be torch tensors or numpy arrays on any device, ``(logits, labels)`` pairs, Datasets
or DataLoaders (:mod:`dunno.inputs`); outputs are numpy arrays for numpy input, else torch
tensors on the input's device, in the input's floating dtype (float64 for integer input). The
work is done in float64. Using a calibrator before ``fit`` raises
:class:`~dunno.errors.NotFittedError`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from dunno.errors import check_is_fitted
from dunno.estimator import Estimator
from dunno.inputs import as_arrays, output_like
from dunno.validation import as_labels
from uncertainty.calibration._checks import as_logits

__all__ = ["Calibrator"]


class Calibrator(Estimator, ABC):
    """Base class of the post-hoc calibrators (see the module docstring for the contract).

    Parameters, ``repr``, ``set_params`` and :meth:`check_fitted` come from
    :class:`dunno.estimator.Estimator`. Subclasses set :attr:`name`, list the learned
    attributes that :meth:`transform` needs in :attr:`_state_names`, and implement
    :meth:`_validate_params`, :meth:`_fit` (on float64 logits and int64 labels, both already
    validated) and :meth:`_transform` (float64 logits to float64 calibrated logits).
    """

    #: Registry name (``make_calibrator(name)``).
    name: ClassVar[str] = ""
    #: True for methods defined for two classes only (Platt scaling, beta calibration).
    binary_only: ClassVar[bool] = False
    #: Learned attributes saved by :meth:`state_dict` (floats, ints, bools or tensors).
    _state_names: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ the contract
    def fit(self, logits, labels=None, *, check_input: bool = True) -> Calibrator:
        """Learn the calibration map from held-out ``logits (N, C)`` and ``labels (N,)``.

        Parameters
        ----------
        logits : Tensor, ndarray, (logits, labels) pair, Dataset or DataLoader
            The model's raw outputs (before the softmax) on a calibration set that was
            not used to train it, ``(N, C)`` (any kind read by :mod:`dunno.inputs`; a pair,
            Dataset or loader carries the labels too).
        labels : Tensor or ndarray, shape (N,)
            Integer class indices in ``[0, C)`` (with array ``logits``).
        check_input : bool
            Reject inputs that look like probabilities (default). ``False`` skips that check.

        Returns
        -------
        self
        """
        self._validate_params()
        logits, labels = as_arrays(logits, labels=labels, name="logits", label_name="labels",
                                   owner=f"{type(self).__name__}.fit", require_labels=True,
                                   finite=False)  # as_logits refuses NaN / inf itself
        z = as_logits(logits, check_input=check_input)
        if self.binary_only and z.shape[1] != 2:
            raise ValueError(
                f"{type(self).__name__} is defined for binary classifiers: 'logits' must have "
                f"2 columns. Got {z.shape[1]} instead; use temperature, vector or matrix "
                "scaling, histogram binning or isotonic regression for more classes."
            )
        y = as_labels(labels, z.shape[0], z.shape[1], rows_of="logits").to(z.device)
        if z.shape[1] > 1 and bool((y == y[0]).all()):
            raise ValueError(
                f"{type(self).__name__}.fit: every one of the {len(y)} calibration labels is "
                f"class {int(y[0])}; a calibrator fitted on them would learn to predict that "
                "class whatever the logits. Calibrate on held-out data that holds at least "
                "two classes (a larger or stratified calibration split)."
            )
        for attr in (*self._state_names, "num_classes_", "model_fingerprint_"):
            if attr in self.__dict__:
                delattr(self, attr)
        self._fit(z, y)
        self._check_finite_state(z)
        self.num_classes_ = int(z.shape[1])
        return self

    def transform(self, logits, *, check_input: bool = True) -> torch.Tensor:
        """Calibrated logits ``(N, C)``: ``softmax(transform(z)) == predict_proba(z)``.

        Rescaled logits for the scaling methods, log-probabilities for the binning methods.
        """
        z, like = self._prepare(logits, check_input, "transform")
        return output_like(self._transform(z).to(like), logits)

    def predict_proba(self, logits, *, check_input: bool = True) -> torch.Tensor:
        """Calibrated probabilities ``(N, C)``; every row sums to 1."""
        z, like = self._prepare(logits, check_input, "predict_proba")
        return output_like(torch.softmax(self._transform(z), dim=1).to(like), logits)

    def fit_transform(self, logits, labels=None, *, check_input: bool = True) -> torch.Tensor:
        """``fit(logits, labels).transform(logits)`` (numpy for numpy ``logits``)."""
        self.fit(logits, labels, check_input=check_input)
        z, _ = as_arrays(logits, name="logits", owner=f"{type(self).__name__}.fit_transform")
        return output_like(self.transform(z, check_input=check_input), logits)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """The learned state (tensors moved to the CPU) for :func:`save_calibrator`."""
        self.check_fitted()
        state: dict[str, Any] = {"num_classes_": self.num_classes_}
        for attr in self._state_names:
            value = getattr(self, attr)
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu()
            elif isinstance(value, list):
                value = [v.detach().cpu() for v in value]
            state[attr] = value
        return state

    def _state_spec(self, num_classes: int) -> dict[str, Any]:
        """What each learned attribute must be for ``num_classes`` classes: ``float``,
        ``int`` or ``bool``, a shape tuple (a floating tensor of that shape), or
        ``("tensors", C)`` (a list of ``C`` 1-D floating tensors). Subclasses add theirs to
        the iteration bookkeeping defined here."""
        return {"n_iter_": int, "converged_": bool, "at_bound_": bool}

    def load_state_dict(self, state: dict[str, Any]) -> Calibrator:
        """Restore the learned state written by :meth:`state_dict`; returns ``self``. Every
        value must have the type and shape a fit on ``num_classes_`` classes gives
        (:meth:`_state_spec`), else a ValueError names it: a state of another kind would
        calibrate with other numbers than the ones fitted."""
        self._validate_params()
        missing = [a for a in ("num_classes_", *self._state_names) if a not in state]
        if missing:
            raise ValueError(
                f"The state for {type(self).__name__} lacks {missing}; it was saved by "
                "another calibrator or is incomplete."
            )
        c = state["num_classes_"]
        if isinstance(c, bool) or not isinstance(c, int) or c < (2 if self.binary_only else 1):
            raise ValueError(f"The state for {type(self).__name__} has num_classes_ = {c!r}; "
                             "it must be a positive int (2 for a binary method).")
        spec = self._state_spec(c)
        for attr in self._state_names:
            _check_state_value(type(self).__name__, attr, state[attr], spec.get(attr), c)
        for attr in ("num_classes_", *self._state_names):
            setattr(self, attr, state[attr])
        return self

    # ------------------------------------------------------------------ internals
    def _check_finite_state(self, logits: torch.Tensor) -> None:
        """Refuse a fit that ended in NaN / inf state (never leave it behind silently)."""
        for attr in self._state_names:
            value = getattr(self, attr)
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, bool | int):
                    continue
                if not bool(torch.isfinite(torch.as_tensor(v)).all()):
                    for a in self._state_names:
                        self.__dict__.pop(a, None)
                    raise ValueError(
                        f"{type(self).__name__} ended in a non-finite state ({attr}={v!r}) on "
                        f"these logits (largest |logit| {float(logits.abs().max()):.3g}); the "
                        "calibrator was not fitted. Check the logits, or use temperature "
                        "scaling."
                    )

    def check_fitted(self) -> None:
        """Raise :class:`~dunno.errors.NotFittedError` unless :meth:`fit` (or
        :meth:`load_state_dict`) has run."""
        check_is_fitted(self, ["num_classes_", *self._state_names], "fit")

    def _prepare(self, logits, check_input: bool, method: str
                 ) -> tuple[torch.Tensor, torch.dtype]:
        self.check_fitted()
        raw, _ = as_arrays(logits, name="logits", owner=f"{type(self).__name__}.{method}",
                           finite=False)  # as_logits refuses NaN / inf with its own message
        logits = raw
        like = raw.dtype if raw.is_floating_point() else torch.float64
        z = as_logits(logits, check_input=check_input, num_classes=self.num_classes_)
        return z, like

    @abstractmethod
    def _fit(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Learn the map from validated float64 ``logits (N, C)`` and ``labels (N,)``."""

    @abstractmethod
    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated logits ``(N, C)`` from validated float64 ``logits (N, C)``."""


def tensor_on(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` as float64 on the device of ``like``."""
    return value.to(device=like.device, dtype=torch.float64)


def _check_state_value(owner: str, attr: str, value: Any, expected: Any, c: int) -> None:
    """Raise a ValueError unless ``value`` is what ``expected`` (:meth:`_state_spec`) says."""
    def fail(what: str) -> None:
        got = (f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
               if isinstance(value, torch.Tensor) else f"{type(value).__name__} {value!r}")
        raise ValueError(f"The state for {owner} has {attr} = {got}; for {c} classes it must "
                         f"be {what}.")

    if expected is None:
        return
    if expected is bool:
        if not isinstance(value, bool):
            fail("a bool")
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an int")
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value):
            fail("a finite float")
    elif isinstance(expected, tuple) and expected and expected[0] == "tensors":
        if not isinstance(value, list) or len(value) != expected[1] or not all(
                isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() == 1
                for v in value):
            fail(f"a list of {expected[1]} 1-D floating tensors")
    elif not (isinstance(value, torch.Tensor) and value.is_floating_point()
              and tuple(value.shape) == tuple(expected)):
        fail(f"a floating tensor of shape {tuple(expected)}")
