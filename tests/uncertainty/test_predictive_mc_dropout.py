"""MC-Dropout: the wrapper's sampling modes, limiting cases and errors; Gal's UCI regressor."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dunno.errors import NotFittedError
from dunno.nets import create
from uncertainty.predictive import (
    ClassificationPrediction,
    MCDropout,
    MCDropoutRegressor,
    RegressionPrediction,
    dropout_layers,
    mc_dropout_mode,
)

pytestmark = pytest.mark.one_thread


def _head_dropout_net(p: float = 0.5) -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Dropout(p), nn.Linear(16, 3))


def test_p_zero_is_refused_and_tiny_p_gives_zero_mutual_information():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match=r"p > 0.*p = 0.*epistemic uncertainty 0"):
        MCDropout(_head_dropout_net(0.0), 7).predict(x)
    model = _head_dropout_net(1e-12)  # the limit p -> 0: no unit is ever dropped
    samples = MCDropout(model, num_samples=7).sample(x)
    assert samples.shape == (7, 10, 3)
    assert torch.equal(samples, samples[:1].expand_as(samples))
    pred = MCDropout(model, num_samples=7).predict(x)
    assert isinstance(pred, ClassificationPrediction)
    # zero up to float64 rounding of the mean of T identical distributions
    torch.testing.assert_close(pred.mutual_information, torch.zeros(10, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    assert torch.all(pred.variation_ratio == 0)
    torch.testing.assert_close(pred.expected_entropy, pred.entropy)


def test_mutual_information_between_zero_and_log_c():
    model = _head_dropout_net(0.7)
    pred = MCDropout(model, num_samples=30).predict(torch.randn(50, 4) * 3)
    mi = pred.mutual_information
    assert torch.all(mi >= 0) and torch.all(mi <= math.log(3) + 1e-12)
    assert float(mi.max()) > 0  # dropout at 0.7 disagrees somewhere
    torch.testing.assert_close(pred.entropy, pred.expected_entropy + mi)


def test_batch_norm_statistics_do_not_change_while_sampling():
    model = create("vgg", 1, 10, dropout=0.5, input_size=8)
    model.train()
    for m in model.modules():  # give the running statistics non-trivial values
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 1, 8, 8)
    samples = MCDropout(model, num_samples=5).sample(x)
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert model.training  # modes restored
    # dropout is stochastic, batch norm is not: a second run with the same seed repeats
    torch.manual_seed(3)
    a = MCDropout(model, num_samples=3).sample(x)
    torch.manual_seed(3)
    b = MCDropout(model, num_samples=3).sample(x)
    assert torch.equal(a, b) and not torch.equal(samples[0], samples[1])


def test_mc_dropout_mode_only_dropout_trains():
    model = create("vgg", 1, 10, dropout=0.5, input_size=8).eval()
    with mc_dropout_mode(model):
        for _, layer in dropout_layers(model):
            assert layer.training
        assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("kind", ["sequential", "backbone"])
def test_fast_mode_equals_full_mode_with_the_same_seed(kind):
    if kind == "sequential":
        model, x = _head_dropout_net(0.5), torch.randn(9, 4)
    else:  # a dunno.nets backbone whose only dropout is model.dropout (before the head)
        model, x = create("lenet5", 1, 10, dropout=0.5, input_size=8), torch.randn(9, 1, 8, 8)
    torch.manual_seed(11)
    full = MCDropout(model, num_samples=6, mode="full").sample(x)
    torch.manual_seed(11)
    fast = MCDropout(model, num_samples=6, mode="fast").sample(x)
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-6)
    assert not torch.equal(full[0], full[1])


def test_fast_mode_with_chunks_and_resnet_batch_norm():
    model = create("resnet", 1, 4, dropout=0.3, input_size=8)
    x = torch.randn(5, 1, 8, 8)
    torch.manual_seed(0)
    full = MCDropout(model, num_samples=4, batch_size=5).sample(x)
    torch.manual_seed(0)
    fast = MCDropout(model, num_samples=4, mode="fast", batch_size=5).sample(x)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


def test_fast_mode_refuses_dropout_inside_the_trunk():
    model = create("vgg", 1, 10, dropout=0.5, input_size=8)
    with pytest.raises(ValueError, match="inside its trunk.*classifier.2"):
        MCDropout(model, 3, mode="fast").sample(torch.randn(2, 1, 8, 8))


def test_model_without_dropout_is_rejected_by_name():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="Sequential has none"):
        MCDropout(model).sample(torch.randn(2, 3))

    class TinyNet(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="TinyNet"):
        MCDropout(TinyNet()).predict(torch.randn(2, 3))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_num_samples_must_be_positive_int(bad):
    with pytest.raises(ValueError, match=r"'num_samples' parameter of MCDropout must be an int "
                                         r"in \[1, 100000\]\. Got .* instead\."):
        MCDropout(_head_dropout_net(), num_samples=bad).sample(torch.randn(2, 4))


def test_bad_mode_and_task():
    with pytest.raises(ValueError, match="'mode' parameter"):
        MCDropout(_head_dropout_net(), mode="quick").sample(torch.randn(2, 4))
    with pytest.raises(ValueError, match="'task' parameter"):
        MCDropout(_head_dropout_net(), task="ranking").sample(torch.randn(2, 4))


def test_regression_prediction_with_noise_variance():
    model = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
    x = torch.linspace(-1, 1, 12)[:, None]
    torch.manual_seed(0)
    samples = MCDropout(model, 40, task="regression").sample(x)  # (T, N, 1)
    torch.manual_seed(0)
    pred = MCDropout(model, 40, task="regression", noise_variance=0.25).predict(x)
    assert isinstance(pred, RegressionPrediction) and pred.is_mixture
    torch.testing.assert_close(pred.mean, samples.double().mean(0))
    torch.testing.assert_close(pred.epistemic_var, samples.double().var(0, correction=0))
    torch.testing.assert_close(pred.aleatoric_var, torch.full_like(pred.mean, 0.25))
    # Gal's test log-likelihood: logsumexp_t N(y; y_t, 1/tau) - log T
    y = torch.randn(12, 1)
    expected = torch.logsumexp(
        torch.distributions.Normal(samples.double(), 0.5).log_prob(y.double()), dim=0
    )[:, 0] - math.log(40)
    torch.testing.assert_close(pred.log_prob(y), expected)


def test_regressor_learns_and_selects_from_a_grid():
    torch.manual_seed(0)
    x = torch.rand(200, 2) * 4 - 2
    y = torch.sin(x[:, :1]) + 0.1 * torch.randn(200, 1)
    est = MCDropoutRegressor(32, dropout=[0.01, 0.1], tau=[1.0, 50.0], epochs=60, batch_size=32,
                             lr=1e-2, num_samples=50, val_samples=10)
    with pytest.raises(NotFittedError, match="MCDropoutRegressor"):
        est.predict(x)
    assert est.fit(x, y) is est
    assert set(est.grid_scores_) == {(p, t) for p in (0.01, 0.1) for t in (1.0, 50.0)}
    assert est.tau_ == 50.0  # noise std 0.1 -> precision 100 is nearer 50 than 1
    pred = est.predict(x)
    assert pred.mean.shape == (200, 1) and pred.component_means.shape == (200, 50, 1)
    assert float(((pred.mean - y) ** 2).mean()) < 0.1


def test_fit_many_matches_fit_for_one_training_set():
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    est = MCDropoutRegressor(8, dropout=0.1, tau=2.0, epochs=3, batch_size=16, num_samples=5)
    one = est.fit(x, y).model_
    (many,) = MCDropoutRegressor(**est.get_params()).fit_many([(x, y)])
    for a, b in zip(one.state_dict().values(), many.model_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="one shape"):
        est.fit_many([(x, y), (x[:10], y[:10])])
    with pytest.raises(ValueError, match="override 'dropout' and 'tau'"):
        est.fit_many([(x, y)], [{"epochs": 3}])


# ------------------------------------------------------------------ arrays and seeds
@pytest.mark.parametrize("mode", ["full", "fast"])
def test_seed_and_generator_make_the_passes_reproducible(mode):
    torch.manual_seed(0)
    model = _head_dropout_net(0.5)
    x = torch.randn(10, 4)
    mc = MCDropout(model, num_samples=6, mode=mode)
    a = mc.sample(x, seed=1)
    assert torch.equal(a, mc.sample(x, seed=1))
    assert not torch.equal(a, mc.sample(x, seed=2))
    state = torch.random.get_rng_state()
    mc.sample(x, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # the global generator untouched
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    first = mc.sample(x, generator=g1)
    assert torch.equal(first, mc.sample(x, generator=g2))
    assert not torch.equal(first, mc.sample(x, generator=g1))
    p1, p2 = mc.predict(x, seed=3), mc.predict(x, seed=3)
    assert torch.equal(p1.samples, p2.samples)
    with pytest.raises(ValueError, match="Pass either 'seed' or 'generator' to MCDropout.sample, "
                       "not both"):
        mc.sample(x, seed=1, generator=g1)
    with pytest.raises(ValueError, match="'seed' parameter of MCDropout.predict must be an int "
                       ">= 0. Got -3 instead"):
        mc.predict(x, seed=-3)


def test_numpy_in_numpy_out_and_non_finite_refused():
    import numpy as np
    from torch.utils.data import DataLoader, TensorDataset

    model = _head_dropout_net(0.5)
    x = torch.randn(10, 4)
    mc = MCDropout(model, num_samples=4)
    out = mc.sample(x.double().numpy(), seed=0)  # float64 numpy reaches the float32 model
    assert isinstance(out, np.ndarray) and out.shape == (4, 10, 3)
    np.testing.assert_allclose(out, mc.sample(x, seed=0).numpy(), rtol=1e-6)
    for data in ((x, torch.zeros(10)), TensorDataset(x), DataLoader(TensorDataset(x),
                                                                    batch_size=3)):
        torch.testing.assert_close(mc.sample(data, seed=0), mc.sample(x, seed=0))
    pred = mc.predict(x.numpy(), seed=0)
    torch.testing.assert_close(pred.samples, torch.softmax(mc.sample(x, seed=0).double(), -1))
    arrays = pred.to_numpy()
    assert arrays["probs"].shape == (10, 3) and arrays["samples"].shape == (4, 10, 3)
    np.testing.assert_array_equal(arrays["predictions"], arrays["probs"].argmax(1))
    assert arrays["mutual_information"].shape == (10,)
    bad = x.numpy().copy()
    bad[6, 2] = np.inf
    with pytest.raises(ValueError, match=r"The 'x' argument of MCDropout.sample must be finite "
                       r"\(no NaN or inf\); found inf at index \(6, 2\)"):
        mc.sample(bad)
    with pytest.raises(ValueError, match="'x' argument of MCDropout.predict must be finite"):
        mc.predict(bad)
    with pytest.raises(ValueError, match="The 'x' argument of MCDropout.sample is empty"):
        mc.sample(np.zeros((0, 4), dtype=np.float32))


def test_ensembles_are_reproducible_from_their_seed():
    from uncertainty.predictive import DeepEnsembleRegressor

    torch.manual_seed(0)
    x, y = torch.randn(30, 2), torch.randn(30, 1)

    def fitted(seed):
        est = DeepEnsembleRegressor(hidden=4, num_members=2, epochs=2, seed=seed)
        return est.fit(x.numpy(), y.numpy()).predict_members(x.numpy())

    a, b = fitted(0), fitted(0)
    assert isinstance(a, __import__("numpy").ndarray)
    assert (a == b).all() and not (a == fitted(1)).all()
