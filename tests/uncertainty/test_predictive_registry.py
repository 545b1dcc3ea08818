"""Contract tests over every registered regression method, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dunno.errors import NotFittedError
from uncertainty.predictive import (
    REGRESSORS,
    RegressionPrediction,
    available_regressors,
    make_regressor,
)

TINY = {
    "mc-dropout": {"hidden": 8, "epochs": 2, "num_samples": 5},
    "ensemble": {"hidden": 8, "num_members": 2, "epochs": 2},
    "heteroscedastic": {"hidden": 8, "epochs": 2, "num_samples": 5},
    "mdn": {"hidden": 8, "epochs": 2, "num_components": 2},
    "bnn": {"hidden": 8, "epochs": 2, "num_samples": 5},
}


pytestmark = pytest.mark.one_thread


def test_every_method_has_a_tiny_configuration():
    assert set(TINY) == set(REGRESSORS) == set(available_regressors())


@pytest.mark.parametrize("name", list(REGRESSORS))
@pytest.mark.parametrize("outputs", [1, 2])
def test_contract(name, outputs):
    torch.manual_seed(0)
    x, y = torch.randn(60, 3), torch.randn(60, outputs)
    est = make_regressor(name, **TINY[name])
    with pytest.raises(NotFittedError, match=type(est).__name__):
        est.predict(x)
    assert est.fit(x, y) is est
    pred = est.predict(x[:11])
    assert isinstance(pred, RegressionPrediction)
    assert pred.mean.shape == pred.variance.shape == (11, outputs)
    assert torch.all(pred.aleatoric_var >= 0) and torch.all(pred.epistemic_var >= 0)
    assert torch.all(pred.variance > 0)
    log_prob = pred.log_prob(y[:11])
    assert log_prob.shape == (11,) and torch.isfinite(log_prob).all()
    assert pred.is_mixture
    torch.testing.assert_close(pred.component_weights.sum(1),
                               torch.ones(11, dtype=pred.component_weights.dtype))
    with pytest.raises(ValueError, match="features"):
        est.predict(torch.randn(4, 5))


@pytest.mark.parametrize("name", list(REGRESSORS))
def test_bad_input(name):
    est = make_regressor(name, **TINY[name])
    x, y = torch.randn(20, 2), torch.randn(20, 1)
    y_nan = y.clone()
    y_nan[3] = float("nan")
    with pytest.raises(ValueError, match=r"The 'y' argument of \w+\.fit must be finite \(no NaN "
                       r"or inf\); found nan at index \(3, 0\)"):
        est.fit(x, y_nan)
    with pytest.raises(ValueError, match="same number of rows. Got 20 rows in x and 19 in y"):
        est.fit(x, y[:19])
    with pytest.raises(ValueError, match=r"'epochs' parameter of .* must be an int >= 1\. "
                                         r"Got 0 instead\."):
        make_regressor(name, **{**TINY[name], "epochs": 0}).fit(x, y)


def test_make_regressor_errors():
    with pytest.raises(ValueError, match="Unknown regression method 'gp'"):
        make_regressor("gp")
    with pytest.raises(ValueError,
                       match=r"Unknown parameter\(s\) \['temperature'\] for MDNRegressor"):
        make_regressor("mdn", temperature=2)


@pytest.mark.parametrize("name", available_regressors())
def test_every_input_kind_fits_the_same_regressor(name):
    """numpy, a pair, a TensorDataset and a DataLoader give the same fitted state (same
    seed); sample / log_prob return numpy for numpy."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 3), torch.randn(40, 1)
    def predict(est, data):
        torch.manual_seed(1)  # the same MC draws at prediction
        return est.predict(data).mean

    ref = predict(make_regressor(name, **TINY[name]).fit(x, y), x[:7])
    for data in ((x.numpy(), y.numpy()), TensorDataset(x, y),
                 DataLoader(TensorDataset(x, y), batch_size=7)):
        est = make_regressor(name, **TINY[name]).fit(data)
        torch.testing.assert_close(predict(est, x[:7].numpy()), ref)
    est = make_regressor(name, **TINY[name]).fit(x.double().numpy(), y.numpy()[:, 0])
    torch.manual_seed(2)
    log_prob = est.log_prob(x[:7].numpy(), y[:7].numpy())
    assert isinstance(log_prob, np.ndarray) and log_prob.shape == (7,)
    torch.manual_seed(2)
    np.testing.assert_allclose(log_prob, est.log_prob((x[:7], y[:7])).numpy(), rtol=1e-6)
    arrays = est.predict(x[:7].numpy()).to_numpy()
    assert set(arrays) == {"mean", "aleatoric_var", "epistemic_var", "variance", "std"}
    assert all(isinstance(v, np.ndarray) and v.shape == (7, 1) for v in arrays.values())


@pytest.mark.parametrize("name", available_regressors())
@pytest.mark.parametrize("value", [float("nan"), float("-inf")])
def test_non_finite_inputs_are_refused_by_every_regressor(name, value):
    est = make_regressor(name, **TINY[name])
    cls = type(est).__name__
    x, y = torch.randn(20, 2), torch.randn(20, 1)
    bad = x.clone()
    bad[4, 1] = value
    with pytest.raises(ValueError, match=rf"The 'x' argument of {cls}.fit must be finite \(no "
                       rf"NaN or inf\); found {value} at index \(4, 1\)"):
        est.fit(bad.numpy(), y)
    with pytest.raises(ValueError, match=rf"'x' argument of {cls}.fit must be finite"):
        est.fit(DataLoader(TensorDataset(bad, y), batch_size=8))
    est.fit(x, y)
    with pytest.raises(ValueError, match=rf"The 'x' argument of {cls}.predict must be finite"):
        est.predict(bad.numpy())
