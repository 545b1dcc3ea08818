"""``fit(x, ...)`` of every density model on the user's own arrays (generative.fitting):
known answers (a NADE over 12 binary values sums to 1 over all 4096 vectors), the history
and the time budget, exact seeded repeats, flat vectors, and the errors a user meets."""

from __future__ import annotations

import copy
import itertools
import math
import re

import numpy as np
import pyro
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset

from dunno.training import History
from generative import (
    DENSITY_MODELS,
    NADE,
    VAE,
    AdversarialAutoencoder,
    DiagonalBiLSTM,
    PixelCNN,
    RowLSTM,
)
from generative.latent import GaussianMixturePrior, GaussianPrior, UniformPrior
from generative.training import create_density_model

pytestmark = pytest.mark.one_thread

#: every binary vector of length 12, (4096, 12)
ALL_12 = torch.tensor(list(itertools.product([0.0, 1.0], repeat=12)))
TINY = {
    "nade": {"hidden": 8},
    "pixelcnn": {"hidden": 4, "layers": 1},
    "row-lstm": {"hidden": 4, "layers": 1},
    "diagonal-bilstm": {"hidden": 4, "layers": 1},
    "vae": {"latent_dim": 2, "hidden": (8,)},
    "aae": {"latent_dim": 2, "hidden": (8,), "disc_hidden": (8,)},
}


def _binary(n: int = 64, d: int = 12, seed: int = 0) -> np.ndarray:
    """``n`` binary vectors ``(n, d)`` float32 with a structure to learn: the first half of
    the values are mostly 1, the second half mostly 0."""
    rng = np.random.default_rng(seed)
    p = np.where(np.arange(d) < d // 2, 0.9, 0.1)
    return (rng.random((n, d)) < p).astype(np.float32)


# ------------------------------------------------------------------ known answers
def test_nade_fit_on_binary_vectors_raises_the_likelihood_and_sums_to_one():
    x = _binary(200)
    torch.manual_seed(0)
    nade = NADE(12, hidden=16)
    assert nade.image_shape == (1, 1, 12)
    before = nade.log_prob(torch.from_numpy(x)).mean().item()
    assert nade.fit(x, epochs=15, batch_size=50, lr=1e-2) is nade
    after = nade.log_prob(torch.from_numpy(x)).mean().item()
    assert after > before + 1.0  # nats per vector
    loss = nade.history_["loss"]
    assert loss[-1] < loss[0]
    assert not nade.training  # fit leaves the model in eval mode
    # an exact likelihood: the 4096 probabilities of all binary vectors sum to 1
    with torch.no_grad():
        total = torch.logsumexp(nade.log_prob(ALL_12).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_nade_on_3x4_images_takes_images_and_flat_vectors_alike():
    x = _binary(100)
    torch.manual_seed(0)
    nade = NADE((1, 3, 4), hidden=8)
    images = torch.from_numpy(x).view(-1, 1, 3, 4)
    twin = copy.deepcopy(nade)
    nade.fit(x, epochs=2, seed=1)  # flat (N, 12), read row-major
    twin.fit(images.numpy(), epochs=2, seed=1)  # (N, 1, 3, 4)
    torch.testing.assert_close(nade.log_prob(images), twin.log_prob(images), rtol=0, atol=0)
    torch.testing.assert_close(nade.log_prob(torch.from_numpy(x)), nade.log_prob(images))
    with torch.no_grad():
        total = torch.logsumexp(nade.log_prob(ALL_12).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_fit_reads_every_input_kind_the_same():
    x = _binary(24)
    torch.manual_seed(0)
    nade = NADE(12, hidden=4)
    fitted = {}
    kinds = {
        "numpy": x,
        "tensor": torch.from_numpy(x),
        "pair": (x, np.zeros(24, np.int64)),
        "TensorDataset": TensorDataset(torch.from_numpy(x)),
        "DataLoader": DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=5),
    }
    for kind, data in kinds.items():
        fitted[kind] = copy.deepcopy(nade).fit(data, epochs=2, batch_size=6, seed=0)
    reference = fitted["numpy"].history_["loss"]
    for kind, model in fitted.items():
        assert model.history_["loss"] == reference, kind


def test_semi_supervised_aae_reads_its_labels_from_a_pair():
    torch.manual_seed(0)
    aae = AdversarialAutoencoder((1, 3, 4), num_classes=2, prior="mixture", **TINY["aae"])
    x = _binary(16)
    y = np.array([0, 1, -1, -1] * 4)
    aae.fit((x, y), epochs=1, batch_size=8)
    assert set(aae.history_.epochs[0]) >= {"recon_loss", "d_loss", "g_loss"}
    with pytest.raises(ValueError, match=r"'labels' argument of AdversarialAutoencoder.fit "
                                         r"must hold ints in -1..1.*\[0, 5\]"):
        aae.fit((x, np.array([0] * 15 + [5])), epochs=1, batch_size=8)
    aae.fit(x, epochs=1, batch_size=8)  # no labels: every example unlabelled


# ------------------------------------------------------------------ history, budget, seeds
def test_fit_returns_self_with_one_history_record_per_epoch():
    nade = NADE(12, hidden=4)
    out = nade.fit(_binary(30), epochs=3, batch_size=10)
    assert out is nade and isinstance(nade.history_, History)
    assert [r["epoch"] for r in nade.history_.epochs] == [1.0, 2.0, 3.0]
    assert nade.history_.steps == 9 and nade.history_.examples == 90
    assert not nade.history_.stopped_for_budget
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in nade.history_.epochs)


def test_max_minutes_stops_training():
    nade = NADE(12, hidden=4)
    # a budget of ~1 ns is spent by the first step: every epoch takes at least one step,
    # then no new step starts and no further epoch runs
    nade.fit(_binary(40), epochs=50, batch_size=10, max_minutes=1e-11)
    h = nade.history_
    assert h.stopped_for_budget and len(h.epochs) == 1 and h.steps == 1 and h.examples == 10


@pytest.mark.parametrize("name", ["nade-order-agnostic", "vae", "aae"])
def test_seeded_fits_repeat_exactly(name):
    torch.manual_seed(0)
    if name == "nade-order-agnostic":  # random orderings in the training loss
        model = NADE(12, hidden=4, order_agnostic=True)
    else:  # reparameterisation noise / prior draws
        model = create_density_model(name, (1, 3, 4), **TINY[name])
    first, second, other = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    x = _binary(40)
    first.fit(x, epochs=2, batch_size=8, seed=5)
    second.fit(x, epochs=2, batch_size=8, seed=5)
    other.fit(x, epochs=2, batch_size=8, seed=6)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert first.history_["loss"] == second.history_["loss"]
    assert first.history_["loss"] != other.history_["loss"]


# ------------------------------------------------------------------ every model
@pytest.mark.parametrize("name", list(DENSITY_MODELS))
def test_every_density_model_fits_tiny_data_and_scores_it(name):
    pyro.clear_param_store()
    torch.manual_seed(0)
    model = create_density_model(name, (1, 3, 4), **TINY[name])
    x = _binary(32)
    assert model.fit(x, epochs=2, batch_size=16) is model
    assert len(model.history_.epochs) == 2
    flat = torch.from_numpy(x)
    if isinstance(model, VAE | AdversarialAutoencoder):  # importance-sampled estimates
        lp = model.log_prob(flat, 50, generator=torch.Generator().manual_seed(0))
    else:  # exact
        lp = model.log_prob(flat)
    assert lp.shape == (32,) and torch.isfinite(lp).all() and (lp < 0).all()
    assert len(pyro.get_param_store()) == 0  # no model goes through Pyro's global store


@pytest.mark.parametrize("cls", [PixelCNN, RowLSTM, DiagonalBiLSTM])
def test_8bit_models_fit_flat_uint8_vectors(cls):
    torch.manual_seed(0)
    model = cls((1, 2, 3), pixels="8bit", hidden=4, layers=1)
    x = np.random.default_rng(0).integers(0, 256, (16, 6), dtype=np.uint8)  # (N, H * W)
    model.fit(x, epochs=1, batch_size=8)
    lp = model.log_prob(torch.from_numpy(x))
    assert lp.shape == (16,) and torch.isfinite(lp).all()
    torch.testing.assert_close(lp, model.log_prob(torch.from_numpy(x).view(16, 1, 2, 3)))


def test_aae_log_prob_is_an_estimate_of_a_normalised_likelihood():
    torch.manual_seed(0)
    aae = AdversarialAutoencoder((1, 3, 4), **TINY["aae"]).fit(_binary(64), epochs=2,
                                                                batch_size=16)
    g = torch.Generator().manual_seed(0)
    # unbiased for p(x): the estimates over all 4096 binary images sum to about 1
    total = torch.logsumexp(aae.log_prob(ALL_12, 400, generator=g).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=0.03)
    # the same generator state gives the same answer for any chunking
    a = aae.log_prob(ALL_12[:5], 30, generator=torch.Generator().manual_seed(1))
    b = aae.log_prob(ALL_12[:5], 30, chunk_size=7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


def test_aae_log_prob_refuses_what_has_no_likelihood():
    grey = AdversarialAutoencoder((1, 2, 2), latent_dim=2, pixels="grey")
    with pytest.raises(ValueError, match="needs pixels='binary'.*pixels='grey'"):
        grey.log_prob(torch.rand(2, 1, 2, 2))
    custom = AdversarialAutoencoder((1, 2, 2), latent_dim=2,
                                    prior=lambda n, g: torch.randn(n, 2, generator=g))
    with pytest.raises(ValueError, match="needs a prior with a log_prob"):
        custom.log_prob(torch.ones(2, 1, 2, 2))
    with pytest.raises(ValueError, match=re.escape(
            "The 'proposal_scale' parameter of AdversarialAutoencoder.log_prob")):
        AdversarialAutoencoder((1, 2, 2), latent_dim=2).log_prob(torch.ones(1, 4), 5,
                                                                  proposal_scale=0)


def test_prior_log_densities():
    z = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    expected = stats.norm(0, 1.5).logpdf(z.numpy()).sum(1)
    np.testing.assert_allclose(GaussianPrior(2, 1.5).log_prob(z).numpy(), expected, rtol=1e-6)
    one = GaussianMixturePrior(2, components=1, radius=3.0, scale=0.5)  # mean (3, 0)
    expected = stats.multivariate_normal([3.0, 0.0], 0.25).logpdf(z.numpy())
    np.testing.assert_allclose(one.log_prob(z).numpy(), expected, rtol=1e-5)
    box = UniformPrior(2, -1.0, 1.0).log_prob(z)
    assert box[0] == -math.inf and box[1] == -math.inf
    assert UniformPrior(2, -1.0, 3.0).log_prob(z)[1] == pytest.approx(-2 * math.log(4.0))


# ------------------------------------------------------------------ bad input
def test_bad_arrays_are_refused_naming_the_argument_and_the_value():
    nade = NADE(12, hidden=4)
    with pytest.raises(ValueError, match=r"The 'x' argument of NADE.fit does not fit the "
                                         r"model: .*\(N, 1, 1, 12\).*or flat vectors \(N, 12\)"
                                         r"; got shape \(5, 13\)"):
        nade.fit(np.zeros((5, 13), np.float32))
    with pytest.raises(ValueError, match=r"The 'x' argument of NADE.fit must hold 0/1 values.*"
                                         r"e\.g\. 0\.5"):
        nade.fit(np.full((5, 12), 0.5))
    nan = _binary(4)
    nan[2, 3] = np.nan
    with pytest.raises(ValueError, match=re.escape(
            "The 'x' argument of NADE.fit must be finite (no NaN or inf); found nan at index "
            "(2, 3).")):
        nade.fit(nan)
    with pytest.raises(ValueError, match=re.escape(
            "The 'x' argument of NADE.fit is empty (shape (0, 12)): there are no examples.")):
        nade.fit(np.zeros((0, 12), np.float32))
    with pytest.raises(TypeError, match="The 'x' argument of NADE.fit must be a numpy array.*"
                                        "Got str instead"):
        nade.fit("x.npy")
    with pytest.raises(ValueError, match="The 'x' argument of NADE.fit must hold real numbers"
                                         r".*dtype object"):
        nade.fit(np.array([object()] * 12, dtype=object).reshape(1, 12))
    with pytest.raises(ValueError, match=re.escape(
            "The 'x' argument of NADE.log_prob must be finite (no NaN or inf); found nan at "
            "index (2, 3).")):
        nade.log_prob(torch.from_numpy(nan))
    # a flat vector has no one layout for RGB: images only
    rgb = PixelCNN((3, 2, 2), hidden=3, layers=0)
    with pytest.raises(ValueError, match=r"The 'x' argument of PixelCNN.fit does not fit .*"
                                         r"\(N, 3, 2, 2\).*; got shape \(4, 12\)"):
        rgb.fit(np.zeros((4, 12), np.float32))
    # 8-bit models: whole numbers 0..255
    eight = PixelCNN((1, 2, 2), pixels="8bit", hidden=2, layers=0)
    with pytest.raises(ValueError, match=r"The 'x' argument of PixelCNN.fit must hold 8-bit "
                                         r"pixels, values in 0..255. Got values in \[0, 300\]"):
        eight.fit(np.array([[0, 10, 20, 300]], np.float32))
    with pytest.raises(ValueError, match=r"The 'x' argument of VAE.fit must hold binary values"
                                         r".*Got a value 0.25"):
        VAE((1, 2, 2), latent_dim=2, hidden=(4,)).fit(np.full((2, 4), 0.25, np.float32))
    with pytest.raises(ValueError, match=r"The 'x' argument of AdversarialAutoencoder.fit "
                                         r"must be finite \(no NaN or inf\); found inf"):
        AdversarialAutoencoder((1, 2, 2), latent_dim=2).fit(np.array([[0, 1, np.inf, 0]]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "The 'epochs' parameter of NADE.fit must be an int >= 1. Got 0 instead."),
    ({"epochs": 1.5}, "The 'epochs' parameter of NADE.fit must be an int >= 1. Got 1.5"),
    ({"max_minutes": 0}, "The 'max_minutes' parameter of NADE.fit must be"),
    ({"max_minutes": float("nan")}, "The 'max_minutes' parameter of NADE.fit must be"),
    ({"batch_size": 0}, "The 'batch_size' parameter of NADE.fit must be an int >= 1. Got 0"),
    ({"lr": -1e-3}, "The 'lr' parameter of NADE.fit must be"),
    ({"seed": -1}, "The 'seed' parameter of NADE.fit must be an int >= 0. Got -1 instead."),
    ({"progress": "yes"}, "The 'progress' parameter of NADE.fit must be"),
])
def test_bad_fit_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NADE(12, hidden=4).fit(_binary(4), **kwargs)
