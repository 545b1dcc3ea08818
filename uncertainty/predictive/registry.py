"""The registry of regression methods used by the UCI runner: every entry has the common
interface ``fit(x, y) -> self`` and ``predict(x) -> RegressionPrediction`` on standardised
data (and, for the stacked MLP methods, ``fit_many(data)`` to train several training sets,
e.g. the UCI splits, in one vectorised run)."""

from __future__ import annotations

from typing import Any

from uncertainty.predictive.bayes import BayesianMLPRegressor
from uncertainty.predictive.ensemble import DeepEnsembleRegressor
from uncertainty.predictive.heteroscedastic import HeteroscedasticRegressor
from uncertainty.predictive.mc_dropout import MCDropoutRegressor
from uncertainty.predictive.mdn import MDNRegressor

__all__ = ["REGRESSORS", "available_regressors", "make_regressor"]

#: Regression methods by registry name.
REGRESSORS: dict[str, type] = {
    "mc-dropout": MCDropoutRegressor,
    "ensemble": DeepEnsembleRegressor,
    "heteroscedastic": HeteroscedasticRegressor,
    "mdn": MDNRegressor,
    "bnn": BayesianMLPRegressor,
}


def available_regressors() -> list[str]:
    """Registry names, in registry order."""
    return list(REGRESSORS)


def make_regressor(name: str, **params: Any):
    """A new, unfitted regressor ``name`` (see :data:`REGRESSORS`) with ``params``."""
    if not isinstance(name, str) or name not in REGRESSORS:
        raise ValueError(
            f"Unknown regression method {name!r}. Available: {', '.join(REGRESSORS)}."
        )
    try:
        return REGRESSORS[name](**params)
    except TypeError as err:
        raise ValueError(f"Bad parameters for regression method {name!r}: {err}") from err
