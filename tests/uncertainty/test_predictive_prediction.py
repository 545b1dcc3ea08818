"""The prediction objects: the entropy decomposition and its bounds, the mixture moments and
the exact mixture log-density, unit changes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from evaluation.metrics import gaussian_mixture_nll
from uncertainty.predictive import ClassificationPrediction, RegressionPrediction


def _random_samples(t, n, c, seed=0, sharpness=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharpness * torch.randn(t, n, c, generator=g, dtype=torch.float64), -1)


@pytest.mark.parametrize("c", [2, 3, 10])
def test_mutual_information_is_between_zero_and_log_c(c):
    pred = ClassificationPrediction.from_samples(_random_samples(20, 200, c))
    mi = pred.mutual_information
    assert torch.all(mi >= 0) and torch.all(mi <= math.log(c))
    torch.testing.assert_close(pred.entropy, pred.expected_entropy + mi)
    assert torch.all(pred.entropy <= math.log(c) + 1e-12)


def test_maximal_disagreement_reaches_log_c():
    # T = C one-hot samples on different classes: predictive uniform, every sample certain
    c = 4
    samples = torch.eye(c, dtype=torch.float64).unsqueeze(1)  # (T=4, N=1, C=4)
    pred = ClassificationPrediction.from_samples(samples)
    torch.testing.assert_close(pred.mutual_information, torch.tensor([math.log(c)],
                                                                     dtype=torch.float64))
    assert float(pred.expected_entropy) == 0.0
    torch.testing.assert_close(pred.variation_ratio, torch.tensor([0.75], dtype=torch.float64))


def test_without_samples():
    probs = torch.tensor([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]])
    pred = ClassificationPrediction(probs)
    assert torch.all(pred.mutual_information == 0)
    torch.testing.assert_close(pred.expected_entropy, pred.entropy)
    torch.testing.assert_close(pred.variation_ratio, torch.tensor([0.3, 0.0], dtype=torch.float64))
    assert float(pred.entropy[1]) == 0.0  # 0 log 0 = 0
    assert pred.predictions.tolist() == [0, 0]


def test_classification_bad_input():
    with pytest.raises(ValueError, match="probabilities"):
        ClassificationPrediction(torch.tensor([[2.0, -1.0]]))
    samples = _random_samples(3, 4, 2)
    with pytest.raises(ValueError, match="mean of 'samples'"):
        ClassificationPrediction(samples[0], samples)


def test_regression_mixture_moments_and_log_prob_against_scipy():
    rng = np.random.default_rng(1)
    n, k = 30, 5
    w = rng.dirichlet(np.ones(k), size=n)
    mu, var = rng.normal(size=(n, k, 1)), rng.uniform(0.1, 2, size=(n, k, 1))
    y = rng.normal(size=(n, 1))
    pred = RegressionPrediction.from_components(*(torch.from_numpy(a) for a in (w, mu, var)))
    mean = (w[..., None] * mu).sum(1)
    total = (w[..., None] * (var + mu**2)).sum(1) - mean**2
    np.testing.assert_allclose(pred.mean.numpy(), mean)
    np.testing.assert_allclose(pred.variance.numpy(), total)
    expected = np.log((w * stats.norm(mu[..., 0], np.sqrt(var[..., 0])).pdf(y)).sum(1))
    np.testing.assert_allclose(pred.log_prob(torch.from_numpy(y)).numpy(), expected, rtol=1e-10)
    nll = gaussian_mixture_nll(w, mu[..., 0], var[..., 0], y[:, 0])
    assert float(-pred.log_prob(torch.from_numpy(y)).mean()) == pytest.approx(nll, rel=1e-12)


def test_regression_scaled_to_original_units():
    pred = RegressionPrediction.from_samples(torch.randn(7, 10, 1, dtype=torch.float64), 0.3)
    y = torch.randn(10, 1, dtype=torch.float64)
    scaled = pred.scaled(5.0, 2.0)
    torch.testing.assert_close(scaled.mean, pred.mean * 2 + 5)
    torch.testing.assert_close(scaled.variance, pred.variance * 4)
    torch.testing.assert_close(scaled.log_prob(y * 2 + 5), pred.log_prob(y) - math.log(2.0))
    gaussian = RegressionPrediction(pred.mean, pred.aleatoric_var, pred.epistemic_var)
    torch.testing.assert_close(gaussian.scaled(5.0, 2.0).log_prob(y * 2 + 5),
                               gaussian.log_prob(y) - math.log(2.0))


def test_regression_bad_input():
    m = torch.zeros(3, 1)
    with pytest.raises(ValueError, match="'aleatoric_var'.*>= 0"):
        RegressionPrediction(m, -torch.ones(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="zero variance"):
        RegressionPrediction(m, torch.zeros(3, 1), torch.zeros(3, 1)).log_prob(m)
    with pytest.raises(ValueError, match="shape of the prediction"):
        RegressionPrediction(m, torch.ones(3, 1), torch.zeros(3, 1)).log_prob(torch.zeros(4, 1))


def test_regression_crps_of_mixtures_and_gaussians():
    from evaluation.metrics import crps_gaussian, crps_mixture

    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 6, 2, generator=g, dtype=torch.float64)  # T=4 samples, N=6, D=2
    variances = torch.rand(4, 6, 2, generator=g, dtype=torch.float64) + 0.1
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    pred = RegressionPrediction.from_samples(means, variances)
    crps = pred.crps(y)
    assert crps.dtype == torch.float64 and crps.shape == (6, 2)
    w = np.full((6, 4), 0.25)
    for d in range(2):
        expected = crps_mixture(w, means[..., d].T.numpy(), variances[..., d].T.numpy(),
                                y[:, d].numpy(), reduction="none")
        np.testing.assert_allclose(crps[:, d].numpy(), expected, rtol=1e-14)
    # without components: the Gaussian closed form with the total variance
    gauss = RegressionPrediction(pred.mean, pred.aleatoric_var, pred.epistemic_var)
    assert float(gauss.crps(y).mean()) == pytest.approx(
        crps_gaussian(pred.mean.numpy(), pred.variance.numpy(), y.numpy()), rel=1e-13)
    # CRPS is in the units of y: scaling by s (and shifting) multiplies it by s
    scaled = pred.scaled(torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]))
    torch.testing.assert_close(scaled.crps(y * torch.tensor([3.0, 0.5])
                                           + torch.tensor([1.0, -2.0])),
                               crps * torch.tensor([3.0, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"'y' argument of crps must have the shape"):
        pred.crps(y[:3])
    one = RegressionPrediction.from_samples(means[:, :, :1], variances[:, :, :1])
    assert one.crps(y[:, 0]).shape == (6, 1)  # (N,) targets for D = 1
