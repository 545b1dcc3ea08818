"""Predictive uncertainty: aleatoric and epistemic uncertainty out of a network, for
classification and regression.

Methods (one per module):
    mc_dropout       MC-Dropout wrapper for any model (full / fast mode) and Gal's UCI regressor
    ensemble         deep ensembles, vectorised with torch.func (vmap over stacked parameters)
    heteroscedastic  mean + log-variance regression (Gaussian / beta-NLL), noisy-logit
                     classification (sampled softmax), both with MC-Dropout
    mdn              mixture density networks with the aleatoric / epistemic variance split
    bayes            mean-field variational Bayesian MLP in Pyro (SVI, AutoNormal)
    uci              the UCI regression benchmark over the fixed splits (``run_uci``), next to
                     the published numbers

Every method is a :class:`dunno.estimator.Estimator` (parameters, ``repr``,
``NotFittedError``) and returns a :class:`ClassificationPrediction` or
:class:`RegressionPrediction` (``prediction``). The regression methods derive from
:class:`Regressor` (``base``); ``make_regressor(name)`` builds them by registry name
(``REGRESSORS``), the interface the UCI benchmark (:func:`run_uci`, ``dunno uci``) runs.
"""

from uncertainty.predictive.base import JointFit, Regressor
from uncertainty.predictive.bayes import BayesianMLP, BayesianMLPRegressor
from uncertainty.predictive.ensemble import DeepEnsemble, DeepEnsembleRegressor
from uncertainty.predictive.heteroscedastic import (
    HeteroscedasticClassifier,
    HeteroscedasticRegressor,
    gaussian_nll_loss,
    sampled_softmax_loss,
)
from uncertainty.predictive.mc_dropout import (
    MCDropout,
    dropout_layers,
    mc_dropout_mode,
)
from uncertainty.predictive.mc_dropout_regression import MCDropoutRegressor
from uncertainty.predictive.mdn import MDNRegressor, mdn_log_prob, mdn_nll
from uncertainty.predictive.prediction import ClassificationPrediction, RegressionPrediction
from uncertainty.predictive.registry import (
    REGRESSORS,
    available_regressors,
    make_regressor,
    register_regressor,
)
from uncertainty.predictive.uci import UCITable, run_uci

__all__ = [
    "REGRESSORS",
    "BayesianMLP",
    "BayesianMLPRegressor",
    "ClassificationPrediction",
    "DeepEnsemble",
    "DeepEnsembleRegressor",
    "HeteroscedasticClassifier",
    "HeteroscedasticRegressor",
    "JointFit",
    "MCDropout",
    "MCDropoutRegressor",
    "MDNRegressor",
    "RegressionPrediction",
    "Regressor",
    "UCITable",
    "available_regressors",
    "dropout_layers",
    "gaussian_nll_loss",
    "make_regressor",
    "mc_dropout_mode",
    "mdn_log_prob",
    "mdn_nll",
    "register_regressor",
    "run_uci",
    "sampled_softmax_loss",
]
