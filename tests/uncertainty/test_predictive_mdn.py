"""Mixture density networks: the log-density against scipy, the variance split, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from uncertainty.predictive import MDNRegressor, mdn_log_prob, mdn_nll

pytestmark = pytest.mark.one_thread


def test_mdn_log_prob_equals_scipy_mixture_logpdf():
    rng = np.random.default_rng(0)
    n, k, d = 25, 4, 2
    logits, means = rng.normal(size=(n, k)), rng.normal(size=(n, k, d)) * 2
    log_vars, y = rng.normal(size=(n, k, d)) - 1, rng.normal(size=(n, d))
    ours = mdn_log_prob(*(torch.from_numpy(a) for a in (logits, means, log_vars, y)))
    weights = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    expected = np.log(np.array([
        sum(weights[i, j] * stats.multivariate_normal(means[i, j], np.diag(np.exp(log_vars[i, j])))
            .pdf(y[i]) for j in range(k))
        for i in range(n)
    ]))
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(
        float(mdn_nll(*(torch.from_numpy(a) for a in (logits, means, log_vars, y)))),
        -expected.mean(), rtol=1e-10)


def test_mdn_log_prob_is_stable_far_in_the_tails():
    logits = torch.zeros(1, 2, dtype=torch.float64)
    means = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)
    log_vars = torch.full((1, 2, 1), -10.0, dtype=torch.float64)
    value = mdn_log_prob(logits, means, log_vars, torch.tensor([[50.0]], dtype=torch.float64))
    assert torch.isfinite(value).all()  # a naive sum of densities underflows to log(0)
    expected = stats.norm(1.0, np.exp(-5.0)).logpdf(50.0) + np.log(0.5)
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)


def test_regressor_fits_bishop_inverse_problem_and_splits_variance():
    from dunno.data import load_dataset

    ds = load_dataset("inverse-sine", "train")
    est = MDNRegressor(24, num_components=3, epochs=60, batch_size=100, lr=1e-2).fit(ds.x, ds.y)
    x = torch.tensor([[0.5]])  # three branches of t at x = 0.5
    weights, means, variances = est.mixture(x)
    assert weights.shape == (1, 3) and means.shape == (1, 3, 1)
    pred = est.predict(x)
    w = weights[..., None]
    torch.testing.assert_close(pred.aleatoric_var, (w * variances).sum(1))
    torch.testing.assert_close(pred.epistemic_var, (w * (means - pred.mean[:, None]) ** 2).sum(1))
    # the mixture is multi-modal there: the spread of the means dominates the variance
    assert float(pred.epistemic_var) > float(pred.aleatoric_var)
    torch.testing.assert_close(est.log_prob(x, torch.tensor([[0.5]])),
                               pred.log_prob(torch.tensor([[0.5]])))
    mode = est.mode(x)
    assert mode.shape == (1, 1)
    draws = est.sample(ds.x[:10], 200, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (200, 10, 1)
    assert float(draws.mean()) == pytest.approx(float(est.predict(ds.x[:10]).mean.mean()),
                                                abs=0.1)


def test_bad_num_components():
    with pytest.raises(ValueError, match=r"'num_components' parameter of MDNRegressor must be "
                                         r"an int >= 1\. Got 0 instead\."):
        MDNRegressor(num_components=0).fit(torch.randn(5, 1), torch.randn(5, 1))


def test_mdn_and_ensemble_predictions_have_the_mixture_crps():
    """An MDN's and a deep ensemble's predictions are mixtures: their CRPS is the mixture's
    closed form (evaluation.metrics.crps_mixture), checked here against numerical
    integration of (F(z) - 1[z >= y])^2 for one row."""
    from scipy import integrate

    from uncertainty.predictive import DeepEnsembleRegressor

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 2, generator=g), torch.randn(60, 1, generator=g)
    for est in (MDNRegressor(8, num_components=3, epochs=2).fit(x, y),
                DeepEnsembleRegressor(8, num_members=3, epochs=2).fit(x, y)):
        pred = est.predict(x[:5])
        assert pred.is_mixture and pred.component_weights.shape == (5, 3)
        crps = pred.crps(y[:5])
        w = pred.component_weights[0].numpy()
        mu, sd = pred.component_means[0, :, 0].numpy(), pred.component_vars[0, :, 0].sqrt().numpy()
        target = float(y[0, 0])

        def cdf(z, w=w, mu=mu, sd=sd):
            return float(np.sum(w * stats.norm.cdf(z, mu, sd)))

        expected = (integrate.quad(lambda z: cdf(z) ** 2, -np.inf, target, limit=200)[0]
                    + integrate.quad(lambda z: (1 - cdf(z)) ** 2, target, np.inf, limit=200)[0])
        assert float(crps[0, 0]) == pytest.approx(expected, rel=1e-6)
