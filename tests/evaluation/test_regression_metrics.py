"""Regression metrics against scipy and numeric integration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from evaluation.metrics import (
    crps_gaussian,
    crps_mixture,
    gaussian_interval,
    gaussian_mixture_nll,
    gaussian_nll,
    interval_coverage,
    mean_interval_width,
    regression_calibration_curve,
    rmse,
)


def _case(seed, n=300, d=None):
    rng = np.random.default_rng(seed)
    shape = (n,) if d is None else (n, d)
    mean = rng.normal(size=shape)
    variance = rng.uniform(0.1, 3.0, size=shape)
    targets = mean + rng.normal(size=shape) * np.sqrt(variance) * 1.3
    return mean, variance, targets


def test_rmse():
    assert rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(math.sqrt(4 / 3))
    mean, _, targets = _case(0, d=3)
    assert rmse(mean, targets) == pytest.approx(np.sqrt(np.mean((mean - targets) ** 2)))


def test_gaussian_nll_matches_scipy():
    mean, var, y = _case(1)
    expected = -np.mean(stats.norm.logpdf(y, loc=mean, scale=np.sqrt(var)))
    assert gaussian_nll(mean, var, y) == pytest.approx(expected, rel=1e-13)
    # (N, D): summed over outputs, averaged over examples
    mean, var, y = _case(2, d=4)
    expected = -np.mean(np.sum(stats.norm.logpdf(y, loc=mean, scale=np.sqrt(var)), axis=1))
    assert gaussian_nll(mean, var, y) == pytest.approx(expected, rel=1e-13)
    t = [torch.from_numpy(a) for a in (mean, var, y)]
    assert gaussian_nll(*t) == gaussian_nll(mean, var, y)


def test_gaussian_mixture_nll_matches_scipy():
    rng = np.random.default_rng(3)
    n, k = 200, 3
    weights = rng.dirichlet(np.ones(k), size=n)
    means = rng.normal(size=(n, k)) * 2
    variances = rng.uniform(0.2, 2.0, size=(n, k))
    y = rng.normal(size=n) * 2
    density = np.sum(weights * stats.norm.pdf(y[:, None], means, np.sqrt(variances)), axis=1)
    assert gaussian_mixture_nll(weights, means, variances, y) == pytest.approx(
        -np.mean(np.log(density)), rel=1e-12)
    # one component is a Gaussian
    assert gaussian_mixture_nll(np.ones((n, 1)), means[:, :1], variances[:, :1], y) == (
        pytest.approx(gaussian_nll(means[:, 0], variances[:, 0], y), rel=1e-13))
    # a zero weight removes its component
    w = np.zeros((n, 2))
    w[:, 0] = 1.0
    assert gaussian_mixture_nll(w, means[:, :2], variances[:, :2], y) == pytest.approx(
        gaussian_nll(means[:, 0], variances[:, 0], y), rel=1e-13)


def _crps_numeric(mu, sigma, y):
    def cdf_sq(x):
        return stats.norm.cdf(x, mu, sigma) ** 2

    def sf_sq(x):
        return stats.norm.sf(x, mu, sigma) ** 2

    left = integrate.quad(cdf_sq, -np.inf, y, epsabs=1e-13, epsrel=1e-12)[0]
    right = integrate.quad(sf_sq, y, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
    return left + right


@pytest.mark.parametrize("mu,var,y", [(0.0, 1.0, 0.0), (1.0, 4.0, -2.0), (-3.0, 0.25, 2.5),
                                      (0.5, 9.0, 0.7)])
def test_crps_matches_numeric_integration(mu, var, y):
    expected = _crps_numeric(mu, math.sqrt(var), y)
    assert crps_gaussian([mu], [var], [y]) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_crps_known_values_and_mean():
    # N(0, 1) at its mean: 2 phi(0) - 1/sqrt(pi) = (sqrt 2 - 1) / sqrt(pi)
    assert crps_gaussian([0.0], [1.0], [0.0]) == pytest.approx(
        (math.sqrt(2) - 1) / math.sqrt(math.pi), rel=1e-14)
    # a nearly deterministic forecast scores the absolute error
    assert crps_gaussian([1.0], [1e-16], [3.0]) == pytest.approx(2.0, rel=1e-7)
    mean, var, y = _case(4, n=5)
    each = [crps_gaussian([m], [v], [t]) for m, v, t in zip(mean, var, y, strict=True)]
    assert crps_gaussian(mean, var, y) == pytest.approx(np.mean(each), rel=1e-14)


def test_intervals_coverage_and_width():
    lower, upper = gaussian_interval([0.0, 1.0], [1.0, 4.0], level=0.95)
    z = 1.959963984540054
    np.testing.assert_allclose(lower, [-z, 1 - 2 * z], rtol=1e-14)
    np.testing.assert_allclose(upper, [z, 1 + 2 * z], rtol=1e-14)
    # closed intervals: 0.5 and 1.0 are inside [0, 1], 1.5 is not
    assert interval_coverage([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 1.0, 1.5]) == 2 / 3
    assert mean_interval_width([0.0, 1.0], [1.0, 4.0]) == 2.0
    assert mean_interval_width(*gaussian_interval([0.0], [1.0], level=0.5)) == pytest.approx(
        2 * stats.norm.ppf(0.75), rel=1e-14)


def test_regression_calibration_curve():
    # |z| = 0, 1, 2 need levels 0, 0.6827, 0.9545
    curve = regression_calibration_curve([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, -2.0],
                                         levels=[0.0, 0.5, 0.7, 0.96, 1.0])
    np.testing.assert_array_equal(curve.expected, [0.0, 0.5, 0.7, 0.96, 1.0])
    np.testing.assert_allclose(curve.observed, [1 / 3, 1 / 3, 2 / 3, 1.0, 1.0])
    # agrees with interval_coverage at each level
    mean, var, y = _case(5, n=2000)
    curve = regression_calibration_curve(mean, var, y)
    assert curve.expected.shape == (21,)
    for level, observed in zip(curve.expected[1:-1], curve.observed[1:-1], strict=True):
        assert observed == pytest.approx(
            interval_coverage(*gaussian_interval(mean, var, level), y), abs=1e-3)
    # well-specified predictions are calibrated; over-confident ones are not
    rng = np.random.default_rng(6)
    mean = rng.normal(size=20000)
    y = mean + rng.normal(size=20000)
    good = regression_calibration_curve(mean, np.ones(20000), y)
    bad = regression_calibration_curve(mean, np.full(20000, 0.25), y)
    assert good.calibration_error() < 0.01
    assert bad.calibration_error() > 0.1
    assert np.all(bad.observed[1:-1] < bad.expected[1:-1])


# ------------------------------------------------------------------ CRPS of a Gaussian mixture
def _crps_mixture_numeric(w, mu, sigma, y):
    """int (F(z) - 1[z >= y])^2 dz for F = sum_m w_m N(mu_m, sigma_m^2), by scipy quad."""
    def cdf(z):
        return float(np.sum(w * stats.norm.cdf(z, mu, sigma)))

    left = integrate.quad(lambda z: cdf(z) ** 2, -np.inf, y, epsabs=1e-13, epsrel=1e-12,
                          limit=200)[0]
    right = integrate.quad(lambda z: (1.0 - cdf(z)) ** 2, y, np.inf, epsabs=1e-13,
                           epsrel=1e-12, limit=200)[0]
    return left + right


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crps_mixture_matches_numeric_integration(seed):
    rng = np.random.default_rng(seed)
    k = 1 + seed * 2  # 1, 3 and 5 components
    w = rng.dirichlet(np.ones(k), size=4)  # (4, K)
    mu = rng.normal(0, 2, size=(4, k))
    var = rng.uniform(0.05, 3.0, size=(4, k))
    y = rng.normal(0, 2, size=4)
    per_entry = crps_mixture(w, mu, var, y, reduction="none")
    expected = [_crps_mixture_numeric(w[i], mu[i], np.sqrt(var[i]), y[i]) for i in range(4)]
    np.testing.assert_allclose(per_entry, expected, rtol=1e-8, atol=1e-11)
    assert per_entry.dtype == np.float64 and per_entry.shape == (4,)
    assert crps_mixture(w, mu, var, y) == pytest.approx(np.mean(expected), rel=1e-8)


def test_crps_mixture_limits_and_shapes():
    mean, var, y = _case(4, n=6)
    # one component (or K equal ones, or a zero-weight extra) is the Gaussian closed form
    single = crps_gaussian(mean, var, y)
    assert crps_mixture(np.ones((6, 1)), mean[:, None], var[:, None], y) == pytest.approx(
        single, rel=1e-13)
    same = np.repeat(mean[:, None], 3, 1), np.repeat(var[:, None], 3, 1)
    assert crps_mixture(np.full((6, 3), 1 / 3), *same, y) == pytest.approx(single, rel=1e-12)
    w = np.column_stack([np.ones(6), np.zeros(6)])
    assert crps_mixture(w, np.column_stack([mean, mean + 5]), np.column_stack([var, var]),
                        y) == pytest.approx(single, rel=1e-13)
    # near-point masses: E|X - y| - E|X - X'| / 2 by hand, two atoms at 0 and 2 (weights
    # 1/4, 3/4) and y = 1: 1 - (2 * 1/4 * 3/4 * 2) / 2 = 0.625
    assert crps_mixture([[0.25, 0.75]], [[0.0, 2.0]], [[1e-18, 1e-18]], [1.0]) == (
        pytest.approx(0.625, rel=1e-8))
    # D outputs share the weights: each output's marginal, scored entry by entry
    rng = np.random.default_rng(5)
    w3 = rng.dirichlet(np.ones(3), size=6)
    mu3, var3 = rng.normal(size=(6, 3, 2)), rng.uniform(0.1, 2, size=(6, 3, 2))
    y2 = rng.normal(size=(6, 2))
    both = crps_mixture(w3, mu3, var3, y2, reduction="none")
    assert both.shape == (6, 2)
    for d in range(2):
        np.testing.assert_allclose(both[:, d], crps_mixture(w3, mu3[..., d], var3[..., d],
                                                            y2[:, d], reduction="none"),
                                   rtol=1e-14)
    assert crps_mixture(w3, mu3, var3, y2) == pytest.approx(both.mean(), rel=1e-14)


def test_crps_mixture_refuses_bad_input():
    w, mu, var, y = [[0.5, 0.5]], [[0.0, 1.0]], [[1.0, 1.0]], [0.0]
    with pytest.raises(ValueError, match="rows summing to 1"):
        crps_mixture([[0.5, 0.6]], mu, var, y)
    with pytest.raises(ValueError, match="mixture weights in \\[0, 1\\]"):
        crps_mixture([[1.5, -0.5]], mu, var, y)
    with pytest.raises(ValueError, match="'variances' argument must be > 0; found 0.0"):
        crps_mixture(w, mu, [[1.0, 0.0]], y)
    with pytest.raises(ValueError, match=r"'weights' argument must have shape \(N, K\)"):
        crps_mixture([[1.0]], mu, var, y)
    with pytest.raises(ValueError, match="'targets' argument must have shape"):
        crps_mixture(w, [[[0.0], [1.0]]], [[[1.0], [1.0]]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="'reduction' parameter of crps_mixture must be one "
                                         "of 'mean', 'none'"):
        crps_mixture(w, mu, var, y, reduction="sum")
    with pytest.raises(ValueError, match="'means' argument must be finite; found nan"):
        crps_mixture(w, [[0.0, float("nan")]], var, y)
