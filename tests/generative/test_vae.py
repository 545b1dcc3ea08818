"""The VAE is what it says: the importance-sampled log p(x) against the exact value of a
linear-Gaussian model, monotone in K and independent of the chunking; the ELBO against a hand
computation; Pyro's ELBO against ours; no shared Pyro state between two VAEs; checkpoints;
and the errors a user meets."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pyro
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from dunno.checkpoints import load_checkpoint, load_model, save_checkpoint
from dunno.cli import main as cli_main
from dunno.errors import CheckpointError
from dunno.training import fit
from generative import score_density, train_density
from generative.latent import VAE, latent_traversal, plot_traversal

pytestmark = pytest.mark.one_thread


def _binary(n: int, shape=(1, 4, 4), p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) < p).float()


def _tiny(**kw) -> VAE:
    kw.setdefault("latent_dim", 3)
    kw.setdefault("hidden", (16,))
    return VAE((1, 4, 4), **kw)


# ------------------------------------------------------------------ the likelihood estimate
def test_iwae_estimate_increases_with_k_and_is_at_most_zero_for_binary_data():
    torch.manual_seed(1)
    vae = _tiny().eval()
    x = _binary(400)
    means = []
    for k in (1, 5, 50, 500):
        lp = vae.log_prob(x, k, generator=torch.Generator().manual_seed(k))
        assert lp.shape == (400,)
        assert (lp <= 0).all()  # a probability mass is at most 1
        means.append(lp.mean().item())
    assert means == sorted(means), means  # E[log p_K] is non-decreasing in K
    assert means[-1] - means[0] > 0.1  # and actually tightens


class _LinearGaussianVAE(VAE):
    """z ~ N(0, I_L), x | z ~ N(W z + b, s^2 I_D) with a diagonal Gaussian q that is close to,
    but not, the exact posterior, so the importance weights vary."""

    def __init__(self, W, b, s):
        d, latent = W.shape
        super().__init__((1, 1, d), latent_dim=latent, hidden=(2,))
        self.decoder = nn.Linear(latent, d).double()
        with torch.no_grad():
            self.decoder.weight.copy_(W)
            self.decoder.bias.copy_(b)
        self.s = s
        self.double()
        cov = torch.linalg.inv(torch.eye(latent, dtype=W.dtype) + W.T @ W / s**2)
        self.post_cov, self.W, self.b = cov, W, b

    def check_images(self, x, owner="test"):  # real-valued data
        return x

    def _encode(self, u):
        v = u.flatten(1)  # (N, D)
        loc = (v - self.b) @ self.W @ self.post_cov / self.s**2  # (N, L)
        scale = 1.3 * self.post_cov.diagonal().sqrt().expand_as(loc)  # wider than exact
        return loc + 0.1, scale

    def _log_px(self, mean, u):
        normal = torch.distributions.Normal(mean, self.s)
        return normal.log_prob(u.expand_as(mean)).sum(-1)


def test_importance_sampled_log_prob_matches_the_exact_linear_gaussian_marginal():
    g = torch.Generator().manual_seed(0)
    d, latent, s = 5, 2, 0.7
    W = torch.randn(d, latent, generator=g, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    model = _LinearGaussianVAE(W, b, s).eval()
    x = (b + torch.randn(30, latent, generator=g, dtype=torch.float64) @ W.T
         + s * torch.randn(30, d, generator=g, dtype=torch.float64))  # (N, D)
    exact = stats.multivariate_normal(b.numpy(), (W @ W.T).numpy() + s**2 * np.eye(d)).logpdf(
        x.numpy())
    est = model.log_prob(x.view(30, 1, 1, d), 20000, generator=g).numpy()
    np.testing.assert_allclose(est, exact, atol=0.02)
    assert abs(np.mean(est - exact)) < 0.005
    one = model.log_prob(x.view(30, 1, 1, d), 1, generator=g).numpy()
    assert np.mean(exact - one) > 0.02  # a single sample is visibly looser


def test_chunking_over_k_does_not_change_the_estimate():
    vae = _tiny().eval()
    x = _binary(12)
    results = [vae.log_prob(x, 37, chunk_size=c, generator=torch.Generator().manual_seed(3))
               for c in (1, 5, 37, None)]
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], atol=1e-5, rtol=0)


def test_k_5000_runs_in_chunks_on_a_full_size_vae():
    vae = VAE((1, 28, 28), latent_dim=10, hidden=(64,)).eval()
    lp = vae.log_prob(_binary(4, (1, 28, 28)), 5000, chunk_size=1000)
    assert lp.shape == (4,) and torch.isfinite(lp).all()


# ------------------------------------------------------------------ the ELBO
def _hand_elbo(vae: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    enc, dec = vae.encoder.net, vae.decoder.net
    h = F.linear(torch.relu(F.linear(x.flatten(1), enc[0].weight, enc[0].bias)),
                 enc[2].weight, enc[2].bias)  # (N, 2L)
    L = vae.latent_dim
    mu, sigma = h[:, :L], torch.log1p(torch.exp(h[:, L:])) + 1e-6
    z = mu + sigma * eps
    logits = F.linear(torch.relu(F.linear(z, dec[0].weight, dec[0].bias)), dec[2].weight,
                      dec[2].bias)
    v = x.flatten(1)
    recon = (v * logits - torch.log1p(torch.exp(logits))).sum(1)
    kl = 0.5 * (mu**2 + sigma**2 - 1 - torch.log(sigma**2)).sum(1)
    return recon - kl


def test_elbo_equals_a_hand_computation_for_a_fixed_tiny_network():
    vae = VAE((1, 2, 2), latent_dim=2, hidden=(3,)).double()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    x = _binary(6, (1, 2, 2), p=0.5).double()
    got = vae.elbo(x, generator=torch.Generator().manual_seed(9))
    eps = torch.randn(6, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    torch.testing.assert_close(got, _hand_elbo(vae, x, eps), rtol=1e-10, atol=1e-10)
    # an IWAE estimate with K = 1 is the single-sample ELBO with a Monte-Carlo KL: the
    # ELBO is the average of it
    lp1 = torch.stack([vae.log_prob(x, 1, generator=torch.Generator().manual_seed(i))
                       for i in range(3000)]).mean(0)
    torch.testing.assert_close(lp1, vae.elbo(x, 3000), atol=0.15, rtol=0)


def test_pyro_mean_field_loss_equals_minus_our_elbo_when_the_decoder_ignores_z():
    vae = _tiny(objective="mean-field").double()
    with torch.no_grad():
        vae.decoder.net[0].weight.zero_()  # the likelihood no longer depends on z
    x = _binary(10).double()
    vae.eval()
    torch.testing.assert_close(vae.loss(x), -vae.elbo(x).mean(), rtol=1e-10, atol=1e-10)


def test_iwae_bound_is_tighter_than_the_elbo():
    vae = _tiny().eval()
    x = _binary(200)
    with torch.no_grad():
        iwae = torch.stack([vae.iwae_bound(x, 20) for _ in range(5)]).mean()
    assert iwae > vae.elbo(x, 20).mean()


def test_kl_warmup_ramps_the_kl_weight_in_training_mode_only():
    vae = _tiny(warmup_steps=4)
    x = _binary(8)
    weights = []
    for _ in range(5):
        weights.append(vae.kl_weight())
        vae.loss(x)
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0]
    vae.eval()
    vae.loss(x)
    assert int(vae.steps) == 5


@pytest.mark.parametrize("objective", ["trace", "mean-field", "iwae"])
def test_every_objective_trains_through_fit(objective):
    torch.manual_seed(0)
    x = _binary(256, p=0.2)
    x[:, :, :2] = 1.0  # structure to learn
    vae = _tiny(objective=objective, particles=2 if objective != "trace" else 1)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    before = vae.elbo(x, 5).mean().item()

    def step(batch):
        loss = vae.loss(batch[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    loader = [(x[i:i + 64],) for i in range(0, 256, 64)]
    history = fit(step, loader, epochs=8, state={"vae": vae, "opt": opt})
    assert len(history["loss"]) == 8
    assert vae.elbo(x, 5).mean().item() > before + 1.0


# ------------------------------------------------------------------ Pyro state and checkpoints
def test_two_vaes_in_one_process_do_not_share_parameters():
    a, b = _tiny(), _tiny()
    ids_a = {p.data_ptr() for p in a.parameters()}
    assert not ids_a & {p.data_ptr() for p in b.parameters()}
    snapshot_b = {k: v.clone() for k, v in b.state_dict().items()}
    opt = torch.optim.Adam(a.parameters(), lr=1e-2)
    for _ in range(3):
        loss = a.loss(_binary(16))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in b.state_dict().items():
        assert torch.equal(v, snapshot_b[k]), k
    assert len(pyro.get_param_store()) == 0  # nothing went through the global store
    pyro.clear_param_store()  # and clearing it cannot touch either VAE
    assert b.loss(_binary(4)).isfinite()


def test_checkpoint_round_trip_gives_the_same_log_prob(tmp_path):
    vae = _tiny(likelihood="bernoulli", warmup_steps=3, objective="iwae", particles=4)
    vae.loss(_binary(4))
    path = save_checkpoint(tmp_path / "vae.pt", vae, arch=vae.arch, config=vae.config)
    loaded = load_model(path)
    assert isinstance(loaded, VAE) and loaded.config == vae.config
    assert int(loaded.steps) == 1
    x = _binary(10)
    torch.testing.assert_close(
        loaded.log_prob(x, 50, generator=torch.Generator().manual_seed(0)),
        vae.eval().log_prob(x, 50, generator=torch.Generator().manual_seed(0)))


def test_mismatched_latent_dims_give_a_clear_checkpoint_error(tmp_path):
    small, big = _tiny(latent_dim=2), _tiny(latent_dim=5)
    with pytest.raises(CheckpointError, match="latent_dim=2, but this VAE has latent_dim=5"):
        big.load_state_dict(small.state_dict())
    path = save_checkpoint(tmp_path / "bad.pt", small, arch=small.arch,
                           config={**small.config, "latent_dim": 5})
    with pytest.raises(CheckpointError, match="latent_dim=2, but this VAE has latent_dim=5"):
        load_model(path)


# ------------------------------------------------------------------ generation
def test_sample_reconstruct_and_traversal(tmp_path):
    vae = _tiny()
    g = torch.Generator().manual_seed(0)
    s = vae.sample(7, generator=g)
    assert s.shape == (7, 1, 4, 4) and ((s == 0) | (s == 1)).all()
    m = vae.sample(3, mean=True)
    assert m.shape == (3, 1, 4, 4) and (m > 0).all() and (m < 1).all()
    r = vae.reconstruct(_binary(5))
    assert r.shape == (5, 1, 4, 4) and (r >= 0).all() and (r <= 1).all()
    grid = latent_traversal(vae, _binary(1), dims=[0, 2], steps=5, span=2.0)
    assert grid.shape == (10, 1, 4, 4)
    # the middle of each row is the start code: both rows agree there
    torch.testing.assert_close(grid[2], grid[7])
    fig = plot_traversal(grid, 5, tmp_path / "traversal.png", title="t")
    assert (tmp_path / "traversal.png").is_file() and fig is not None


def test_continuous_bernoulli_and_conv_nets():
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(16,), net="conv",
              likelihood="continuous-bernoulli")
    x = torch.rand(5, 1, 8, 8)
    assert vae.log_prob(x, 20).shape == (5,)
    assert vae.loss(x).isfinite()
    s = vae.sample(4)
    assert s.shape == (4, 1, 8, 8) and (s >= 0).all() and (s <= 1).all()
    assert VAE((1, 28, 28), latent_dim=2, net="conv").decode(torch.zeros(3, 2)).shape == (
        3, 1, 28, 28)
    with pytest.raises(ValueError, match=r"grey values in \[0, 1\]"):
        vae.log_prob(x * 2, 5)


# ------------------------------------------------------------------ errors
def test_bad_input_and_parameters_raise_clear_errors():
    vae = _tiny()
    with pytest.raises(ValueError, match=r"The 'x' argument of VAE.log_prob must hold binary "
                                         r"values \(0 or 1\).*Got a value 0.5"):
        vae.log_prob(torch.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match=re.escape(
            "The 'num_samples' parameter of VAE.log_prob must be an int >= 1. Got 0 instead.")):
        vae.log_prob(_binary(2), 0)
    with pytest.raises(ValueError, match="'chunk_size' parameter of VAE.log_prob"):
        vae.log_prob(_binary(2), 5, chunk_size=-1)
    with pytest.raises(ValueError, match=r"must have shape \(N, 1, 4, 4\).*Got shape "
                                         r"\(2, 1, 5, 5\)"):
        vae.loss(_binary(2, (1, 5, 5)))
    nan = _binary(2)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="contains NaN"):
        vae.elbo(nan)
    with pytest.raises(TypeError, match="The 'x' argument of VAE.log_prob must be a numpy "
                       "array, a torch tensor"):
        vae.log_prob("images.png")
    assert isinstance(vae.log_prob(np.zeros((2, 1, 4, 4)), 5), np.ndarray)  # numpy in and out
    with pytest.raises(ValueError, match="'likelihood' parameter of VAE"):
        VAE((1, 4, 4), likelihood="gaussian")
    with pytest.raises(ValueError, match="'latent_dim' parameter of VAE must be an int >= 1"):
        VAE((1, 4, 4), latent_dim=0)
    with pytest.raises(ValueError, match="'particles' parameter of VAE"):
        VAE((1, 4, 4), particles=0)


# ------------------------------------------------------------------ density training
def test_density_training_trains_scores_and_samples_a_vae(tmp_path, capsys):
    out = tmp_path / "vae"
    model, history = train_density(
        "vae", "digits", 2, out=out, lr=3e-3, samples_k=20, val_samples_k=5,
        test_size=50, options={"latent_dim": 4, "hidden": [32]})
    assert isinstance(model, VAE)
    m = history.metrics
    assert m["test_n"] == 50 and 0 < m["test_nll_nats"] < 64 * math.log(2)
    assert "IWAE estimate, 20 samples" in m["log_prob"]
    assert load_checkpoint(out / "model.pt").arch == "generative/vae"
    assert cli_main(["density", "score", "--checkpoint", str(out / "model.pt"), "--data",
                     "digits", "--binarize", "fixed", "--samples-k", "20", "--size", "50",
                     "--out", str(tmp_path / "score")]) == 0
    summary = json.loads((tmp_path / "score" / "score.json").read_text())
    nll = np.load(tmp_path / "score" / "scores.npy")
    assert summary["samples_k"] == 20 and nll.shape == (50,)
    assert summary["nll_nats"] == pytest.approx(m["test_nll_nats"], rel=1e-6)
    _, full = score_density(model, "digits", binarize="fixed", samples_k=3)
    assert full["n"] == 360
    assert cli_main(["density", "sample", "--checkpoint", str(out / "model.pt"), "-n", "4"]) == 0
    assert (out / "samples.png").is_file()


def test_bench_vae_smoke_times_both_loops():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_vae.py"
    spec = importlib.util.spec_from_file_location("bench_vae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--smoke", "--threads", "1"])
    assert result["ratio"] > 0 and result["examples"] == 512
    assert math.isfinite(result["ours_loss"]) and math.isfinite(result["tutorial_loss"])
    assert len(pyro.get_param_store()) == 0  # the tutorial's global parameters are cleared


def test_continuous_likelihood_reports_nats_only(tmp_path, capsys):
    """A continuous-Bernoulli VAE has a log-density (can be positive): no bits/dim anywhere,
    a clear error from bits_per_dim, and a note where the CLI would print it."""
    from generative.scoring import CONTINUOUS_NOTE, has_code_length

    out = tmp_path / "cb"
    model, history = train_density(
        "vae", "digits", 1, out=out, lr=3e-3, samples_k=5, val_samples_k=3,
        test_size=20, options={"latent_dim": 2, "hidden": [16],
                               "likelihood": "continuous-bernoulli"})
    assert model.pixels == "grey" and not has_code_length(model)
    assert has_code_length(_tiny())  # the Bernoulli VAE keeps its bits/dim
    m = history.metrics
    assert m["likelihood"] == "continuous" and "test_bits_per_dim" not in m
    assert all("val_bpd" not in e for e in history.epochs)
    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(ValueError, match=r"VAE.bits_per_dim is defined for "
                                         r"likelihood='bernoulli' only.*Report nats"):
        model.bits_per_dim(x, 5)
    capsys.readouterr()
    assert cli_main(["density", "score", "--checkpoint", str(out / "model.pt"), "--data",
                     "digits", "--samples-k", "5", "--size", "20",
                     "--out", str(tmp_path / "score")]) == 0
    printed = capsys.readouterr().out
    assert CONTINUOUS_NOTE in printed and "bits_per_dim" not in printed
    summary = json.loads((tmp_path / "score" / "score.json").read_text())
    assert summary["likelihood"] == "continuous" and "bits_per_dim" not in summary
