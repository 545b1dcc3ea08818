"""The proofs that the autoregressive models are what they say: the autoregressive property
(exact zero gradients to the present and future), exact normalisation over every image of a
tiny space, the Diagonal BiLSTM's recursion against its references, sampling frequencies,
bad input and checkpoints (NADE's own proofs: ``test_nade.py``)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from autoregressive_helpers import all_binary_images, flat_bits, randomise
from scipy import stats

from dunno.checkpoints import load_model, save_checkpoint
from generative.autoregressive import (
    AUTOREGRESSIVE_MODELS,
    NADE,
    DiagonalBiLSTM,
    PixelCNN,
    RowLSTM,
    causal_mask,
    create,
    skew,
    unskew,
)
from generative.autoregressive._diagonal import DiagonalRecursion

pytestmark = pytest.mark.one_thread


# name -> builder(image_shape, pixels); tiny widths keep the 4096-image sums cheap
TINY = {
    "nade": lambda shape, pixels: NADE(shape, hidden=12, pixels=pixels),
    "nade-oa": lambda shape, pixels: NADE(shape, hidden=12, order_agnostic=True, pixels=pixels),
    "pixelcnn": lambda shape, pixels: PixelCNN(shape, pixels, hidden=6, layers=2,
                                               output_hidden=12),
    "gated-pixelcnn": lambda shape, pixels: PixelCNN(shape, pixels, hidden=6, layers=2,
                                                     output_hidden=12, gated=True),
    "row-lstm": lambda shape, pixels: RowLSTM(shape, pixels, hidden=6, layers=2,
                                              output_hidden=12),
    "diagonal-bilstm": lambda shape, pixels: DiagonalBiLSTM(shape, pixels, hidden=6, layers=2,
                                                            output_hidden=12),
}
NOT_NADE = [k for k in TINY if not k.startswith("nade")]








# --------------------------------------------------------------------- autoregressive property
CASES = [(name, (1, 5, 5), "binary") for name in TINY] + [
    (name, (3, 5, 5), "8bit") for name in NOT_NADE
] + [(name, (3, 4, 4), "binary") for name in TINY]


def _dependencies(model, shape, pixels, trials: int = 4) -> torch.Tensor:
    """``(D, D)`` matrix ``dep[i, j] = sum over random inputs of |d logit_i / d u_j|`` in
    the model's order (for 8-bit pixels, logit_i is the sum of the 256 logits of dim i).
    Also checks, input by input, that every entry with ``j >= i`` is exactly zero.

    One backward pass: the batch holds ``D`` copies of each random input (examples never
    interact), and copy ``i`` back-propagates logit ``i`` only. Inputs are N(0, 4) so that
    the ReLUs of these tiny random networks are not all dead for every trial.
    """
    d = math.prod(shape)
    u = (torch.randn(trials, 1, *shape, dtype=torch.float64) * 2).expand(trials, d, *shape)
    u = u.reshape(trials * d, *shape).clone().requires_grad_(True)  # (T * D, C, H, W)
    logits = model(u)
    expected = (trials * d, 256, *shape) if pixels == "8bit" else (trials * d, *shape)
    assert logits.shape == expected
    per_dim = logits.sum(1) if pixels == "8bit" else logits  # (T * D, C, H, W)
    per_dim = per_dim.permute(0, 2, 3, 1).reshape(trials, d, d)  # (T, copy i, dim)
    picked = per_dim.diagonal(dim1=1, dim2=2)  # (T, D): logit i of copy i
    (grad,) = torch.autograd.grad(picked.sum(), u)
    jac = grad.permute(0, 2, 3, 1).reshape(trials, d, d)  # (T, i, j) in model order
    future = torch.triu(torch.ones(d, d, dtype=torch.bool))  # j >= i
    leaks = (jac != 0) & future
    assert not leaks.any(), (
        f"logit i depends on x_j for j >= i at (trial, i, j) = {torch.nonzero(leaks)[:5]}"
    )
    return jac.abs().sum(0)  # (D, D)


@pytest.mark.parametrize(("name", "shape", "pixels"), CASES,
                         ids=[f"{n}-{'x'.join(map(str, s))}-{p}" for n, s, p in CASES])
def test_autoregressive_property(name, shape, pixels):
    """d logit_i / d x_j == 0 exactly for every j >= i (model order), != 0 for some j < i;
    every pixel of a small image, every channel (raster order, R < G < B)."""
    torch.manual_seed(1)
    d = math.prod(shape)
    dep = torch.zeros(d, d, dtype=torch.float64)
    # a dependency shows in *some* random network: the ReLUs of a tiny one can all be off
    # at a pixel for every input, so up to three weight draws are pooled
    for seed in range(3):
        model = randomise(TINY[name](shape, pixels), seed=seed).double()
        dep += _dependencies(model, shape, pixels)
        if all(torch.any(dep[i, :i] != 0) for i in range(1, d)):
            break
    for i in range(1, d):
        assert torch.any(dep[i, :i] != 0), f"{name}: logit {i} sees no earlier dim"


@pytest.mark.parametrize("name", ["nade", "nade-oa", "gated-pixelcnn", "diagonal-bilstm"])
def test_receptive_field_is_the_whole_past(name):
    """NADE and the gated PixelCNN see every earlier pixel of a 5x5 image. The Diagonal
    BiLSTM does too (this checks its skew, both directions and the shift), except the last
    pixel of the previous row, which only the 7x7 input layer can reach (every feature of
    that row is computed before its last pixel is known)."""
    torch.manual_seed(2)
    shape = (1, 5, 5)
    model = randomise(TINY[name](shape, "binary")).double()
    dep = _dependencies(model, shape, "binary")
    for i in range(1, 25):
        blind = set(torch.nonzero(dep[i, :i] == 0).flatten().tolist())
        r, c = divmod(i, 5)
        allowed = {5 * r - 1} if name == "diagonal-bilstm" and c < 5 - 1 - 3 else set()
        assert blind <= allowed, f"{name}: pixel {(r, c)} is blind to dims {sorted(blind)}"


@pytest.mark.parametrize(("shape", "kernel_size"), [((1, 4, 8), 7), ((1, 5, 6), 3)])
def test_diagonal_bilstm_blind_spot_is_the_last_pixel_of_the_previous_row(shape, kernel_size):
    """The output at (r, c) never depends on pixel (r - 1, W - 1) when c < W - 1 - k // 2
    (c < W - 4 for the 7x7 input layer), and depends on every other earlier pixel: the
    right-to-left LSTM, the only path to the right in earlier rows, is read one row up,
    and no feature of row r - 1 or above sees the last pixel of row r - 1."""
    _, h, w = shape
    d = h * w
    reach = kernel_size // 2
    dep = torch.zeros(d, d, dtype=torch.float64)
    for seed in range(3):  # pool weight draws: a tiny network can miss a path by chance
        model = randomise(DiagonalBiLSTM(shape, hidden=6, layers=3, output_hidden=12,
                                          kernel_size=kernel_size), seed=seed).double()
        dep += _dependencies(model, shape, "binary")
    last_of_previous_row = {r: r * w - 1 for r in range(1, h)}
    for r in range(1, h):
        for c in range(w):
            i = r * w + c
            blind = set(torch.nonzero(dep[i, :i] == 0).flatten().tolist())
            expected = {last_of_previous_row[r]} if c < w - 1 - reach else set()
            assert blind == expected, f"pixel {(r, c)}: blind to {sorted(blind)}"
    # the case named in the docstring: 7x7 input layer, W = 8, row 2 against pixel (1, 7)
    if kernel_size == 7:
        seen = [bool(dep[2 * w + c, w + w - 1] != 0) for c in range(w)]
        assert seen == [False] * (w - 4) + [True] * 4


def _reference_module():
    """benchmarks/bench_pixelrnn.py, which keeps the skewed column loop that the Diagonal
    BiLSTM layer replaced."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pixelrnn.py"
    spec = importlib.util.spec_from_file_location("bench_pixelrnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log_prob_and_grads(model, x):
    model.zero_grad(set_to_none=True)
    log_p = model.log_prob(x)
    log_p.sum().backward()
    return log_p.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize(("shape", "pixels", "kernel_size"), [
    ((1, 5, 5), "binary", 7), ((1, 4, 7), "binary", 3), ((1, 7, 3), "binary", 5),
    ((1, 1, 6), "binary", 3), ((1, 6, 1), "binary", 3), ((3, 4, 5), "8bit", 3),
])
def test_diagonal_bilstm_equals_the_skewed_column_loop(shape, pixels, kernel_size):
    """The same state dict in the wavefront layer and in the skewed reference gives the same
    log-likelihoods and the same gradients of every parameter (float64: to rounding)."""
    ref_cls = _reference_module().ReferenceDiagonalBiLSTM
    torch.manual_seed(3)
    new = randomise(DiagonalBiLSTM(shape, pixels, hidden=6, layers=2, output_hidden=12,
                                    kernel_size=kernel_size), seed=4).double()
    ref = ref_cls(shape, pixels, hidden=6, layers=2, output_hidden=12,
                  kernel_size=kernel_size).double()
    ref.load_state_dict(new.state_dict())
    levels = 2 if pixels == "binary" else 256
    x = torch.randint(0, levels, (5, *shape)).double()
    lp_new, g_new = _log_prob_and_grads(new, x)
    lp_ref, g_ref = _log_prob_and_grads(ref, x)
    torch.testing.assert_close(lp_new, lp_ref, rtol=0, atol=1e-10)
    assert g_new.keys() == g_ref.keys()
    for k in g_ref:
        torch.testing.assert_close(g_new[k], g_ref[k], rtol=1e-9, atol=1e-10, msg=k)


def test_diagonal_bilstm_equals_the_reference_in_float32():
    """Default-width model on 12x12 binary images, float32: log p and gradients agree to a
    relative 1e-5 (the two compute the same sums in a different order)."""
    ref_cls = _reference_module().ReferenceDiagonalBiLSTM
    torch.manual_seed(0)
    new = DiagonalBiLSTM((1, 12, 12), hidden=16, layers=3)
    ref = ref_cls((1, 12, 12), hidden=16, layers=3)
    ref.load_state_dict(new.state_dict())
    x = (torch.rand(6, 1, 12, 12) < 0.3).float()
    lp_new, g_new = _log_prob_and_grads(new, x)
    lp_ref, g_ref = _log_prob_and_grads(ref, x)
    assert float((lp_new - lp_ref).abs().max() / lp_ref.abs().max()) < 1e-5
    for k in g_ref:
        scale = float(g_ref[k].abs().max())
        assert float((g_new[k] - g_ref[k]).abs().max()) <= 1e-5 * scale, k


def test_diagonal_bilstm_trains_under_cpu_autocast():
    """Under bfloat16 autocast the recursion runs in the input layer's dtype; the loss is the
    float32 loss to bfloat16 accuracy and every parameter gets a float32 gradient."""
    torch.manual_seed(0)
    model = DiagonalBiLSTM((1, 6, 6), hidden=4, layers=2)
    x = (torch.rand(3, 1, 6, 6) < 0.3).float()
    with torch.no_grad():
        full = model.loss(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(x)
    loss.backward()
    assert abs(float(loss.detach()) - float(full)) < 0.01 * float(full)
    for p in model.parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()


def test_diagonal_recursion_backward_passes_gradcheck():
    """The hand-written backward of the column recursion against finite differences, on a
    3x4 image (both directions, the shift and the image borders)."""
    g = torch.Generator().manual_seed(0)
    cx, hd = 3, 2
    xs = torch.randn(cx, 3, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(2, 4 * hd, cx + 2 * hd, generator=g, dtype=torch.float64)
    bias = torch.randn(2, 4 * hd, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        DiagonalRecursion.apply, (xs, kernel.requires_grad_(), bias.requires_grad_()))


def test_diagonal_recursion_on_one_pixel_is_one_lstm_step():
    """A 1x1 image: no neighbours, so the output is h of direction 0 (direction 1 goes to
    the row below, outside the image): o * tanh(i * g) with [o, f, i, g] from x."""
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(3, 1, 1, 4, generator=g, dtype=torch.float64)  # (F_x, H, W, N)
    kernel = torch.randn(2, 8, 3 + 4, generator=g, dtype=torch.float64)
    bias = torch.randn(2, 8, generator=g, dtype=torch.float64)
    z = kernel[0, :, :3] @ xs.view(3, 4) + bias[0].unsqueeze(1)  # (4h, N)
    o, i, gg = torch.sigmoid(z[:2]), torch.sigmoid(z[4:6]), z[6:]  # f: no left cell
    expected = o * torch.tanh(i * torch.tanh(gg))
    out = DiagonalRecursion.apply(xs, kernel, bias)
    torch.testing.assert_close(out.view(2, 4), expected, rtol=1e-14, atol=1e-15)


def test_pixelcnn_has_the_blind_spot_and_gated_does_not():
    """The 2016a PixelCNN's masked 3x3 stack misses pixels up and to the right; the gated
    vertical/horizontal stacks see them (why the gated variant exists)."""
    torch.manual_seed(0)
    shape = (1, 7, 7)
    u = (torch.randn(1, *shape, dtype=torch.float64) * 2).requires_grad_(True)
    seen = {}
    for gated in (False, True):
        model = randomise(PixelCNN(shape, hidden=6, layers=3, gated=gated,
                                    kernel_size=3)).double()
        (grad,) = torch.autograd.grad(model(u)[0, 0, 3, 1], u)
        seen[gated] = grad[0, 0, 2, 4] != 0  # 1 row up, 3 columns right
    assert not seen[False] and seen[True]


# --------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("name", list(TINY))
def test_sums_to_one_over_all_3x4_binary_images(name):
    model = randomise(TINY[name]((1, 3, 4), "binary")).double().eval()
    images = all_binary_images((1, 3, 4))  # (4096, 1, 3, 4)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(images), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", list(TINY))
def test_sums_to_one_over_all_rgb_binary_images(name):
    """Colour masks: 3 binary channels of a 2x2 image, again 4096 images."""
    model = randomise(TINY[name]((3, 2, 2), "binary")).double().eval()
    images = all_binary_images((3, 2, 2))
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(images), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", NOT_NADE)
def test_8bit_sums_to_one_over_all_two_pixel_images(name):
    """256-way softmax: all 65536 images of a 1x2 8-bit image."""
    model = randomise(TINY[name]((1, 1, 2), "8bit")).double().eval()
    values = torch.arange(256, dtype=torch.float64)
    images = torch.cartesian_prod(values, values).view(-1, 1, 1, 2)  # (65536, 1, 1, 2)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(images.to(torch.uint8)), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_order_agnostic_nade_normalises_under_any_ordering_and_as_an_ensemble():
    model = randomise(NADE((1, 3, 4), hidden=8, order_agnostic=True)).double().eval()
    images = all_binary_images((1, 3, 4))
    order = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        raster = model.log_prob(images)
        other = model.log_prob(images, order=order)
        ens = model.ensemble_log_prob(images, 4, generator=torch.Generator().manual_seed(0))
    for lp in (raster, other, ens):
        assert torch.logsumexp(lp, 0).exp().item() == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(raster, other)  # a different model of the same data


# --------------------------------------------------------------------- generic sampling
@pytest.mark.parametrize("name", ["pixelcnn", "diagonal-bilstm"])
def test_ancestral_sampler_matches_probabilities_chi_square(name):
    model = randomise(TINY[name]((1, 2, 2), "binary"), seed=2).eval()
    images = all_binary_images((1, 2, 2)).float()
    with torch.no_grad():
        probs = model.log_prob(images).double().exp()
    n = 6000
    draws = model.sample(n, generator=torch.Generator().manual_seed(1))
    codes = (flat_bits(draws) * (2 ** torch.arange(3, -1, -1))).sum(1)
    counts = torch.bincount(codes.long(), minlength=16).double()
    expected = probs / probs.sum() * n
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 0.01


def test_8bit_rgb_sampler_draws_each_channel_from_its_conditional():
    """A 1x1 RGB image: the three channels are drawn in order R, G, B; the frequencies of R
    match its 256-way softmax."""
    model = randomise(TINY["pixelcnn"]((3, 1, 1), "8bit"), seed=5).eval()
    n = 8000
    draws = model.sample(n, generator=torch.Generator().manual_seed(0))  # (n, 3, 1, 1)
    assert draws.shape == (n, 3, 1, 1)
    assert torch.all(draws == draws.round()) and draws.min() >= 0 and draws.max() <= 255
    with torch.no_grad():
        p_red = torch.softmax(model(torch.zeros(1, 3, 1, 1))[0, :, 0, 0, 0].double(), 0)
    counts = torch.bincount(draws[:, 0, 0, 0].long(), minlength=256).double()
    # pool the categories into 16 bins of 16 values for enough counts per cell
    obs, exp = counts.view(16, 16).sum(1), (p_red / p_red.sum() * n).view(16, 16).sum(1)
    assert stats.chisquare(obs.numpy(), exp.numpy()).pvalue > 0.01
    assert torch.isfinite(model.log_prob(draws)).all()


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", list(AUTOREGRESSIVE_MODELS))
def test_non_binary_data_to_a_bernoulli_model_is_a_clear_error(name):
    model = create(name, (1, 4, 4), hidden=4, **({} if name == "nade" else {"layers": 1}))
    grey = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="binary pixels.*Binarize"):
        model.log_prob(grey)
    with pytest.raises(ValueError, match="Binarize"):
        model.loss(torch.full((1, 1, 4, 4), 2, dtype=torch.uint8))


@pytest.mark.parametrize("name", list(AUTOREGRESSIVE_MODELS))
def test_wrong_image_size_is_a_clear_error(name):
    model = create(name, (1, 4, 4), hidden=4, **({} if name == "nade" else {"layers": 1}))
    with pytest.raises(ValueError, match=r"built for images of shape \(N, 1, 4, 4\).*1x5x5"):
        model.log_prob(torch.zeros(2, 1, 5, 5))
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(torch.zeros(1, 4, 4))


@pytest.mark.parametrize("name", NOT_NADE)
def test_8bit_models_need_integer_values(name):
    model = TINY[name]((1, 3, 3), "8bit")
    with pytest.raises(ValueError, match=r"non-integer.*\(x \* 255\)\.round\(\)"):
        model.log_prob(torch.rand(2, 1, 3, 3))
    with pytest.raises(ValueError, match="0..255"):
        model.log_prob(torch.full((2, 1, 3, 3), 256.0))
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob(torch.full((2, 1, 3, 3), float("nan")))
    ok = torch.randint(0, 256, (2, 1, 3, 3))
    torch.testing.assert_close(model.log_prob(ok), model.log_prob(ok.to(torch.uint8)))
    torch.testing.assert_close(model.log_prob(ok), model.log_prob(ok.float()))


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="'hidden' parameter of NADE must be an int >= 1"):
        NADE((1, 4, 4), hidden=0)
    with pytest.raises(ValueError, match="image_shape"):
        PixelCNN((2, 4, 4))
    with pytest.raises(ValueError, match="pixels"):
        RowLSTM((1, 4, 4), pixels="float")
    with pytest.raises(ValueError, match="odd"):
        PixelCNN((1, 4, 4), kernel_size=4)
    with pytest.raises(ValueError, match="Unknown autoregressive model"):
        create("wavenet", (1, 4, 4))


# --------------------------------------------------------------------- pieces
def test_masks_type_a_and_b_with_colour_groups():
    rgb = torch.arange(3)
    a = causal_mask((3, 3), "A", rgb, rgb)  # (3, 3, 3, 3)
    b = causal_mask((3, 3), "B", rgb, rgb)
    torch.testing.assert_close(a[0, 0], torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    # centre: output colour o sees input colours < o (A) / <= o (B)
    torch.testing.assert_close(a[:, :, 1, 1], torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]]))
    torch.testing.assert_close(b[:, :, 1, 1], torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1]]))
    assert torch.equal(a[:, :, 2], torch.zeros(3, 3, 3)) and torch.equal(a[:, :, 1, 2],
                                                                         torch.zeros(3, 3))


def test_skew_and_unskew_are_inverse_and_put_diagonals_in_columns():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    s = skew(x)  # (1, 1, 3, 6)
    assert s.shape == (1, 1, 3, 6)
    assert torch.equal(unskew(s, 4), x)
    # column j of the skewed map holds pixels (r, j - r)
    assert s[0, 0, :, 2].tolist() == [2.0, 5.0, 8.0]


@pytest.mark.parametrize("name", list(TINY))
def test_checkpoint_round_trip_rebuilds_the_same_model(name, tmp_path):
    model = randomise(TINY[name]((1, 4, 4), "binary")).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, arch=model.arch, config=model.config)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    x = (torch.rand(3, 1, 4, 4) < 0.5).float()
    torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x), rtol=0, atol=0)


def test_loss_is_mean_nll_and_decreases_with_training():
    torch.manual_seed(0)
    x = (torch.rand(64, 1, 4, 4) < torch.linspace(0.1, 0.9, 16).view(1, 1, 4, 4)).float()
    for name in ("nade", "pixelcnn", "row-lstm"):
        model = TINY[name]((1, 4, 4), "binary")
        assert model.loss(x).item() == pytest.approx(-model.log_prob(x).mean().item())
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        first = model.loss(x).item()
        for _ in range(60):
            opt.zero_grad()
            model.loss(x).backward()
            opt.step()
        assert model.loss(x).item() < first - 1.0
        assert model.bits_per_dim(x).mean().item() == pytest.approx(
            model.loss(x).item() / (16 * math.log(2)), rel=1e-5)
