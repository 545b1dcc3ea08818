"""The registry of regression methods used by the UCI runner: every entry is a
:class:`~uncertainty.predictive.base.Regressor` with the common interface ``fit(x, y) ->
self``, ``fit_many(data)`` (train several training sets, e.g. the UCI splits, in one
vectorised run) and ``predict(x) -> RegressionPrediction`` on standardised data.

:data:`REGRESSORS` is a :class:`dunno.registry.Registry` (read like a dict); a new method is
added with :func:`register_regressor` (usable as a class decorator) or, from another
distribution, through the entry-point group ``dunno.regressors``.
"""

from __future__ import annotations

from typing import Any

from dunno.registry import Registry
from uncertainty.predictive.base import Regressor
from uncertainty.predictive.bayes import BayesianMLPRegressor
from uncertainty.predictive.ensemble import DeepEnsembleRegressor
from uncertainty.predictive.heteroscedastic import HeteroscedasticRegressor
from uncertainty.predictive.mc_dropout_regression import MCDropoutRegressor
from uncertainty.predictive.mdn import MDNRegressor

__all__ = ["REGRESSORS", "available_regressors", "make_regressor", "register_regressor"]




#: Regression methods by registry name (plugins of the entry-point group
#: ``dunno.regressors`` after them).
REGRESSORS: Registry[type[Regressor]] = Registry(
    "regression method", "dunno.regressors", base=Regressor
)
for _cls in (MCDropoutRegressor, DeepEnsembleRegressor, HeteroscedasticRegressor, MDNRegressor,
             BayesianMLPRegressor):
    REGRESSORS.register(obj=_cls)
del _cls


def register_regressor(cls: type[Regressor]) -> type[Regressor]:
    """Add ``cls`` to :data:`REGRESSORS` under ``cls.name`` (usable as a class decorator);
    a name taken by another class is refused."""
    return REGRESSORS.register(obj=cls)


def available_regressors() -> list[str]:
    """Registry names, in registry order."""
    return REGRESSORS.available()


def make_regressor(name: str, **params: Any) -> Regressor:
    """A new, unfitted regressor ``name`` (see :data:`REGRESSORS`) with ``params``."""
    cls = REGRESSORS.get(name)
    accepted = cls.param_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for {cls.__name__}; accepted: {accepted}."
        )
    return cls(**params)
