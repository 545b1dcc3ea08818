"""Predictive uncertainty on a user's own model and arrays: the inputs that used to give a
silently wrong number (zero epistemic variance from dropout at rate 0, NaN log-likelihoods,
NaN rescaling, ignored seeds) or an unclear error (ensembles of different architectures,
too few logits), checked against closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from dunno.nets import create
from uncertainty.predictive import (
    DeepEnsemble,
    MCDropout,
    MCDropoutRegressor,
    RegressionPrediction,
    run_uci,
)

pytestmark = pytest.mark.one_thread


def _net(p: float, out: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(p), nn.Linear(8, out))


def _data(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


# ----------------------------------------------------------------------------- MC-Dropout
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_mc_dropout_refuses_dropout_layers_of_rate_zero(task):
    with pytest.raises(ValueError, match=r"p > 0.*p = 0 \('2': p=0.0\).*epistemic"):
        MCDropout(_net(0.0, 3), 5, task=task).predict(torch.randn(4, 3))


def test_mc_dropout_refuses_a_backbone_trained_without_dropout():
    # dunno.nets backbones always hold model.dropout, at rate 0 unless asked otherwise
    model = create("lenet5", 1, 10, input_size=8)
    with pytest.raises(ValueError, match="'dropout': p=0.0"):
        MCDropout(model, 5).predict(torch.randn(2, 1, 8, 8))


def test_mc_dropout_accepts_one_layer_above_zero():
    model = nn.Sequential(nn.Dropout(0.0), nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(8, 2))
    pred = MCDropout(model, 20).predict(torch.randn(30, 3) * 3, seed=0)
    assert float(pred.mutual_information.max()) > 0


def test_mc_dropout_regression_refuses_outputs_of_three_axes():
    model = nn.Sequential(_net(0.5), nn.Unflatten(1, (1, 1)))  # (N, 1, 1)
    with pytest.raises(ValueError, match=r"outputs \(N, D\) or \(N,\).*\(6, 1, 1\)"):
        MCDropout(model, 3, task="regression").predict(torch.randn(6, 3))


def test_mc_dropout_regressor_with_rate_zero_is_one_gaussian():
    x, y = _data()
    est = MCDropoutRegressor(8, dropout=0.0, tau=4.0, epochs=2, batch_size=16,
                             num_samples=7).fit(x, y)
    with torch.no_grad():
        f = est.model_(torch.from_numpy(x)).double()[:, 0].numpy()
    pred = est.predict(x)
    assert float(pred.epistemic_var.abs().max()) == 0.0
    np.testing.assert_allclose(pred.aleatoric_var.numpy(), 0.25)
    expected = stats.norm.logpdf(y.astype(np.float64), f, np.sqrt(1 / 4.0))
    np.testing.assert_allclose(est.log_prob(x, y), expected, rtol=1e-5)
    samples = est.sample(x)
    assert samples.shape == (7, 40, 1)
    np.testing.assert_allclose(samples[..., 0], np.broadcast_to(f, (7, 40)), rtol=1e-6)


# ----------------------------------------------------------------------------- predictions
def _mixture() -> RegressionPrediction:
    means = torch.tensor([[[0.0], [1.0]], [[2.0], [2.0]]], dtype=torch.float64)  # (N, K, D)
    var = torch.tensor([[[1.0], [4.0]], [[0.25], [0.25]]], dtype=torch.float64)
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    return RegressionPrediction.from_components(weights, means, var)


def test_log_prob_is_the_mixture_density_for_y_of_either_shape():
    pred, y = _mixture(), np.array([0.5, 1.0])
    expected = np.log([0.3 * stats.norm.pdf(0.5, 0, 1) + 0.7 * stats.norm.pdf(0.5, 1, 2),
                       stats.norm.pdf(1.0, 2, 0.5)])
    np.testing.assert_allclose(pred.log_prob(y).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(pred.log_prob(y[:, None]).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["log_prob", "crps"])
def test_non_finite_targets_are_refused(method, bad):
    with pytest.raises(ValueError, match=rf"'y' argument of {method} contains NaN or inf.*"
                       r"1 of 2 rows"):
        getattr(_mixture(), method)(np.array([0.5, bad]))


def test_non_numeric_targets_are_refused():
    with pytest.raises(ValueError, match="'y' argument of log_prob must hold real numbers"):
        _mixture().log_prob(np.array(["a", "b"]))


def test_scaled_refuses_a_nan_location_and_rescales_the_density():
    pred = _mixture()
    with pytest.raises(ValueError, match="'loc' argument of scaled must be finite"):
        pred.scaled(float("nan"), 2.0)
    with pytest.raises(ValueError, match="'scale' argument of scaled must be finite"):
        pred.scaled(0.0, float("inf"))
    # p_{loc + s Y}(loc + s y) = p_Y(y) / s
    y = torch.tensor([0.5, 1.0], dtype=torch.float64)
    np.testing.assert_allclose(pred.scaled(3.0, 2.0).log_prob(3.0 + 2.0 * y).numpy(),
                               (pred.log_prob(y) - np.log(2.0)).numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------- ensembles
def test_ensemble_of_different_architectures_falls_back_to_the_loop():
    widths = itertools.cycle([8, 16])

    def model_fn():
        h = next(widths)
        return nn.Sequential(nn.Linear(3, h), nn.ReLU(), nn.Linear(h, 2))

    x, y = _data()
    ens = DeepEnsemble(model_fn, 2, epochs=1, batch_size=20).fit(x, y)
    assert not ens.vectorized_ and "different architectures" in ens.vectorize_reason_
    assert not ens.inference_vectorized_
    xt = torch.from_numpy(x)
    with torch.no_grad():
        out = torch.stack([m(xt) for m in ens.members_]).double()  # (M, N, 2)
    mu, var = out[..., :1], torch.nn.functional.softplus(out[..., 1:]) + 1e-6
    total = (var + mu**2).mean(0) - mu.mean(0) ** 2  # the paper's mixture variance
    pred = ens.predict(x)
    torch.testing.assert_close(pred.mean, mu.mean(0))
    torch.testing.assert_close(pred.variance, total)
    with pytest.raises(ValueError, match="different architectures"):
        DeepEnsemble(model_fn, 2, epochs=1, vectorize=True).fit(x, y)


def test_ensemble_classifier_needs_a_logit_per_class():
    x, _ = _data()
    labels = np.r_[np.zeros(39, dtype=np.int64), 4]

    def model_fn():
        return nn.Linear(3, 2)

    with pytest.raises(ValueError, match=r"output 2 logits.*up to 4.*at least 5"):
        DeepEnsemble(model_fn, 2, task="classification", epochs=1).fit(x, labels)


# ----------------------------------------------------------------------------- UCI runner
def test_run_uci_refuses_a_seed_in_params():
    with pytest.raises(ValueError, match=r"cannot set 'seed'.*seed=5"):
        run_uci("mdn", "yacht", params={"seed": 5})
