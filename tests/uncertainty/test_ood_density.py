"""Density-based OOD detectors: likelihood, likelihood ratio, complexity, typicality."""

from __future__ import annotations

import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dunno.errors import NotFittedError
from evaluation.metrics.ood import auroc
from uncertainty.ood import (
    DETECTORS,
    InputComplexity,
    Likelihood,
    LikelihoodRatio,
    ModelOutputs,
    Typicality,
    available_detectors,
    bootstrap_threshold,
    complexity_score,
    compressed_bits,
    extract_outputs,
    likelihood_score,
    make_detector,
    mutate_pixels,
    typicality_score,
)
from uncertainty.ood.outputs import KNOWN_NEEDS

SHAPE = (1, 8, 8)
D = 64
DENSITY_DETECTORS = [n for n in available_detectors() if DETECTORS[n].uses_density]


class IndependentBernoulli(nn.Module):
    """A product of Bernoullis over binary images: log p(x) = sum_d x_d l_d - log(1 + e^l_d)."""

    pixels = "binary"

    def __init__(self, logits: torch.Tensor | None = None):
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(D) if logits is None else logits.clone())

    def log_prob(self, x):
        x = x.flatten(1).to(self.logit.dtype)  # (N, D)
        return (x * self.logit - F.softplus(self.logit)).sum(1)

    def loss(self, x):
        return -self.log_prob(x).mean()


def _in_probs():
    p = torch.full((D,), 0.1)
    p[: D // 2] = 0.9  # top half on, bottom half off
    return p


def _images(n, probs, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, D, generator=g) < probs).float().view(n, *SHAPE)


@pytest.fixture(scope="module")
def toy():
    p = _in_probs()
    density = IndependentBernoulli(torch.log(p) - torch.log1p(-p)).eval()
    train = _images(400, p, seed=1)
    test = _images(200, p, seed=2)
    # OOD: the top and bottom halves swapped -- as compressible as the in-distribution images
    # (so the complexity correction has nothing to cancel) but unlikely under the model
    flipped = _images(200, 1 - p, seed=3)
    return density, train, test, flipped


def _params(name):
    if name == "likelihood-ratio":
        return {"background": IndependentBernoulli(), "epochs": 20, "lr": 0.1,
                "mutation_rate": 0.5}
    if name == "typicality":
        return {"bootstraps": 200}
    return {}


# --------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", DENSITY_DETECTORS)
def test_density_contract_shape_finite_sign(name, toy):
    density, train, test, noise = toy
    det = make_detector(name, density=density, **_params(name))
    assert det.fit(train) is det
    s_in, s_out = det.score(test), det.score(noise)
    for s in (s_in, s_out):
        assert s.shape == (200,) and s.dtype == torch.float64 and torch.isfinite(s).all()
    assert auroc(s_in, s_out) > 0.95, name


@pytest.mark.parametrize("name", DENSITY_DETECTORS)
def test_density_outputs_path_equals_score(name, toy):
    density, train, test, _ = toy
    det = make_detector(name, density=density, **_params(name)).fit(train)
    fit_out = extract_outputs(None, train, needs=("log_prob", "input"), density=density)
    shared = make_detector(name, density=density, **_params(name)).fit_outputs(fit_out)
    test_out = extract_outputs(None, test, needs=("log_prob", "input"), density=density)
    torch.testing.assert_close(shared.score_outputs(test_out), det.score(test, batch_size=64))


@pytest.mark.parametrize("name", DENSITY_DETECTORS)
def test_density_detectors_declare_needs_and_params(name):
    cls = DETECTORS[name]
    det = cls()
    assert det.name == name and cls.reference and not cls.uses_model
    assert det.needs and det.needs <= KNOWN_NEEDS and "log_prob" in det.needs
    assert det.fit_needs <= KNOWN_NEEDS
    assert repr(det) == f"{cls.__name__}()"
    assert make_detector(name).get_params() == det.get_params()


@pytest.mark.parametrize("name", ["likelihood-ratio", "typicality"])
def test_fit_required_before_score(name, toy):
    density, _, test, _ = toy
    det = make_detector(name, density=density, **_params(name))
    with pytest.raises(NotFittedError, match="fit"):
        det.score(test)


# --------------------------------------------------------------------------- likelihood
def test_likelihood_is_the_negative_log_prob_in_nats_and_bits_per_dim(toy):
    density, _, test, _ = toy
    lp = density.log_prob(test).double()
    torch.testing.assert_close(Likelihood(density).score(test), -lp)
    torch.testing.assert_close(Likelihood(density, num_dims=D).score(test),
                               -lp / (D * math.log(2)))
    torch.testing.assert_close(likelihood_score(lp, D), -lp / (D * math.log(2)))


def test_extract_outputs_applies_the_density_transform(toy):
    density, _, test, _ = toy
    grey = test * 0.7 + 0.1  # a grey image that thresholds back to `test`
    out = extract_outputs(None, grey, needs=("log_prob",), density=density,
                          density_transform=lambda x: (x > 0.5).float(), batch_size=7)
    torch.testing.assert_close(out.log_prob, density.log_prob(test).double())
    assert out.available() == {"log_prob"}


# --------------------------------------------------------------------------- likelihood ratio
def test_likelihood_ratio_of_a_model_against_itself_is_zero(toy):
    density, train, test, noise = toy
    det = LikelihoodRatio(density, background=density, fit_background=False).fit(train)
    for x in (test, noise):
        assert torch.equal(det.score(x), torch.zeros(len(x), dtype=torch.float64))
    torch.testing.assert_close(
        make_detector("likelihood-ratio", density=density, background=density,
                      fit_background=False).fit_outputs(ModelOutputs(inputs=train))
        .score_outputs(extract_outputs(None, test, needs=("log_prob", "input"),
                                       density=density)),
        torch.zeros(len(test), dtype=torch.float64))


@pytest.mark.parametrize("rate, levels", [(0.1, 2), (0.3, 256), (0.5, 2)])
def test_mutation_replaces_the_stated_fraction_of_pixels(rate, levels):
    x = torch.randint(0, levels, (200, 1, 28, 28)).float()
    g = torch.Generator().manual_seed(0)
    y, mask = mutate_pixels(x, rate, levels, generator=g, return_mask=True)
    n = mask.numel()
    sd = math.sqrt(rate * (1 - rate) / n)
    assert abs(mask.float().mean().item() - rate) < 4 * sd
    assert torch.equal(y[~mask], x[~mask])  # untouched where not replaced
    assert y.min() >= 0 and y.max() <= levels - 1 and torch.equal(y, y.round())
    # a replacement equals the old value with probability 1 / levels
    changed = (y != x).float().mean().item()
    assert abs(changed - rate * (1 - 1 / levels)) < 0.01
    # reproducible, and rate 0 changes nothing
    again = mutate_pixels(x, rate, levels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, y)
    assert torch.equal(mutate_pixels(x, 0.0, levels), x)


def test_background_training_fits_mutated_data_and_leaves_the_given_model_alone(toy):
    density, train, _, _ = toy
    background = IndependentBernoulli()
    before = background.logit.detach().clone()
    det = LikelihoodRatio(density, background=background, mutation_rate=0.5, epochs=30,
                          lr=0.1, l2=0.0).fit(train)
    assert torch.equal(background.logit, before)  # `background` itself untouched
    fitted = torch.sigmoid(det.background_.logit.detach())
    # mutated pixels: p' = (1 - mu) p + mu / 2
    expected = 0.5 * _in_probs() + 0.25
    assert (fitted - expected).abs().max() < 0.08


def test_l2_penalty_pulls_the_background_towards_zero(toy):
    density, train, _, _ = toy
    kw = {"background": IndependentBernoulli(), "mutation_rate": 0.2, "epochs": 20, "lr": 0.1}
    free = LikelihoodRatio(density, l2=0.0, **kw).fit(train).background_.logit
    shrunk = LikelihoodRatio(density, l2=0.5, **kw).fit(train).background_.logit
    assert shrunk.detach().norm() < 0.7 * free.detach().norm()


def test_default_background_needs_a_registered_architecture(toy):
    density, train, _, _ = toy
    with pytest.raises(ValueError, match="background=<an untrained model"):
        LikelihoodRatio(density).fit(train)


# --------------------------------------------------------------------------- complexity
def test_complexity_with_a_constant_compressor_ranks_as_the_likelihood(toy):
    density, _, test, noise = toy
    x = torch.cat([test, noise])
    lik = Likelihood(density).score(x)
    comp = InputComplexity(density, compressor=lambda a: 123.0).score(x)
    torch.testing.assert_close(comp, lik / math.log(2) - 123.0)
    assert torch.equal(torch.argsort(comp, stable=True), torch.argsort(lik, stable=True))


def test_compressed_bits_match_the_standard_library_and_see_8bit_values():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 1, 8, 8, generator=g) < 0.5).float()
    bits = compressed_bits(x, "zlib", levels=2)
    for i in range(3):
        raw = (x[i] * 255).to(torch.uint8).numpy().tobytes()
        assert bits[i] == 8 * len(zlib.compress(raw, 9))
    flat = torch.zeros(1, 1, 28, 28)
    noisy = torch.randint(0, 256, (1, 1, 28, 28), generator=g).float()
    for compressor in ("png", "zlib", "bz2", "lzma"):
        assert compressed_bits(flat, compressor)[0] < compressed_bits(noisy, compressor)[0]
    with pytest.raises(ValueError, match="pixel values in"):
        compressed_bits(torch.full((1, 1, 2, 2), 0.5), "zlib", levels=256)
    with pytest.raises(ValueError, match="'png' compressor"):
        compressed_bits(torch.zeros(1, 2, 4, 4), "png")


def test_complexity_score_is_bits_minus_compressed_length():
    lp = torch.tensor([-math.log(2) * 10, -math.log(2) * 3], dtype=torch.float64)
    torch.testing.assert_close(complexity_score(lp, torch.tensor([4.0, 5.0])),
                               torch.tensor([6.0, -2.0], dtype=torch.float64))


# --------------------------------------------------------------------------- typicality
def test_typicality_of_the_training_batch_is_near_zero(toy):
    density, train, test, noise = toy
    det = Typicality(density, group_size=len(train), bootstraps=200).fit(train)
    assert det.score(train).abs().max() < 1e-9  # the whole training batch: exactly H
    batched = Typicality(density, group_size=50, bootstraps=500).fit(train)
    s_in = batched.score(test)
    assert s_in.max() < 3 * batched.threshold_
    assert batched.is_ood(noise).all() and batched.is_ood(test).float().mean() < 0.5
    # per example: |NLL - H|
    single = Typicality(density).fit(train)
    nll = -density.log_prob(test).double()
    torch.testing.assert_close(single.score(test), (nll - single.entropy_).abs())
    entropy = float(-density.log_prob(train).detach().double().mean())
    assert single.entropy_ == pytest.approx(entropy, rel=1e-5)


def test_typicality_groups_consecutive_inputs():
    lp = -torch.tensor([1.0, 3.0, 10.0, 14.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(typicality_score(lp, 4.0, 2),
                               torch.tensor([2.0, 2.0, 8.0, 8.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(typicality_score(lp, 4.0, 1),
                               torch.tensor([3.0, 1.0, 6.0, 10.0, 1.0], dtype=torch.float64))


def test_bootstrap_threshold_is_a_quantile_of_batch_statistics():
    lp = -torch.arange(100, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    eps = bootstrap_threshold(lp, 49.5, 100, bootstraps=2000, alpha=0.05, generator=g)
    se = float(torch.arange(100, dtype=torch.float64).std()) / 10
    assert 1.5 * se < eps < 2.5 * se  # |mean - mu| at the 95% level: ~1.96 standard errors


# --------------------------------------------------------------------------- bad input
def test_bad_density_inputs_get_clear_errors(toy):
    density, train, test, _ = toy
    with pytest.raises(ValueError, match="log_prob"):
        make_detector("likelihood", density=nn.Linear(2, 2)).score(test)
    with pytest.raises(ValueError, match="does not score through a classifier"):
        make_detector("likelihood", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="does not score through a density model"):
        make_detector("msp", density=density)
    with pytest.raises(ValueError, match="none was given"):
        Likelihood().score(test)
    with pytest.raises(ValueError, match="'mutation_rate'.*Got 0"):
        LikelihoodRatio(density, mutation_rate=0).fit(train)
    with pytest.raises(ValueError, match="fit_background=False"):
        LikelihoodRatio(density, fit_background=False).fit(train)
    with pytest.raises(ValueError, match="'compressor'"):
        InputComplexity(density, compressor="gzip").score(test)
    with pytest.raises(ValueError, match="'alpha'"):
        Typicality(density, alpha=1.0).fit(train)
    with pytest.raises(ValueError, match="pass levels=<int>"):
        InputComplexity(_BadShape(), levels=None).score_outputs(
            ModelOutputs(inputs=test, log_prob=torch.zeros(len(test))))
    with pytest.raises(ValueError, match="NaN or inf"):
        Likelihood(density).score_outputs(ModelOutputs(log_prob=torch.tensor([0.0, math.nan])))
    with pytest.raises(ValueError, match="one log-density per input"):
        Likelihood(_BadShape()).score(test)
    with pytest.raises(ValueError, match="'log_prob' field.*1-D"):
        ModelOutputs(log_prob=torch.zeros(3, 2))


class _BadShape(nn.Module):
    def log_prob(self, x):
        return torch.zeros(len(x), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", DENSITY_DETECTORS)
def test_density_detectors_run_on_cuda(name, toy):
    density, train, test, noise = toy
    params = _params(name)
    if "background" in params:
        params["background"] = params["background"].cuda()
    det = make_detector(name, density=IndependentBernoulli(density.logit.detach()).cuda(),
                        **params).fit(train.cuda())
    s_in, s_out = det.score(test.cuda()), det.score(noise.cuda())
    assert torch.isfinite(s_in).all() and auroc(s_in, s_out) > 0.95
