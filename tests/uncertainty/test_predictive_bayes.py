"""The Pyro mean-field BNN: the fitted guide of Bayesian linear regression against the exact
mean-field optimum, the learned noise, the local reparameterisation estimator against the
plain one, the prior scaling, and parameter-store isolation between models."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from dunno.errors import NotFittedError
from uncertainty.predictive import BayesianMLP, BayesianMLPRegressor

pytestmark = pytest.mark.one_thread


def _linear(n=200, seed=0, noise=0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    y = 1.5 * x - 0.5 + noise * torch.randn(n, 1, generator=g)
    return x, y


def _guide_params(est) -> dict[str, torch.Tensor]:
    params = est.param_state_["params"]
    out = {name: value.detach() for name, value in params.items()}
    for name in [n for n in out if n.endswith(".rho")]:
        out[name[:-4] + ".scale"] = torch.nn.functional.softplus(out[name])
    return out


def test_linear_guide_matches_the_exact_mean_field_optimum():
    # For Gaussian linear regression, the best fully factorised Gaussian q(w) given q(sigma)
    # has precisions diag(Lambda) and means mu solving Lambda mu = E[sigma^-2] X^T y, where
    # Lambda = E[sigma^-2] X^T X + prior precision (Bishop, PRML 10.1.2). SVI must land there.
    x, y = _linear(n=400, noise=0.25)
    est = BayesianMLPRegressor(hidden=(), prior_scale=1.0, epochs=300, batch_size=400,
                               lr=0.05, lr_decay=0.02, num_samples=50).fit(x, y)
    p = _guide_params(est)
    loc_s, scale_s = float(p["sigma.loc"][0]), float(p["sigma.scale"][0])
    inv_var = math.exp(-2 * loc_s + 2 * scale_s**2)  # E_q[sigma^-2] of a log-normal q
    design = np.hstack([x.numpy(), np.ones((len(x), 1))]).astype(np.float64)
    prior_precision = np.eye(2)  # weight N(0, 1^2 / fan_in = 1), bias N(0, 1)
    precision = inv_var * design.T @ design + prior_precision
    mean = np.linalg.solve(precision, inv_var * design.T @ y.numpy().astype(np.float64))
    got_mean = np.array([float(p["w0.loc"].flatten()[0]), float(p["b0.loc"].flatten()[0])])
    got_scale = np.array([float(p["w0.scale"].flatten()[0]), float(p["b0.scale"].flatten()[0])])
    np.testing.assert_allclose(got_mean, mean[:, 0], atol=3e-3)
    np.testing.assert_allclose(got_scale, 1.0 / np.sqrt(np.diag(precision)), rtol=0.05)
    # the noise: q(sigma) concentrates on the residual scale of the posterior mean fit
    resid = float(np.sqrt(np.mean((design @ mean - y.numpy()) ** 2)))
    assert abs(math.exp(loc_s) - resid) < 0.03 * resid
    assert abs(resid - 0.25) < 0.03  # and that is the true noise 0.25


def test_learned_noise_of_a_hidden_layer_network_converges_to_the_true_noise():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(300, 1, generator=g) * 6 - 3
    y = torch.sin(x) + 0.1 * torch.randn(300, 1, generator=g)
    est = BayesianMLPRegressor(hidden=20, epochs=400, batch_size=300, lr=3e-2,
                               num_samples=50).fit(x, y)
    pred = est.predict(torch.linspace(-2.5, 2.5, 11)[:, None], seed=0)
    sigma = float(pred.aleatoric_var.mean().sqrt())
    assert 0.08 < sigma < 0.125, sigma
    np.testing.assert_allclose(pred.mean.numpy()[:, 0], np.sin(np.linspace(-2.5, 2.5, 11)),
                               atol=0.1)


def test_local_reparameterisation_is_the_same_elbo_with_independent_rows():
    torch.manual_seed(0)
    x = torch.randn(128, 3)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(128, 1)
    net = BayesianMLP(3, [8], 1, num_train=128, init_scale=0.3)
    elbo = TraceMeanField_ELBO()  # KL in closed form: the estimators differ in the likelihood
    with pyro.get_param_store().scope():
        net.guide(x, y)  # create the guide parameters

        def losses(local):
            return torch.tensor([elbo.loss(net.model, net.guide, x, y, None, local)
                                 for _ in range(200)])

        plain, local = losses(False), losses(True)
        se = math.sqrt(plain.var() / 200 + local.var() / 200)
        assert abs(float(plain.mean() - local.mean())) < 4 * se  # unbiased: same ELBO

        # whole-network draws give one row twice the same output; local draws, independent ones
        two = x[[0, 0]]
        with torch.no_grad():
            whole = torch.stack([pyro.poutine.replay(
                net.model, trace=pyro.poutine.trace(net.guide).get_trace(two))(two)[0, :, 0]
                for _ in range(500)])
            rows = torch.stack([net.model(two, local_reparam=True)[0, :, 0]
                                for _ in range(500)])
    torch.testing.assert_close(whole[:, 0], whole[:, 1])
    assert abs(float(torch.corrcoef(rows.T)[0, 1])) < 0.15
    # and the row's marginal is the same under both: equal mean and spread
    spread = float(whole[:, 0].std())
    assert abs(float(rows.mean() - whole[:, 0].mean())) < 4 * spread / math.sqrt(500)
    np.testing.assert_allclose(float(rows.std()), spread, rtol=0.15)


def test_prior_scales_with_the_fan_in():
    net = BayesianMLP(16, [4], 1, num_train=10, prior_scale=2.0)
    torch.manual_seed(0)
    w0 = net._prior("w0").sample((2000,))
    b0 = net._prior("b0").sample((2000,))
    w1 = net._prior("w1").sample((2000,))
    assert w0.shape == (2000, 1, 16, 4) and w1.shape == (2000, 1, 4, 1)
    np.testing.assert_allclose(float(w0.std()), 2.0 / 4.0, rtol=0.02)
    np.testing.assert_allclose(float(w1.std()), 2.0 / 2.0, rtol=0.05)
    np.testing.assert_allclose(float(b0.std()), 2.0, rtol=0.05)


def test_posterior_predictive_mean_approaches_least_squares():
    x, y = _linear()
    est = BayesianMLPRegressor(hidden=(), epochs=100, batch_size=100, lr=0.05,
                               num_samples=100).fit(x, y)
    design = np.hstack([x.numpy(), np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(design, y.numpy(), rcond=None)
    grid = torch.linspace(-2, 2, 9)[:, None]
    least_squares = grid.numpy() * coef[0] + coef[1]
    pred = est.predict(grid)
    np.testing.assert_allclose(pred.mean.numpy(), least_squares, atol=0.08)
    # the noise is learned (0.3) and the epistemic part is small next to it
    assert 0.25 < float(pred.aleatoric_var.mean().sqrt()) < 0.35
    assert float(pred.epistemic_var.mean()) < 0.1 * float(pred.aleatoric_var.mean())
    assert np.isfinite(est.history_["elbo"]).all()


def test_fit_many_trains_independent_networks():
    x, y = _linear(100)
    one, two = BayesianMLPRegressor(hidden=(), epochs=200, lr=0.1, num_samples=50).fit_many(
        [(x, y), (x, -2 * y)])
    assert one.model_index_ == 0 and two.model_index_ == 1
    design = np.hstack([x.numpy(), np.ones((len(x), 1))])
    slope = np.linalg.lstsq(design, y.numpy(), rcond=None)[0][0, 0]
    got = [float(_guide_params(one)["w0.loc"][0].flatten()[0]),
           float(_guide_params(two)["w0.loc"][1].flatten()[0])]
    np.testing.assert_allclose(got, [slope, -2 * slope], atol=0.05)
    m1, m2 = one.predict(x[:5], seed=0).mean, two.predict(x[:5], seed=0).mean
    np.testing.assert_allclose(m2.numpy(), -2 * m1.numpy(), atol=0.15)


def test_two_models_never_share_parameters_and_the_global_store_is_untouched():
    pyro.param("someone_elses", torch.tensor(3.0))
    x, y = _linear(60)
    a = BayesianMLPRegressor(hidden=4, epochs=3, num_samples=20).fit(x, y)
    torch.manual_seed(0)
    before = a.predict(x[:5]).mean
    b = BayesianMLPRegressor(hidden=4, epochs=3, num_samples=20, seed=1).fit(x, -3 * y)
    torch.manual_seed(0)
    after = a.predict(x[:5]).mean
    torch.testing.assert_close(before, after)  # training b did not touch a's parameters
    assert not torch.allclose(a.predict(x[:5]).mean, b.predict(x[:5]).mean)
    assert list(pyro.get_param_store().keys()) == ["someone_elses"]
    names_a = set(a.param_state_["params"])
    assert names_a and names_a == set(b.param_state_["params"])  # same names, own values
    assert a.param_state_["params"] is not b.param_state_["params"]


def test_not_fitted_and_bad_parameters():
    with pytest.raises(NotFittedError, match="BayesianMLPRegressor"):
        BayesianMLPRegressor().predict(torch.randn(3, 1))
    x, y = torch.randn(3, 1), torch.randn(3, 1)
    with pytest.raises(ValueError, match="'elbo' parameter"):
        BayesianMLPRegressor(elbo="renyi").fit(x, y)
    with pytest.raises(ValueError, match="'hidden' parameter"):
        BayesianMLPRegressor(hidden=0).fit(x, y)
    with pytest.raises(ValueError, match="'lr_decay' parameter.*\\(0, 1\\]"):
        BayesianMLPRegressor(lr_decay=1.5).fit(x, y)
    with pytest.raises(ValueError, match="'local_reparam' parameter.*a bool"):
        BayesianMLPRegressor(local_reparam=1).fit(x, y)
    with pytest.raises(ValueError, match="'noise_init' parameter"):
        BayesianMLPRegressor(noise_init=0.0).fit(x, y)
