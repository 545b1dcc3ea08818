"""The estimator bases of the predictive methods.

* :class:`JointFit` -- ``fit(x, y)`` and ``fit_many(data)`` for estimators that can train
  copies of themselves on several training sets at once (the UCI splits, hyper-parameter
  grids) in one vectorised run;
* :class:`Regressor` -- the regression methods of :data:`~uncertainty.predictive.REGRESSORS`:
  ``fit(x (N, D), y (N, O)) -> self``, ``fit_many(data)``, ``predict(x) ->``
  :class:`~uncertainty.predictive.prediction.RegressionPrediction` on standardised data.

Both follow :class:`dunno.estimator.Estimator` (hyper-parameters from the ``__init__``
signature, ``repr``, ``set_params``, :class:`~dunno.errors.NotFittedError` before ``fit``).

``fit`` and ``fit_many`` take ``progress`` (report the training on stderr, one bar over the
epochs: :mod:`dunno.progress`; ``None``: as the enclosing call asked, off by default) and
``on_epoch_end(epoch, record)``, called after every epoch of the training run whose weights
are kept (not of a grid search's selection runs) with :func:`dunno.training.fit`'s epoch
record (``loss``, ``lr``, ``seconds``, ...; ``member`` where members train one after another).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from dunno.estimator import Estimator
from dunno.inputs import as_arrays, output_like
from dunno.progress import reporting
from dunno.validation import check_float, check_int
from uncertainty.predictive.prediction import RegressionPrediction

__all__ = ["EpochHook", "JointFit", "Regressor", "check_training_params"]

#: ``on_epoch_end(epoch, record)`` of :func:`dunno.training.fit`
EpochHook = Callable[[int, dict[str, float]], None]


def check_training_params(estimator: Estimator) -> None:
    """The optimisation hyper-parameters the predictive estimators share: ``epochs`` and
    ``batch_size`` ints >= 1, ``lr`` > 0, ``weight_decay`` >= 0."""
    check_int(estimator.epochs, "epochs", estimator, low=1)
    check_int(estimator.batch_size, "batch_size", estimator, low=1)
    check_float(estimator.lr, "lr", estimator, low=0.0, low_open=True)
    check_float(estimator.weight_decay, "weight_decay", estimator, low=0.0)


class JointFit(Estimator, ABC):
    """``fit`` and ``fit_many`` for estimators implementing ``_fit_jointly(estimators,
    data)``: train the (unfitted, validated) copies ``estimators[s]`` on ``data[s] = (x, y)``
    together and set their learned attributes."""

    #: Hyper-parameters that :meth:`fit_many` may set per training set (``params=``).
    _per_dataset_params: ClassVar[tuple[str, ...]] = ()

    def fit(self, x, y=None, *, progress: bool | None = None,
            on_epoch_end: EpochHook | None = None):
        """Fit on ``x (N, D)``, ``y (N, O)`` (or ``(N,)``); returns ``self``. ``x`` may be any
        kind read by :mod:`dunno.inputs` (numpy, tensor, an ``(x, y)`` pair, a Dataset or a
        DataLoader of ``(x, y)``); NaN / inf are refused. ``progress``, ``on_epoch_end``: see
        the module docstring."""
        self._validate_params()
        x, y = as_arrays(x, labels=y, owner=f"{type(self).__name__}.fit", require_labels=True)
        with reporting(progress, owner=f"{type(self).__name__}.fit"):
            self._fit_jointly([self], [(x, y)], on_epoch_end)
        return self

    def fit_many(self, data, params: list[dict[str, Any]] | None = None, *,
                 progress: bool | None = None, on_epoch_end: EpochHook | None = None) -> list:
        """Fit one copy of this estimator per ``(x, y)`` in ``data`` (all of one shape, e.g.
        the 20 UCI splits) as one stacked network -- the same result in distribution as
        calling :meth:`fit` on each, with one optimiser step for all per mini-batch.

        ``params``: optional list of per-dataset overrides of the hyper-parameters in
        ``_per_dataset_params`` (e.g. MC-Dropout's precisions converted to each split's
        standardised units). Returns the fitted copies in order. ``progress``,
        ``on_epoch_end``: see the module docstring (one run trains every copy)."""
        owner = f"{type(self).__name__}.fit_many"
        data = list(data)
        if not data:
            raise ValueError(f"{owner} needs at least one (x, y) pair.")
        overrides = [{}] * len(data) if params is None else list(params)
        if len(overrides) != len(data):
            raise ValueError(
                f"{owner} got {len(overrides)} parameter overrides for {len(data)} datasets."
            )
        allowed = self._per_dataset_params
        for override in overrides:
            unknown = sorted(set(override) - set(allowed))
            if unknown:
                what = (f"can override {' and '.join(repr(a) for a in allowed)} per dataset "
                        "only" if allowed else "takes no per-dataset parameters")
                raise ValueError(f"{owner} {what}. Got {unknown}.")
        data = [as_arrays(d, name=f"data[{i}]", owner=owner, require_labels=True)
                for i, d in enumerate(data)]
        estimators = [type(self)(**{**self.get_params(), **override}) for override in overrides]
        for est in estimators:
            est._validate_params()
        with reporting(progress, owner=owner):
            self._fit_jointly(estimators, data, on_epoch_end)
        return estimators

    @abstractmethod
    def _fit_jointly(self, estimators: list, data: list,
                     on_epoch_end: EpochHook | None = None) -> None:
        """Train ``estimators[s]`` on ``data[s]`` together (parameters already validated),
        calling ``on_epoch_end`` after every epoch of the run whose weights are kept."""


class Regressor(JointFit):
    """Base class of the regression methods (module docstring); registered by ``name`` in
    :data:`~uncertainty.predictive.REGRESSORS`."""

    #: Registry name (``make_regressor(name)``).
    name: ClassVar[str] = ""

    @abstractmethod
    def predict(self, x) -> RegressionPrediction:
        """The predictive distribution of ``x (N, D)``: mean, aleatoric and epistemic
        variance, exact ``log_prob(y)``."""

    def log_prob(self, x, y=None) -> torch.Tensor:
        """Predictive log-density of ``y (N, O)`` given ``x``, float64 ``(N,)``, nats (``x``
        may be an ``(x, y)`` pair, a Dataset or a loader with ``y=None``); numpy for numpy."""
        owner = f"{type(self).__name__}.log_prob"
        xs, ys = as_arrays(x, labels=y, owner=owner, require_labels=True)
        return output_like(self.predict(xs).log_prob(ys), x)
