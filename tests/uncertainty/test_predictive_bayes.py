"""The Pyro mean-field BNN: its posterior predictive on a linear problem, and parameter-store
isolation between models."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch

from dunno.errors import NotFittedError
from uncertainty.predictive import BayesianMLPRegressor

pytestmark = pytest.mark.one_thread


def _linear(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    y = 1.5 * x - 0.5 + 0.3 * torch.randn(n, 1, generator=g)
    return x, y


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
    assert 0.2 < float(pred.aleatoric_var.mean().sqrt()) < 0.4
    assert float(pred.epistemic_var.mean()) < 0.1 * float(pred.aleatoric_var.mean())
    assert np.isfinite(est.history_["elbo"]).all()


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
    with pytest.raises(ValueError, match="'elbo' parameter"):
        BayesianMLPRegressor(elbo="renyi").fit(torch.randn(3, 1), torch.randn(3, 1))
    with pytest.raises(ValueError, match="'hidden' parameter"):
        BayesianMLPRegressor(hidden=0).fit(torch.randn(3, 1), torch.randn(3, 1))
