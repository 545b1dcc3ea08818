"""NADE's no-gradient scoring pass (hidden states shared between the runs of zeros, built as
bag sums of table rows) against the D-pass reference and the dense running sum, on the
cases its bookkeeping has to get right: images without ones, images of ones only, ones
counts on and off the group boundaries, one image, a batch of very different images, several
chunks, partial images, padded and unpadded hidden sizes, both activations, both dtypes."""

from __future__ import annotations

import pytest
import torch

from generative.autoregressive import NADE, _nade_states


def _model(shape=(1, 5, 6), hidden=7, activation="relu", seed=0) -> NADE:
    g = torch.Generator().manual_seed(seed)
    model = NADE(shape, hidden=hidden, activation=activation).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return model


def _images(n, shape=(1, 5, 6), p=0.3, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g, dtype=torch.float64) < p).double()


def _check(model: NADE, x: torch.Tensor, **kwargs) -> None:
    """Shared-state logits equal the dense running sum's (1e-12) and the log-likelihoods
    the D passes' (1e-10), in float64."""
    with torch.no_grad():
        v = model._flatten(x)
        assert model._shares_states(v)
        shared = _nade_states.shared_state_logits(v, model.W, model.c, model.V, model.b,
                                                  model.activation, **kwargs)
        torch.testing.assert_close(shared, model._ordered_logits(v, None), rtol=0,
                                   atol=1e-12)
        torch.testing.assert_close(model.log_prob(x), model.log_prob_naive(x), rtol=0,
                                   atol=1e-10)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_edge_images_zero_ones_single_and_mixed(activation):
    model = _model(activation=activation)
    d = model.num_dims  # 30
    zeros = torch.zeros(3, 1, 5, 6, dtype=torch.float64)
    ones = torch.ones(2, 1, 5, 6, dtype=torch.float64)
    _check(model, zeros)  # no ones at all: one state per image, no carries
    _check(model, ones)  # every dimension a one: the most groups
    _check(model, zeros[:1])  # one image
    _check(model, ones[:1])
    # numbers of ones on and next to the group boundaries (multiples of GROUP), in one batch
    group = _nade_states.GROUP
    counts = [0, 1, group - 1, group, group + 1, 2 * group, 2 * group + 1, d - 1, d]
    rows = []
    for k, count in enumerate(counts):
        g = torch.Generator().manual_seed(k)
        row = torch.zeros(d, dtype=torch.float64)
        row[torch.randperm(d, generator=g)[:count]] = 1.0
        rows.append(row)
    mixed = torch.stack(rows).view(-1, 1, 5, 6)
    _check(model, mixed)
    _check(model, mixed.flip(0))  # the order of the images does not matter
    _check(model, mixed, chunk=2)  # several chunks, each with its own carries
    # ones only in the last dimension / only in the first
    last = torch.zeros(2, d, dtype=torch.float64)
    last[0, -1] = 1.0
    last[1, 0] = 1.0
    _check(model, last.view(-1, 1, 5, 6))


@pytest.mark.parametrize("hidden", [1, 7, 8, 16, 33])
def test_hidden_sizes_padded_to_whole_vectors(hidden):
    """The table and V are padded to rows of 64 bytes (8 float64 values) with zeros; any
    hidden size gives the dense pass's logits."""
    model = _model(hidden=hidden, seed=hidden)
    _check(model, _images(7, seed=hidden))


def test_partial_images_and_random_batches():
    model = _model(shape=(3, 4, 3), hidden=9)  # three channels, D = 36
    x = _images(13, shape=(3, 4, 3), p=0.45, seed=3)
    _check(model, x)
    with torch.no_grad():
        part = model(x[:, :, :2])  # the first two rows: logits of the first 18 dimensions
        torch.testing.assert_close(part, model(x)[:, :, :2], rtol=0, atol=1e-12)


@pytest.mark.parametrize("block", [1, 2, 4, 5])
def test_states_in_blocks_of_images(monkeypatch, block):
    """The states are built, activated and multiplied a block of images at a time: any block
    size, a last block shorter than the others, and blocks inside chunks of images give the
    dense pass's logits; images of zeros and of ones at a block's edges included."""
    monkeypatch.setattr(_nade_states, "STATES_BLOCK", block)
    model = _model(hidden=9, seed=5)
    x = _images(11, p=0.4, seed=6)
    x[0], x[block % 11], x[10] = 0.0, 1.0, 0.0
    _check(model, x)
    _check(model, x, chunk=3)
    _check(model, x[:1])


def test_float32_at_full_size_within_1e4_nats():
    """NADE-500 on 28x28 in float32 (the benchmark's model) against the D passes."""
    torch.manual_seed(0)
    model = NADE((1, 28, 28), hidden=500)
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(3, 1, 28, 28, generator=g) < 0.13).float()
    x[2] = 0.0
    x[2, 0, 27, 27] = 1.0  # one image with a single one, in the last pixel
    with torch.no_grad():
        assert model._shares_states(model._flatten(x))
        diff = (model.log_prob(x) - model.log_prob_naive(x)).abs().max()
    assert float(diff) < 1e-4


def test_shared_state_path_needs_binary_values():
    """``forward`` takes unchecked inputs: values other than 0/1 take the dense pass."""
    model = _model()
    with torch.no_grad():
        v = model._flatten(_images(2))
        assert model._shares_states(v)
        v[0, 0] = 0.5
        assert not model._shares_states(v)
        v[0, 0] = float("nan")
        assert not model._shares_states(v)
