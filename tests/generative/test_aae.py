"""The adversarial autoencoder: each training phase moves only the parameters it owns, the
priors draw what they say, the semi-supervised variant conditions on labels, checkpoints
rebuild the model and its built-in prior, and bad input is refused."""

from __future__ import annotations

import json

import pytest
import torch

from dunno.checkpoints import load_model, save_checkpoint
from dunno.cli import main as cli_main
from dunno.errors import NotFittedError
from dunno.training import fit
from generative import train_density
from generative.latent import (
    AdversarialAutoencoder,
    GaussianMixturePrior,
    GaussianPrior,
    UniformPrior,
)

pytestmark = pytest.mark.one_thread


def _binary(n: int, shape=(1, 4, 4), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) < 0.3).float()


def _tiny(**kw) -> AdversarialAutoencoder:
    kw.setdefault("latent_dim", 2)
    kw.setdefault("hidden", (16,))
    kw.setdefault("disc_hidden", (8,))
    aae = AdversarialAutoencoder((1, 4, 4), **kw)
    aae.configure_optimizers(lr=1e-2)
    return aae


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(module, before) -> set[str]:
    """Top-level parts (encoder, decoder, discriminator) with any parameter changed."""
    return {k.split(".")[0] for k, v in module.named_parameters() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("supervised", [False, True])
def test_each_phase_changes_only_the_parameters_it_should(supervised):
    aae = _tiny(prior="mixture", num_classes=10 if supervised else None)
    x = _binary(32)
    y = torch.randint(-1, 10, (32,)) if supervised else None
    before = _snapshot(aae)
    aae.reconstruction_phase(x)
    assert _changed(aae, before) == {"encoder", "decoder"}
    before = _snapshot(aae)
    aae.discriminator_phase(x, y)
    assert _changed(aae, before) == {"discriminator"}
    before = _snapshot(aae)
    aae.generator_phase(x, y)
    assert _changed(aae, before) == {"encoder"}
    assert all(p.grad is None for p in aae.parameters())  # nothing left over for later steps


def test_step_returns_the_three_losses_and_training_through_fit_works():
    torch.manual_seed(0)
    x = _binary(256)
    x[:, :, :2] = 1.0
    aae = _tiny()
    out = aae.step((x[:8], torch.zeros(8, dtype=torch.long)))
    assert set(out) == {"recon_loss", "d_loss", "g_loss"}
    before = aae.recon_error(x).mean().item()
    loader = [(x[i:i + 32], torch.zeros(32, dtype=torch.long)) for i in range(0, 256, 32)]
    history = fit(aae.step, loader, epochs=6, state={"aae": aae, **aae.optimizers_})
    assert set(history.epochs[-1]) >= {"recon_loss", "d_loss", "g_loss"}
    assert aae.recon_error(x).mean().item() < before - 1.0


def test_priors_draw_what_they_say():
    g = torch.Generator().manual_seed(0)
    z = GaussianPrior(3, scale=2.0)(20000, g)
    assert z.shape == (20000, 3) and abs(z.std().item() - 2.0) < 0.05
    u = UniformPrior(2, -3.0, 1.0)(5000, g)
    assert u.min() >= -3 and u.max() <= 1 and abs(u.mean().item() + 1.0) < 0.05
    mix = GaussianMixturePrior(2, components=10, radius=4.0, scale=0.1)
    labels = torch.arange(10).repeat(200)
    zm = mix(2000, g, labels)
    for k in range(10):
        centre = zm[labels == k].mean(0)
        assert torch.allclose(centre, mix.means[k], atol=0.03)
    assert mix.means.norm(dim=1).allclose(torch.full((10,), 4.0))
    with pytest.raises(ValueError, match="'labels' argument of GaussianMixturePrior"):
        mix(3, g, torch.tensor([0, 1, 10]))


def test_a_user_defined_prior_is_used_and_its_output_checked():
    calls = []

    def ring(n, generator=None):
        calls.append(n)
        angle = 2 * torch.pi * torch.rand(n, generator=generator)
        return torch.stack([angle.cos(), angle.sin()], 1)

    aae = _tiny(prior=ring)
    assert aae.config["prior"] == {"name": "custom"}
    z = aae.sample_prior(50)
    assert calls == [50] and torch.allclose(z.norm(dim=1), torch.ones(50))
    aae.step(_binary(16))
    assert calls[-1] == 16
    aae.prior = lambda n, generator=None: torch.zeros(n, 3)
    with pytest.raises(ValueError, match=r"must return a tensor of shape \(n, latent_dim\) = "
                                         r"\(4, 2\). Got \(4, 3\)"):
        aae.sample(4)


def test_semi_supervised_discriminator_sees_labels_and_the_prior_follows_them():
    aae = _tiny(prior={"name": "mixture", "scale": 0.01}, num_classes=10)
    assert aae.discriminator[0].in_features == 2 + 11  # code + one-hot with "unlabelled"
    labels = torch.tensor([3, 3, 7, -1])
    z = aae.sample_prior(4, labels=labels)
    assert torch.allclose(z[0], aae.prior.means[3], atol=0.1)
    assert torch.allclose(z[2], aae.prior.means[7], atol=0.1)
    assert aae.sample(4, labels=labels).shape == (4, 1, 4, 4)
    with pytest.raises(ValueError, match="needs the labels"):
        aae.step(_binary(4))
    with pytest.raises(ValueError, match=r"ints in -1..9 .*Got values in \[0, 12\]"):
        aae.step((_binary(2), torch.tensor([0, 12])))


def test_checkpoint_round_trip_rebuilds_model_and_builtin_prior(tmp_path):
    aae = _tiny(prior={"name": "uniform", "low": -2.0, "high": 2.0})
    aae.step(_binary(8))
    path = save_checkpoint(tmp_path / "aae.pt", aae, arch=aae.arch, config=aae.config)
    loaded = load_model(path)
    assert isinstance(loaded, AdversarialAutoencoder)
    assert isinstance(loaded.prior, UniformPrior) and loaded.prior.low == -2.0
    x = _binary(5)
    torch.testing.assert_close(loaded.recon_error(x), aae.recon_error(x))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(loaded.sample(3, generator=g1), aae.sample(3, generator=g2))
    custom = _tiny(prior=lambda n, generator=None: torch.zeros(n, 2))
    path = save_checkpoint(tmp_path / "custom.pt", custom, arch=custom.arch,
                           config=custom.config)
    reloaded = load_model(path)
    with pytest.raises(NotFittedError, match="model.prior = sampler"):
        reloaded.sample(2)


def test_bad_input_raises_clear_errors():
    aae = AdversarialAutoencoder((1, 4, 4), latent_dim=2, hidden=(8,), disc_hidden=(4,))
    with pytest.raises(NotFittedError, match="configure_optimizers"):
        aae.step(_binary(4))
    aae.configure_optimizers()
    with pytest.raises(ValueError, match=r"'x' argument of AdversarialAutoencoder."
                                         r"reconstruction_phase must hold binary values"):
        aae.step(torch.full((2, 1, 4, 4), 0.5))
    bad = _binary(2)
    bad[1, 0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        aae.recon_error(bad)
    with pytest.raises(ValueError, match=r"shape \(N, 1, 4, 4\)"):
        aae.encode(_binary(2, (1, 3, 3)))
    with pytest.raises(ValueError, match="'prior' parameter"):
        AdversarialAutoencoder((1, 4, 4), prior="laplace")
    with pytest.raises(ValueError, match="'pixels' parameter of AdversarialAutoencoder"):
        AdversarialAutoencoder((1, 4, 4), pixels="8bit")
    grey = AdversarialAutoencoder((1, 4, 4), latent_dim=2, pixels="grey")
    assert grey.recon_error(torch.rand(3, 1, 4, 4)).shape == (3,)


def test_density_training_trains_and_samples_an_aae(tmp_path, capsys):
    out = tmp_path / "aae"
    model, history = train_density(
        "aae", "digits", 2, out=out, lr=3e-3,
        options={"latent_dim": 2, "hidden": [32], "disc_hidden": [16], "prior": "mixture",
                 "num_classes": 10})
    assert isinstance(model, AdversarialAutoencoder)
    assert {"recon_loss", "d_loss", "g_loss", "val_loss"} <= set(history.epochs[-1])
    assert history.metrics["test_recon_nats"] > 0
    assert cli_main(["density", "score", "--checkpoint", str(out / "model.pt"), "--data",
                     "digits", "--binarize", "fixed", "--out", str(tmp_path / "score")]) == 0
    summary = json.loads((tmp_path / "score" / "score.json").read_text())
    assert summary["recon_nats"] == pytest.approx(history.metrics["test_recon_nats"])
    assert cli_main(["density", "sample", "--checkpoint", str(out / "model.pt"), "-n", "4"]) == 0
    assert (out / "samples.png").is_file()
    assert cli_main(["density", "train", "aae", "--data", "digits", "--epochs", "1",
                     "--option", "latent_dim=2", "--option", "hidden=[16]",
                     "--option", "disc_hidden=[8]", "--out", str(tmp_path / "cli")]) == 0
    assert "reconstruction cross-entropy" in capsys.readouterr().out
