"""GAN, DCGAN, InfoGAN: the alternating update touches one player at a time, the ring of 8
Gaussians, checkpoints, the InfoGAN mutual-information term by hand, the runner and the CLI.

What "untouched" means here: a network's full ``state_dict`` (parameters *and* buffers) is
bit-identical before and after the other player's update. The generator's batch-norm running
statistics move only in the generator's forward pass ``fake = G(z)``, which ``step`` runs
before the discriminator step (the snapshot is taken after it); discriminators normalise with
batch statistics only and hold no buffers at all (checked), so the generator step cannot change
anything of D, and it does not even accumulate gradients in D.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dunno.checkpoints import load_model, save_checkpoint
from dunno.errors import CheckpointError
from dunno.training import fit, seed_everything
from generative.adversarial import DCGAN, GAN, InfoGAN, create, mutual_information_loss

MODELS = {
    "gan": lambda: GAN((2,), latent_dim=4, hidden=(16, 16)),
    "gan-image": lambda: GAN((1, 8, 8), latent_dim=4, hidden=(16,), output="image"),
    "dcgan": lambda: DCGAN((1, 8, 8), latent_dim=8, width=4),
    "infogan": lambda: InfoGAN((1, 8, 8), noise_dim=4, categorical=3, continuous=2, width=4,
                               hidden=16),
}


def _batch(model, n=16):
    return torch.rand(n, *model.data_shape)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- one player at a time
@pytest.mark.parametrize("name", list(MODELS))
def test_discriminator_has_no_buffers(name):
    model = MODELS[name]()
    assert list(model.discriminator.buffers()) == []


@pytest.mark.parametrize("name", list(MODELS))
def test_discriminator_step_leaves_the_generator_untouched(name):
    model = MODELS[name]().train()
    real = model.to_model_space(_batch(model))
    z = model.sample_latent(len(real))
    fake = model.generate(z)  # the generator's forward pass (its BN statistics move here)
    g_before, d_before = _snapshot(model.generator), _snapshot(model.discriminator)
    out = model.discriminator_step(real, fake.detach(), z)
    assert _same(g_before, _snapshot(model.generator))
    assert all(p.grad is None for p in model.generator.parameters())
    assert not _same(d_before, _snapshot(model.discriminator))
    assert math.isfinite(float(out["d_loss"]))


@pytest.mark.parametrize("name", list(MODELS))
def test_generator_step_leaves_the_discriminator_untouched(name):
    model = MODELS[name]().train()
    real = model.to_model_space(_batch(model))
    z = model.sample_latent(len(real))
    fake = model.generate(z)
    model.discriminator_step(real, fake.detach(), z)  # D now has gradients from its own step
    grads = [p.grad.clone() for p in model.discriminator.parameters()]
    g_before, d_before = _snapshot(model.generator), _snapshot(model.discriminator)
    out = model.generator_step(fake, z)
    assert _same(d_before, _snapshot(model.discriminator))
    assert all(torch.equal(p.grad, g)
               for p, g in zip(model.discriminator.parameters(), grads, strict=True))
    assert all(p.requires_grad for p in model.discriminator.parameters())
    g_params_before = {k: v for k, v in g_before.items() if "running" not in k}
    g_params_after = {k: v for k, v in _snapshot(model.generator).items() if "running" not in k}
    assert not _same(g_params_before, g_params_after)
    assert math.isfinite(float(out["g_loss"]))


@pytest.mark.parametrize("name", list(MODELS))
def test_step_returns_the_losses_and_fits(name):
    model = MODELS[name]()
    x = _batch(model, 32)
    loader = [(x[:16], None), (x[16:], None)]
    history = fit(model.step, loader, epochs=2, state=model.training_state())
    keys = {"d_loss", "g_loss", "d_real", "d_fake"}
    if name == "infogan":
        keys |= {"q_loss", "mi_lower_bound"}
    assert keys <= set(history.epochs[-1])
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, *model.data_shape)
    if model.output == "image":
        assert samples.min() >= 0 and samples.max() <= 1


def test_sampling_is_seeded_and_batch_independent():
    model = MODELS["dcgan"]()
    a = model.sample(6, generator=torch.Generator().manual_seed(3))
    b = model.sample(6, generator=torch.Generator().manual_seed(3), batch_size=2)
    assert torch.allclose(a, b, atol=1e-6)


# ----------------------------------------------------------------------------- the ring
def test_gan_covers_several_modes_of_the_ring():
    from dunno.data import load_dataset, make_loader
    from evaluation.metrics import mode_coverage, ring_modes

    seed_everything(0)
    train = load_dataset("ring-of-gaussians:n=10000", "train")
    gan = GAN((2,))
    loader = make_loader(train, 100, shuffle=True, seed=0, drop_last=True)
    fit(gan.step, loader, epochs=30, state=gan.training_state())
    samples = gan.sample(2500, generator=torch.Generator().manual_seed(0))
    coverage = mode_coverage(samples, ring_modes(8, 2.0), 0.02)
    assert coverage.modes_covered >= 4
    assert coverage.high_quality > 0.05


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", list(MODELS))
def test_checkpoint_round_trip(name, tmp_path):
    model = MODELS[name]()
    model.step(_batch(model))  # move the weights and the generator's BN statistics
    path = save_checkpoint(tmp_path / "model.pt", model, arch=model.arch, config=model.config)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert _same(_snapshot(model), _snapshot(loaded))
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = loaded.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    from dunno.checkpoints import atomic_save, load_checkpoint
    from generative import load_gan

    dcgan = MODELS["dcgan"]()
    path = save_checkpoint(tmp_path / "dcgan.pt", dcgan, arch=dcgan.arch, config=dcgan.config)
    with pytest.raises(CheckpointError, match="not 'generative/gan'"):
        load_model(path, expected_arch="generative/gan")
    # weights of a DCGAN under the GAN's name and config
    payload = torch.load(path, weights_only=True)
    gan = MODELS["gan-image"]()
    payload["arch"] = gan.arch
    payload["config"] = __import__("json").dumps(gan.config)
    atomic_save(payload, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="another architecture"):
        load_model(tmp_path / "mixed.pt")
    # a classifier checkpoint is not a GAN
    from dunno import nets

    clf = nets.create("lenet5", 1, 10, input_size=8)
    clf_path = save_checkpoint(tmp_path / "clf.pt", clf, arch="nets", config=clf.config)
    assert load_checkpoint(clf_path).arch == "nets"
    with pytest.raises(CheckpointError, match="not a GAN"):
        load_gan(clf_path)


# ----------------------------------------------------------------------------- InfoGAN MI term
def test_mutual_information_loss_by_hand():
    cat_logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    cat_codes = torch.tensor([0, 2])
    mean = torch.tensor([[0.1, -0.3], [0.0, 0.4]])
    codes = torch.tensor([[0.5, -0.5], [-1.0, 1.0]])
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def log_softmax(row, i):
        return row[i] - math.log(sum(math.exp(v) for v in row))

    ce = -(log_softmax([2.0, 0.0, -1.0], 0) + log_softmax([0.5, 0.5, 0.0], 2)) / 2
    sq = ((0.5 - 0.1) ** 2 + (-0.5 + 0.3) ** 2 + (-1.0) ** 2 + (1.0 - 0.4) ** 2) / 2
    expected_fixed = ce + 0.5 * sq + 2 * half_log_2pi
    got = mutual_information_loss(cat_logits, cat_codes, mean, codes)
    assert float(got) == pytest.approx(expected_fixed, rel=1e-6)

    log_std = torch.tensor([[0.0, math.log(2.0)], [math.log(0.5), 0.0]])
    nll = [0.0 + 0.5 * 0.4**2, math.log(2.0) + 0.5 * (0.2 / 2) ** 2,
           math.log(0.5) + 0.5 * (1.0 / 0.5) ** 2, 0.0 + 0.5 * 0.6**2]
    expected_learned = ce + sum(nll) / 2 + 2 * half_log_2pi
    got = mutual_information_loss(cat_logits, cat_codes, mean, codes, log_std)
    assert float(got) == pytest.approx(expected_learned, rel=1e-6)


def test_infogan_q_loss_reads_the_codes_from_z():
    model = InfoGAN((1, 8, 8), noise_dim=3, categorical=4, continuous=2, width=4, hidden=8)
    noise = torch.randn(5, 3)
    cat = torch.tensor([0, 3, 1, 2, 3])
    cont = torch.rand(5, 2) * 2 - 1
    z = model.latent(noise, cat, cont)
    _, cat_back, cont_back = model.split_latent(z)
    assert torch.equal(cat_back, cat) and torch.equal(cont_back, cont)
    q_out = torch.randn(5, 6)
    expected = F.cross_entropy(q_out[:, :4], cat) + (
        0.5 * (cont - q_out[:, 4:]) ** 2 + 0.5 * math.log(2 * math.pi)).sum(1).mean()
    assert float(model.q_loss(q_out, z)) == pytest.approx(float(expected), rel=1e-6)
    assert model.code_entropy == pytest.approx(math.log(4) + 2 * math.log(2))
    cat_nll, cont_nll = model.q_terms(q_out, z)
    assert float(cat_nll) == pytest.approx(float(F.cross_entropy(q_out[:, :4], cat)), rel=1e-6)
    assert float(cat_nll + cont_nll) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_infogan_continuous_weight_scales_the_continuous_terms(weight):
    """With continuous_weight = 0 the continuous codes' Q outputs get no gradient: their rows
    of the Q head's last layer stay bit-identical through a discriminator step (Adam moves
    nothing whose gradients were all zero); with weight 1 they move. The reported q_loss is
    unweighted either way."""
    torch.manual_seed(0)
    model = InfoGAN((1, 8, 8), noise_dim=3, categorical=4, continuous=2, width=4, hidden=8,
                    continuous_weight=weight)
    assert model.config["continuous_weight"] == weight
    last = model.discriminator.q_head[-1]
    before = last.weight.detach().clone()  # (K + L, 128)
    out = model.step(torch.rand(16, 1, 8, 8))
    moved = (last.weight.detach() != before).any(dim=1)  # (K + L,)
    assert moved[:4].all()
    assert bool(moved[4:].any()) == (weight > 0)
    assert float(out["mi_lower_bound"]) == pytest.approx(
        model.code_entropy - float(out["q_loss"]), rel=1e-6)


@pytest.mark.parametrize("noise, var", [("gaussian", 1.0), ("uniform", 1.0 / 3.0)])
def test_infogan_noise_distribution(noise, var, tmp_path):
    """The incompressible noise follows ``noise``: N(0, 1) has variance 1 and unbounded
    draws, U(-1, 1) variance 1/3 inside [-1, 1]; the codes keep their distributions; the
    same generator seed gives the same draws; checkpoints keep the choice, and a config
    without the key (written before it existed) means the Gaussian."""
    model = InfoGAN((1, 8, 8), noise_dim=6, categorical=4, continuous=2, width=4, hidden=8,
                    noise=noise)
    z = model.sample_latent(20000, torch.Generator().manual_seed(0))
    eps, cat, cont = model.split_latent(z)
    assert float(eps.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(eps.var()) == pytest.approx(var, rel=0.03)
    assert (float(eps.abs().max()) <= 1.0) == (noise == "uniform")
    assert float(cont.abs().max()) <= 1.0 and set(cat.tolist()) == {0, 1, 2, 3}
    again = model.sample_latent(20000, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    path = save_checkpoint(tmp_path / "model.pt", model, arch=model.arch, config=model.config)
    assert load_model(path).noise == noise
    old = {k: v for k, v in model.config.items() if k != "noise"}
    assert InfoGAN(**old).noise == "gaussian"
    with pytest.raises(ValueError, match="'noise' parameter of InfoGAN must be one of"):
        InfoGAN(noise="laplace")


# ----------------------------------------------------------------------------- bad input
def test_bad_parameters_and_data():
    with pytest.raises(ValueError, match="multiples of 4"):
        DCGAN((1, 27, 27))
    with pytest.raises(ValueError, match="'hidden' parameter of GAN"):
        GAN((2,), hidden=())
    with pytest.raises(ValueError, match="'categorical' parameter of InfoGAN must be an int >= 2"):
        InfoGAN(categorical=1)
    with pytest.raises(ValueError, match="'continuous_weight' parameter of InfoGAN"):
        InfoGAN(continuous_weight=-0.5)
    with pytest.raises(ValueError, match="'lr_g' parameter of DCGAN"):
        DCGAN(lr_g=0.0)
    with pytest.raises(ValueError, match="Unknown adversarial model"):
        create("vae", (1, 28, 28))
    model = MODELS["dcgan"]()
    with pytest.raises(ValueError, match=r"built for data of shape \(N, 1, 8, 8\)"):
        model.step(torch.rand(4, 1, 28, 28))
    with pytest.raises(ValueError, match=r"images in \[0, 1\]"):
        model.step(torch.rand(4, 1, 8, 8) * 255)
    with pytest.raises(ValueError, match="NaN"):
        model.step(torch.full((4, 1, 8, 8), float("nan")))


# ----------------------------------------------------------------------------- training and CLI
def test_training_resumes_exactly_and_evaluates(tmp_path):
    from generative import evaluate_gan, load_gan, train_gan

    kwargs = dict(options={"latent_dim": 4, "hidden": [16, 16]}, batch_size=50)
    data = "ring-of-gaussians:n=500"
    seen = []
    full, hist = train_gan("gan", data, 2, out=tmp_path / "full",
                           on_epoch_end=lambda model, epoch, record: seen.append(epoch),
                           **kwargs)
    assert {"modes_covered", "high_quality", "minutes"} <= set(hist.epochs[-1])
    assert seen == [1, 2] and hist.steps == 20 and not hist.stopped_for_budget
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["model.pt",
                                                                      "training_state.pt"]
    train_gan("gan", data, 1, out=tmp_path / "part", **kwargs)
    resumed, _ = train_gan("gan", data, 2, out=tmp_path / "part", resume=True, **kwargs)
    assert _same(_snapshot(full), _snapshot(resumed))
    result = evaluate_gan(load_gan(tmp_path / "full" / "model.pt"), data="ring-of-gaussians")
    assert result.report["num_samples"] == 2500 and 0 <= result.report["modes_covered"] <= 8
    assert result.samples.shape == (2500, 2)


def test_time_budget_ends_gan_training_after_one_step():
    from generative import train_gan

    _, hist = train_gan("gan", "ring-of-gaussians:n=500", 50, max_minutes=1e-9, batch_size=50,
                        options={"latent_dim": 4, "hidden": [8]})
    assert len(hist.epochs) == 1 and hist.steps == 1 and hist.stopped_for_budget
    assert hist.metrics["budget_exhausted"] and hist.metrics["steps"] == 1


def test_infogan_grids_and_image_evaluation(tmp_path):
    from dunno import nets
    from generative import evaluate_gan, train_gan
    from generative.plots import EpochSamplePlots

    options = {"noise_dim": 4, "categorical": 3, "continuous": 1, "width": 4, "hidden": 8}
    model, hist = train_gan("infogan", "digits", 1, out=tmp_path, options=options,
                            batch_size=64, train_size=256,
                            on_epoch_end=EpochSamplePlots(tmp_path / "samples", grid=9))
    assert (tmp_path / "samples" / "epoch_001.png").is_file()
    assert (tmp_path / "samples" / "epoch_001_c1.png").is_file()
    assert (tmp_path / "model.pt").is_file()
    assert "q_loss" in hist.epochs[-1]
    classifier = nets.create("lenet5", 1, 10, input_size=8).eval()  # untrained is enough here
    result = evaluate_gan(tmp_path / "model.pt", classifier=classifier, data="digits",
                          num_samples=60)
    report = result.report
    generated, floor = report["rows"][0], report["rows"][-1]
    assert generated["n"] == floor["n"] == 60 and result.samples.shape == (60, 1, 8, 8)
    assert 1.0 <= generated["classifier_score"] <= 10.0
    assert 0.0 <= report["code_accuracy"] <= 1.0
    assert "classifier-based" in report["note"]
    # a classifier recorded as trained on other images is refused, by file or by module
    from dunno.checkpoints import save_checkpoint
    from dunno.errors import DataError

    save_checkpoint(tmp_path / "other.pt", classifier, arch="nets", config=classifier.config,
                    meta={"trained_on": "fashion-mnist"})
    with pytest.raises(DataError, match=r"trained on 'fashion-mnist' but the samples are "
                       r"scored against 'digits'"):
        evaluate_gan(tmp_path / "model.pt", classifier=tmp_path / "other.pt", data="digits",
                     num_samples=60)
    classifier.dunno_info = {"trained_on": "fashion-mnist"}
    with pytest.raises(DataError, match="trained on 'fashion-mnist'"):
        evaluate_gan(tmp_path / "model.pt", classifier=classifier, data="digits",
                     num_samples=60)
    classifier.dunno_info = {"trained_on": "digits:rotate=90"}  # the same images, shifted
    assert evaluate_gan(tmp_path / "model.pt", classifier=classifier, data="digits",
                        num_samples=60).report["rows"][0]["n"] == 60


class _CodeWriter(torch.nn.Module):
    """A stand-in generator: writes the one-hot categorical part of z into the first K
    pixels of an 8x8 image (model space: 1 where the code is on, -1 elsewhere)."""

    def __init__(self, model: InfoGAN):
        super().__init__()
        self.d, self.k = model.noise_dim, model.categorical

    def forward(self, z):
        x = -torch.ones(z.shape[0], 1, 8, 8)
        x[:, 0, 0, : self.k] = 2 * z[:, self.d:self.d + self.k] - 1
        return x


class _PixelReader(torch.nn.Module):
    """A stand-in classifier: class j's logit is pixel ``columns[j]`` of the first row."""

    def __init__(self, columns):
        super().__init__()
        self.columns = list(columns)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def features(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.scale * x[:, 0, 0, self.columns]


def test_code_accuracy_known_answers():
    from generative import code_accuracy

    model = InfoGAN((1, 8, 8), noise_dim=3, categorical=4, continuous=1, width=4, hidden=8)
    model.generator = _CodeWriter(model)
    perm = [2, 0, 3, 1]  # class j reads the pixel of code perm[j]
    result = code_accuracy(model, _PixelReader(perm), 40, seed=1)
    assert result["code_accuracy"] == 1.0
    assert result["code_mapping"] == {perm[j]: j for j in range(4)}
    # codes 0 and 1 both drawn as class 0 (class 1 reads a blank pixel): 3 of 4 codes match
    result = code_accuracy(model, _PixelReader([0, 5, 2, 3]), 40, seed=1)
    assert result["code_accuracy"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="num_samples"):
        code_accuracy(model, _PixelReader(perm), 3)
    with pytest.raises(TypeError, match="InfoGAN"):
        code_accuracy(DCGAN((1, 8, 8), latent_dim=8, width=4), _PixelReader(perm))


def test_cli_train_and_eval(tmp_path, capsys):
    from dunno.cli import main

    out = tmp_path / "ring"
    assert main(["gan", "train", "gan", "--data", "ring-of-gaussians:n=300", "--epochs", "1",
                 "--batch-size", "50", "--out", str(out), "--quiet",
                 "--option", "latent_dim=4"]) == 0
    for name in ("model.pt", "training_state.pt", "history.json", "history.csv",
                 "summary.json", "losses.png", "samples.png", "samples/epoch_001.png"):
        assert (out / name).is_file(), name
    assert main(["gan", "eval", "--checkpoint", str(out / "model.pt"), "-n", "200",
                 "--out", str(tmp_path / "eval")]) == 0
    assert "modes covered" in capsys.readouterr().out
    assert (tmp_path / "eval" / "eval.json").is_file()
    assert (tmp_path / "eval" / "eval_samples.png").is_file()
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    page = (tmp_path / "eval" / "report.html").read_text()
    assert f">{100 * saved['high_quality']:.2f}<" in page and "data:image/png;base64," in page
    # a checkpoint that is not a GAN: a clean error, exit status 2
    from dunno import nets

    clf = nets.create("lenet5", 1, 10, input_size=8)
    save_checkpoint(tmp_path / "clf.pt", clf, arch="nets", config=clf.config)
    assert main(["gan", "eval", "--checkpoint", str(tmp_path / "clf.pt")]) == 2
    assert "not a GAN" in capsys.readouterr().err


def test_sample_grid_values_are_in_range():
    model = MODELS["infogan"]()
    images = model.sample_codes(np.arange(3), None, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1


def test_gan_cpu_budget_counts_this_process_cpu_time(monkeypatch):
    from dunno import training
    from generative import train_gan

    ticks = iter(range(0, 10**6, 30))
    monkeypatch.setitem(training.BUDGET_CLOCKS, "cpu", lambda: float(next(ticks)))
    _, hist = train_gan("gan", "ring-of-gaussians:n=500", 50, max_minutes=1.0,
                        budget_clock="cpu", batch_size=50,
                        options={"latent_dim": 4, "hidden": [8]})
    assert hist.stopped_for_budget and hist.steps == 2
