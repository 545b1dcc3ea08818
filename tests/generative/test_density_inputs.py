"""Every density model's log_prob takes the user's arrays (numpy in, numpy out; NaN refused),
and every generative model's sample(n) is reproducible with seed= / generator=."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from generative.adversarial import DCGAN, GAN, InfoGAN
from generative.autoregressive import NADE, DiagonalBiLSTM, PixelCNN, RowLSTM
from generative.latent import VAE, AdversarialAutoencoder

pytestmark = pytest.mark.one_thread

SHAPE = (1, 4, 4)
DENSITY = {
    "NADE": lambda: NADE(SHAPE, hidden=8),
    "PixelCNN": lambda: PixelCNN(SHAPE, "binary", hidden=4, layers=2, output_hidden=8),
    "RowLSTM": lambda: RowLSTM(SHAPE, "binary", hidden=4, layers=1, output_hidden=8),
    "DiagonalBiLSTM": lambda: DiagonalBiLSTM(SHAPE, "binary", hidden=4, layers=1,
                                             output_hidden=8),
    "VAE": lambda: VAE(SHAPE, latent_dim=2, hidden=(8,)),
}
SAMPLERS = {
    **DENSITY,
    "AdversarialAutoencoder": lambda: AdversarialAutoencoder(SHAPE, latent_dim=2, hidden=(8,),
                                                             disc_hidden=(4,)),
    "GAN": lambda: GAN((2,), latent_dim=4, hidden=(8,)),
    "DCGAN": lambda: DCGAN((1, 8, 8), latent_dim=4, width=4),
    "InfoGAN": lambda: InfoGAN((1, 8, 8), noise_dim=4, categorical=3, continuous=2, width=4,
                               hidden=8),
}


def _log_prob(model, x, **kw):
    if isinstance(model, VAE):
        kw.setdefault("num_samples", 16)
        kw.setdefault("seed", 0)
    return model.log_prob(x, **kw)


def _images(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *SHAPE, generator=g) < 0.5).float()


@pytest.mark.parametrize("name", list(DENSITY))
def test_log_prob_takes_every_input_kind(name):
    torch.manual_seed(0)
    model = DENSITY[name]().eval()
    x = _images()
    ref = _log_prob(model, x).detach()
    out = _log_prob(model, x.numpy())
    assert isinstance(out, np.ndarray) and out.shape == (10,)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)
    for data in ((x, torch.zeros(10)), TensorDataset(x), DataLoader(TensorDataset(x),
                                                                    batch_size=3)):
        got = _log_prob(model, data)
        assert isinstance(got, torch.Tensor)
        if name != "VAE":  # the importance samples differ per batch split
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(DENSITY))
def test_log_prob_of_a_tensor_keeps_its_gradient(name):
    model = DENSITY[name]()
    if name == "VAE":
        loss = model.loss(_images())
    else:
        loss = -model.log_prob(_images()).mean()
    loss.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


@pytest.mark.parametrize("name", list(DENSITY))
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_inputs_are_refused_by_every_density_model(name, value):
    model = DENSITY[name]().eval()
    bad = _images().numpy()
    bad[2, 0, 1, 3] = value
    owner = f"{type(model).__name__}.log_prob"
    for data in (bad, torch.from_numpy(bad), DataLoader(TensorDataset(torch.from_numpy(bad)),
                                                        batch_size=4)):
        with pytest.raises(ValueError, match=rf"The 'x' argument of {owner} must be finite \(no "
                           rf"NaN or inf\); found {value} at index \(2, 0, 1, 3\)"):
            _log_prob(model, data)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sample_is_reproducible_with_seed_or_generator(name):
    torch.manual_seed(0)
    model = SAMPLERS[name]().eval()
    a, b = model.sample(6, seed=3), model.sample(6, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, model.sample(6, seed=4))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    first = model.sample(6, generator=g1)
    assert torch.equal(first, model.sample(6, generator=g2))
    assert not torch.equal(model.sample(6, generator=g1), first)  # the generator moved on
    with pytest.raises(ValueError, match=rf"Pass either 'seed' or 'generator' to "
                       rf"{type(model).__name__}.sample, not both"):
        model.sample(2, seed=1, generator=g1)
    with pytest.raises(ValueError, match=rf"The 'seed' parameter of {type(model).__name__}"
                       r".sample must be an int >= 0. Got -1 instead"):
        model.sample(2, seed=-1)
    with pytest.raises(ValueError, match="'generator' argument of .* must be a torch.Generator. "
                       "Got int instead"):
        model.sample(2, generator=5)
