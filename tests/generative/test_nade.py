"""NADE's own proofs: the one pass against the naive D passes (both orderings, a realistic
size, the shared-state scoring pass), the activation option and old checkpoints, sampling
frequencies against the model's probabilities, the order-agnostic training loss as an
unbiased NLL estimate, and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from autoregressive_helpers import all_binary_images, flat_bits, randomise
from scipy import stats

from dunno.checkpoints import load_model, save_checkpoint
from generative.autoregressive import NADE

pytestmark = pytest.mark.one_thread


@pytest.mark.parametrize("order_agnostic", [False, True])
def test_nade_one_pass_equals_naive_d_passes(order_agnostic):
    model = randomise(NADE((1, 6, 5), hidden=7, order_agnostic=order_agnostic)).double()
    model.chunk_size = 4  # several chunks of the running sum, the last one partial
    x = (torch.rand(9, 1, 6, 5, dtype=torch.float64) < 0.4).double()
    torch.testing.assert_close(model.log_prob(x), model.log_prob_naive(x), rtol=0, atol=1e-10)


def test_nade_one_pass_equals_naive_on_a_realistic_size():
    torch.manual_seed(0)
    model = NADE((1, 28, 28), hidden=50)
    x = (torch.rand(4, 1, 28, 28) < 0.2).float()
    torch.testing.assert_close(model.log_prob(x), model.log_prob_naive(x), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_nade_shared_state_scoring_equals_the_d_pass_reference(activation):
    """The no-gradient pass (hidden states shared between the runs of zeros) gives the
    log-likelihoods of the naive D passes: float64 to rounding, float32 to 1e-4 nats; also
    for all-zero and all-one images, several chunks of images, and partial images."""
    from generative.autoregressive import _nade_states

    model = randomise(NADE((1, 6, 5), hidden=7, activation=activation)).double()
    x = (torch.rand(11, 1, 6, 5, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1)) < 0.3).double()
    x[0], x[1] = 0.0, 1.0
    with torch.no_grad():
        assert model._shares_states(model._flatten(x))  # the path under test
        naive = model.log_prob_naive(x)
        torch.testing.assert_close(model.log_prob(x), naive, rtol=0, atol=1e-10)
        v = model._flatten(x)
        chunked = _nade_states.shared_state_logits(v, model.W, model.c, model.V, model.b,
                                                   activation, chunk=3)
        torch.testing.assert_close(chunked, model._ordered_logits(v, None), rtol=0,
                                   atol=1e-12)
        part = model(x[:, :, :2])  # the first two rows: logits of the first 10 dimensions
        torch.testing.assert_close(part, model(x)[:, :, :2], rtol=0, atol=1e-12)
    dense = model.log_prob(x)  # with gradients: the chunked running sum
    assert dense.requires_grad
    torch.testing.assert_close(dense.detach(), naive, rtol=0, atol=1e-10)
    big = NADE((1, 28, 28), hidden=40, activation=activation)  # float32, D = 784
    xb = (torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2)) < 0.13).float()
    with torch.no_grad():
        assert float((big.log_prob(xb) - big.log_prob_naive(xb)).abs().max()) < 1e-4


def test_nade_activation_option_and_old_checkpoints(tmp_path):
    from dunno.checkpoints import build_model

    relu = NADE((1, 2, 3), hidden=4)
    assert relu.activation == "relu" and relu.config["activation"] == "relu"
    assert NADE((1, 2, 3), hidden=4, activation="sigmoid").config["activation"] == "sigmoid"
    with pytest.raises(ValueError, match="'activation' parameter of NADE must be one of "
                                         "'relu', 'sigmoid'. Got 'tanh' instead."):
        NADE((1, 2, 3), activation="tanh")
    # a config written before the option existed is a sigmoid NADE's
    old = {k: v for k, v in relu.config.items() if k != "activation"}
    assert build_model("generative/nade", old).activation == "sigmoid"
    path = save_checkpoint(tmp_path / "nade.pt", relu, arch=relu.arch, config=relu.config)
    assert load_model(path).activation == "relu"
    # ReLU units start with Kaiming's fan-in scale sqrt(2 / D), sigmoid ones with sqrt(1 / D)
    torch.manual_seed(0)
    w_relu = NADE((1, 28, 28), hidden=500).W.std().item()
    w_sig = NADE((1, 28, 28), hidden=500, activation="sigmoid").W.std().item()
    assert w_relu == pytest.approx(math.sqrt(2 / 784), rel=0.01)
    assert w_sig == pytest.approx(math.sqrt(1 / 784), rel=0.01)


def test_nade_samples_match_probabilities_chi_square():
    model = randomise(NADE((1, 2, 2), hidden=5), seed=4).eval()
    images = all_binary_images((1, 2, 2)).float()  # 16 states
    probs = model.log_prob(images).double().exp().detach()
    n = 20000
    draws = model.sample(n, generator=torch.Generator().manual_seed(0))  # (n, 1, 2, 2)
    codes = (flat_bits(draws) * (2 ** torch.arange(3, -1, -1))).sum(1)
    counts = torch.bincount(codes.long(), minlength=16).double()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    expected = probs / probs.sum() * n  # renormalised in float64 for scipy's sum check
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 0.01




def test_nade_training_loss_order_agnostic_is_an_unbiased_nll_estimate():
    """Averaged over many random (ordering, split) draws, the order-agnostic loss of a NADE
    with *no* dependence on the input (W = U = 0) equals the exact NLL."""
    model = NADE((1, 3, 3), hidden=4, order_agnostic=True).double()
    with torch.no_grad():
        model.W.zero_()
        model.b.copy_(torch.linspace(-1, 1, 9))
    x = (torch.rand(64, 1, 3, 3) < 0.5).double()
    exact = -model.log_prob(x).mean().item()
    model.train()
    estimate = np.mean([model.loss(x).item() for _ in range(400)])
    assert estimate == pytest.approx(exact, rel=0.02)


def test_nade_rejects_8bit_and_foreign_orderings():
    with pytest.raises(ValueError, match="pixels"):
        NADE((1, 4, 4), pixels="8bit")
    model = NADE((1, 2, 2), hidden=3)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="order_agnostic=True"):
        model.log_prob(x, order=[3, 2, 1, 0])
    with pytest.raises(ValueError, match="permutation"):
        NADE((1, 2, 2), hidden=3, order_agnostic=True).log_prob(x, order=[0, 0, 1, 2])


def test_log_prob_goes_through_forward_hooks():
    """``log_prob`` runs the pass through ``__call__``, so a forward hook sees it once per
    call, with the logits the likelihood is computed from (both scoring paths)."""
    model = randomise(NADE((1, 3, 4), hidden=6)).double()
    x = (torch.rand(5, 1, 3, 4, generator=torch.Generator().manual_seed(3)) < 0.4).double()
    seen = []
    handle = model.register_forward_hook(lambda m, args, out: seen.append(out))
    try:
        with torch.no_grad():
            shared = model.log_prob(x)  # the shared-state pass
        dense = model.log_prob(x)  # with gradients: the running sum
    finally:
        handle.remove()
    assert len(seen) == 2
    for out in seen:
        expected = -torch.nn.functional.binary_cross_entropy_with_logits(
            out, x, reduction="none").flatten(1).sum(1)
        torch.testing.assert_close(shared, expected.detach(), rtol=0, atol=1e-10)
    torch.testing.assert_close(dense.detach(), shared, rtol=0, atol=1e-10)
