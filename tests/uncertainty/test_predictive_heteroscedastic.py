"""Heteroscedastic models: the loss conventions, beta-NLL, the sampled softmax, and the
aleatoric / epistemic split."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dunno.errors import NotFittedError
from uncertainty.predictive import (
    HeteroscedasticClassifier,
    HeteroscedasticRegressor,
    gaussian_nll_loss,
    sampled_softmax_loss,
)

pytestmark = pytest.mark.one_thread


def test_gaussian_nll_equals_torch_gaussian_nll_loss_with_full_constant():
    torch.manual_seed(0)
    mean, log_var, y = torch.randn(30, 2), torch.randn(30, 2), torch.randn(30, 2)
    ours = gaussian_nll_loss(mean, log_var, y)
    reference = torch.nn.GaussianNLLLoss(full=True, eps=1e-12)(mean, y, log_var.exp())
    torch.testing.assert_close(ours, reference)
    # without the constant 0.5 log(2 pi) it is GaussianNLLLoss's default (full=False)
    torch.testing.assert_close(ours - 0.5 * math.log(2 * math.pi),
                               torch.nn.GaussianNLLLoss(eps=1e-12)(mean, y, log_var.exp()))
    assert gaussian_nll_loss(mean, log_var, y, reduction="none").shape == (30, 2)


def test_beta_nll_scales_gradients_by_the_detached_variance():
    mean = torch.zeros(4, 1, requires_grad=True)
    log_var = torch.log(torch.tensor([[0.5], [1.0], [2.0], [4.0]]))
    y = torch.ones(4, 1)
    gaussian_nll_loss(mean, log_var, y, beta=1.0, reduction="sum").backward()
    # with beta = 1 the mean's gradient is that of 0.5 (y - mu)^2: -(y - mu) = -1
    torch.testing.assert_close(mean.grad, -torch.ones(4, 1))
    value = gaussian_nll_loss(mean.detach(), log_var, y, beta=0.5, reduction="none")
    plain = gaussian_nll_loss(mean.detach(), log_var, y, reduction="none")
    torch.testing.assert_close(value, plain * log_var.exp().sqrt())


def test_sampled_softmax_with_zero_variance_is_cross_entropy():
    logits, labels = torch.randn(20, 5), torch.randint(0, 5, (20,))
    loss = sampled_softmax_loss(logits, torch.full((20, 5), -60.0), labels, num_samples=3)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)
    # logit noise makes a confident correct prediction less certain: the loss rises
    confident = torch.zeros(20, 5).scatter(1, labels[:, None], 8.0)
    low = sampled_softmax_loss(confident, torch.full((20, 1), -10.0), labels, num_samples=50)
    high = sampled_softmax_loss(confident, torch.full((20, 1), 4.0), labels, num_samples=50)
    assert float(high) > float(low)


def test_regressor_learns_input_dependent_noise():
    torch.manual_seed(0)
    x = torch.rand(400, 1) * 2 - 1
    noise = 0.05 + 0.5 * (x > 0).float()  # small noise left, large noise right
    y = 2 * x + noise * torch.randn(400, 1)
    est = HeteroscedasticRegressor(32, dropout=0.05, epochs=80, batch_size=50, lr=1e-2,
                                   num_samples=30)
    with pytest.raises(NotFittedError):
        est.predict(x)
    pred = est.fit(x, y).predict(torch.tensor([[-0.5], [0.5]]))
    left, right = pred.aleatoric_var[:, 0].tolist()
    assert right > 10 * left
    assert float(pred.epistemic_var.min()) > 0
    assert pred.component_means.shape == (2, 30, 1)


def test_regressor_without_dropout_is_one_gaussian():
    x, y = torch.randn(50, 2), torch.randn(50, 1)
    pred = HeteroscedasticRegressor(8, dropout=0.0, epochs=2).fit(x, y).predict(x)
    assert pred.component_means.shape == (50, 1, 1)
    assert torch.all(pred.epistemic_var == 0)


def test_classifier_predicts_with_noise_and_dropout():
    torch.manual_seed(0)
    x = torch.randn(150, 2)
    labels = (x[:, 0] > 0).long()
    est = HeteroscedasticClassifier(16, dropout=0.2, noise_samples=5, num_samples=7, epochs=15,
                                    lr=1e-2).fit(x, labels)
    pred = est.predict(x)
    assert pred.samples.shape == (7, 150, 2)
    assert float((pred.predictions == labels).double().mean()) > 0.85
    assert torch.all(pred.mutual_information >= 0)
    assert torch.all(pred.mutual_information <= math.log(2) + 1e-12)
