"""The matrix products of the Diagonal BiLSTM: oneDNN's float32 products against torch.mm,
the 1x1 layer's hand-written backward against finite differences and autograd, and the
column recursion with and without oneDNN, and with and without the compiled cell
arithmetic."""

from __future__ import annotations

import pytest
import torch

import generative.autoregressive._cells as cells
import generative.autoregressive._diagonal as diagonal
from generative.autoregressive._diagonal import DiagonalRecursion
from generative.autoregressive._products import FeatureLinear, mm, mm_nt, use_onednn

pytestmark = pytest.mark.one_thread

needs_onednn = pytest.mark.skipif(not use_onednn(torch.zeros(1)),
                                  reason="this torch build has no oneDNN products")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@needs_onednn
@pytest.mark.parametrize(("m", "k", "p"), [(64, 65, 2800), (64, 64, 100), (3, 5, 7), (1, 32, 9)])
def test_onednn_products_equal_torch_mm_in_float32(m, k, p):
    g = torch.Generator().manual_seed(m + k + p)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, p, generator=g)
    exact = a.double() @ b.double()
    # both sum over K in float32: within a few float32 roundings of the exact product
    assert _rel(mm(a, b, True), exact) < 1e-6
    assert _rel(mm(a, b, True), torch.mm(a, b)) < 1e-6
    a2, c = torch.randn(m, p, generator=g), torch.randn(k, p, generator=g)
    assert _rel(mm_nt(a2, c, True), a2.double() @ c.double().t()) < 1e-6  # a sum over P
    assert _rel(mm_nt(a2, c, True), torch.mm(a2, c.t())) < 1e-6


def test_products_of_empty_operands_and_other_dtypes_use_torch_mm():
    assert mm(torch.randn(3, 4), torch.randn(4, 0), True).shape == (3, 0)
    assert torch.equal(mm_nt(torch.randn(3, 0), torch.randn(5, 0), True), torch.zeros(3, 5))
    assert not use_onednn(torch.zeros(1, dtype=torch.float64))
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    assert torch.equal(mm(a, b, use_onednn(a)), torch.mm(a, b))


@pytest.mark.parametrize("residual", [False, True])
def test_feature_linear_backward_passes_gradcheck(residual):
    g = torch.Generator().manual_seed(2)
    args = [torch.randn(4, 11, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)]
    if residual:
        args.append(torch.randn(3, 11, generator=g, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(FeatureLinear.apply, tuple(args))


def test_feature_linear_in_float32_equals_autograd_of_addmm():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 5000, generator=g, requires_grad=True)
    w = torch.randn(32, 16, generator=g, requires_grad=True)
    b = torch.randn(32, generator=g, requires_grad=True)
    r = torch.randn(32, 5000, generator=g, requires_grad=True)
    up = torch.randn(32, 5000, generator=g)
    ours = torch.autograd.grad(FeatureLinear.apply(x, w, b, r), (x, w, b, r), up)
    plain = torch.autograd.grad(torch.addmm(r, w, x) + b.unsqueeze(1), (x, w, b, r), up)
    for a, e in zip(ours, plain, strict=True):
        assert _rel(a, e) < 1e-5


def _recursion_case(height, width, n, seed, cx=8, hd=4):
    """``run() -> (output, grad_x, grad_kernel, grad_bias)`` of the column recursion on a
    seeded float32 case, and its inputs ``(xs, kernel, bias)``."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(cx, height, width, n, generator=g, requires_grad=True)
    kernel = (0.5 * torch.randn(2, 4 * hd, cx + 2 * hd, generator=g)).requires_grad_()
    bias = (0.5 * torch.randn(2, 4 * hd, generator=g)).requires_grad_()
    up = torch.randn(hd, height, width, n, generator=g)

    def run():
        out = DiagonalRecursion.apply(xs, kernel, bias)
        return (out.detach(), *torch.autograd.grad(out, (xs, kernel, bias), up))

    return run, (xs, kernel, bias)


@needs_onednn
def test_diagonal_recursion_in_float32_equals_itself_without_onednn(monkeypatch):
    """The column recursion with oneDNN's products and with torch.mm: the same output and
    gradients to float32 rounding (a 9x7 image, both directions, the borders)."""
    run, _ = _recursion_case(9, 7, 6, seed=5)
    with_onednn = run()
    monkeypatch.setattr(diagonal, "use_onednn", lambda t: False)
    without = run()
    for a, e in zip(with_onednn, without, strict=True):
        assert _rel(a, e) < 1e-5


needs_cells = pytest.mark.skipif(not cells.available(torch.zeros(1)),
                                 reason="no C compiler: the cell arithmetic runs eagerly")


@needs_cells
@pytest.mark.parametrize(("height", "width", "n"), [(9, 7, 6), (5, 11, 3), (1, 1, 2), (4, 4, 1)])
def test_diagonal_recursion_with_compiled_cells_equals_the_eager_arithmetic(
        monkeypatch, height, width, n):
    """The one-pass compiled cell arithmetic and the eager operations: the same output and
    gradients to float32 rounding (tall, wide, one-pixel and square images)."""
    run, (xs, kernel, bias) = _recursion_case(height, width, n, seed=height * 31 + width)
    compiled = run()
    monkeypatch.setattr(diagonal, "cells_available", lambda t: False)
    eager = run()
    for a, e in zip(compiled, eager, strict=True):
        assert _rel(a, e) < 1e-5
    # and both against float64 (the eager path; the gradient check's precision)
    with torch.no_grad():
        exact = DiagonalRecursion.apply(xs.double(), kernel.double(), bias.double())
    assert _rel(compiled[0].double(), exact) < 1e-5


def test_cells_compile_into_the_cache_and_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("DUNNO_KERNELS", "0")
    assert cells.kernel_path.__wrapped__() is None
    monkeypatch.delenv("DUNNO_KERNELS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # no compiler on the path: the eager arithmetic
    monkeypatch.delenv("CC", raising=False)
    assert cells.kernel_path.__wrapped__() is None
    assert not list(tmp_path.rglob("*.so"))
    assert not cells.available(torch.zeros(1, dtype=torch.float64))  # float64: eager


@needs_cells
def test_cells_build_from_source_in_a_fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = cells.kernel_path.__wrapped__()
    assert path is not None and path.parent == tmp_path / "dunno" / "kernels"
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [path.name]
    assert cells.kernel_path.__wrapped__() == path  # built once: the second call reuses it


@needs_cells
def test_compiled_cells_stay_finite_and_accurate_when_the_gates_saturate(monkeypatch):
    """Pre-activations in the hundreds: sigma must not overflow in the compiled loop (its
    argument is clamped), and both paths stay within float32 cancellation of float64."""
    g = torch.Generator().manual_seed(0)
    cx, hd = 8, 4
    xs = 50 * torch.randn(cx, 6, 5, 3, generator=g)
    kernel, bias = 20 * torch.randn(2, 4 * hd, cx + 2 * hd, generator=g), 20 * torch.randn(
        2, 4 * hd, generator=g)
    up = torch.randn(hd, 6, 5, 3, generator=g)

    def run(dtype):
        x, k = xs.to(dtype).requires_grad_(), kernel.to(dtype).requires_grad_()
        out = DiagonalRecursion.apply(x, k, bias.to(dtype))
        return (out.detach(), *torch.autograd.grad(out, (x, k), up.to(dtype)))

    exact = run(torch.float64)
    compiled = run(torch.float32)
    monkeypatch.setattr(diagonal, "cells_available", lambda t: False)
    eager = run(torch.float32)
    for c, e, x in zip(compiled, eager, exact, strict=True):
        assert torch.isfinite(c).all()
        assert _rel(c.double(), x) < 1e-3 and _rel(e.double(), x) < 1e-3


@needs_cells
def test_loading_the_cells_leaves_subnormal_numbers_alone():
    """A library linked with -ffast-math would switch the process to flush-to-zero when
    loaded; subnormal float32 arithmetic must still work after it is."""
    assert cells._library() is not None
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # subnormal in float32
    assert float(tiny * 1.0) > 0 and float(tiny + tiny) > 0
    import numpy as np
    assert np.float32(1e-40) * np.float32(1.0) > 0
