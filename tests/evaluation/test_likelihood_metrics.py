"""Likelihood metrics: nats, bits/dim with the dequantisation offset, log-mean-exp and
importance-sampled estimates on a model with a known marginal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from evaluation.metrics import (
    bits_per_dim,
    effective_sample_size,
    importance_sampled_log_likelihood,
    log_mean_exp,
    nll_nats,
)


def test_nll_and_bits_per_dim():
    log_probs = np.array([-10.0, -20.0])
    assert nll_nats(log_probs) == 15.0
    assert nll_nats(torch.tensor(log_probs)) == 15.0
    d = 784
    lp = np.full(3, -3.0 * d * math.log(2.0))  # 3 bits per dimension
    assert bits_per_dim(lp, d) == pytest.approx(3.0, rel=1e-15)
    # densities of dequantised 8-bit data scaled to [0, 1]: + log2(256) = 8 bits
    assert bits_per_dim(lp, d, bin_width=1 / 256) == pytest.approx(11.0, rel=1e-15)
    assert bits_per_dim(lp, d, bin_width=2 / 256) == pytest.approx(10.0, rel=1e-15)
    assert bits_per_dim(lp, d, bin_width=1.0) == pytest.approx(3.0, rel=1e-15)
    assert nll_nats([-np.inf, 0.0]) == math.inf


def test_dequantisation_offset_matches_a_discrete_uniform_model():
    # A uniform density on [0, 1]^D has log p(y) = 0; the discrete uniform model over 256
    # values per dimension has exactly 8 bits/dim.
    assert bits_per_dim(np.zeros(5), 12, bin_width=1 / 256) == 8.0


def test_log_mean_exp():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 7)) * 30
    np.testing.assert_allclose(log_mean_exp(v, axis=0), special.logsumexp(v, axis=0) - math.log(50),
                               rtol=1e-13)
    np.testing.assert_allclose(log_mean_exp(v, axis=1), special.logsumexp(v, axis=1) - math.log(7),
                               rtol=1e-13)
    assert log_mean_exp([1000.0, 1000.0]) == pytest.approx(1000.0, rel=1e-15)  # no overflow
    assert log_mean_exp([-1000.0, -1000.0]) == pytest.approx(-1000.0, rel=1e-15)
    assert log_mean_exp([-np.inf, 0.0]) == pytest.approx(-math.log(2.0), rel=1e-15)
    out = log_mean_exp(np.array([[-np.inf, 0.0], [-np.inf, 0.0]]), axis=0)
    assert out[0] == -np.inf and out[1] == 0.0


def test_importance_sampling_on_a_gaussian_model():
    # z ~ N(0, 1), x | z ~ N(z, 1)  =>  p(x) = N(0, 2); posterior z | x = N(x / 2, 1 / 2).
    rng = np.random.default_rng(1)
    x = rng.normal(size=6) * 1.5
    exact = stats.norm.logpdf(x, 0.0, math.sqrt(2.0))

    def log_weights(z, log_q):
        return stats.norm.logpdf(z) + stats.norm.logpdf(x, z, 1.0) - log_q

    # proposal = exact posterior: every weight equals p(x)
    z = x / 2 + rng.normal(size=(8, 6)) * math.sqrt(0.5)
    lw = log_weights(z, stats.norm.logpdf(z, x / 2, math.sqrt(0.5)))
    np.testing.assert_allclose(importance_sampled_log_likelihood(lw), exact, rtol=1e-12)
    np.testing.assert_allclose(effective_sample_size(lw), 8.0, rtol=1e-12)
    # proposal = prior: unbiased in p, close in log p with many samples
    z = rng.normal(size=(20000, 6))
    lw = log_weights(z, stats.norm.logpdf(z))
    estimate = importance_sampled_log_likelihood(torch.from_numpy(lw))
    np.testing.assert_allclose(estimate, exact, atol=0.05)
    ess = effective_sample_size(lw)
    assert np.all((ess > 1.0) & (ess < 20000))


def test_effective_sample_size_extremes():
    assert effective_sample_size(np.zeros((5, 1)))[0] == pytest.approx(5.0)
    lw = np.array([[0.0], [-np.inf], [-np.inf]])
    assert effective_sample_size(lw)[0] == pytest.approx(1.0)
