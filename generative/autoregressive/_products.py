r"""Matrix products of the Diagonal BiLSTM on features laid out as ``(F, P)`` (features,
pixels x batch), run by oneDNN where it can.

On CPU in float32, :func:`mm` is oneDNN's product (``torch.ops.mkldnn._linear_pointwise``:
``a`` as the input of a linear layer, ``b^T`` as its weight), which uses AVX-512 wherever
the CPU has it; ``torch.mm`` goes to MKL, whose kernels are AVX2 on non-Intel CPUs: on the
AMD EPYC of the benchmarks the per-diagonal products of :mod:`._diagonal` ran at about 110
GFLOP/s with MKL and 210-230 with oneDNN (``benchmarks/README.md``). Both sum each entry
over ``K`` in float32; elsewhere (other dtypes, other devices, a build without oneDNN) the
same products are ``torch.mm``.
"""

from __future__ import annotations

import torch

__all__ = ["FeatureLinear", "mm", "mm_nt", "use_onednn"]

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def use_onednn(t: torch.Tensor) -> bool:
    """Whether :func:`mm` and :func:`mm_nt` multiply ``t``'s dtype and device with oneDNN."""
    return _ONEDNN and t.device.type == "cpu" and t.dtype == torch.float32


def mm(a: torch.Tensor, b: torch.Tensor, onednn: bool) -> torch.Tensor:
    """``a (M, K) @ b (K, P)`` -> a new row-major ``(M, P)`` (``a`` and ``b`` row-major)."""
    if onednn and a.numel() and b.numel():  # oneDNN refuses empty operands
        return torch.ops.mkldnn._linear_pointwise(a, b.t(), None, "none", [], "")
    return torch.mm(a, b)


def mm_nt(a: torch.Tensor, b: torch.Tensor, onednn: bool) -> torch.Tensor:
    """``a (M, P) @ b (K, P)^T`` -> a new row-major ``(M, K)`` (a sum over ``P``)."""
    if onednn and a.numel() and b.numel():
        return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    return torch.mm(a, b.t())


class FeatureLinear(torch.autograd.Function):
    r"""``apply(x (K, P), weight (M, K), bias (M,), residual (M, P) or None) -> (M, P)``:
    :math:`y = W x + b\,(+ r)`, a 1x1 convolution on features laid out as ``(F, P)``; its
    backward pass (:math:`\partial W = g x^T`, :math:`\partial x = W^T g`,
    :math:`\partial b = \sum_P g`) uses :func:`mm` / :func:`mm_nt`."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual=None):
        ctx.save_for_backward(x, weight)
        ctx.has_residual = residual is not None
        if residual is None:
            return torch.addmm(bias.unsqueeze(1), weight, x)
        return torch.addmm(residual, weight, x).add_(bias.unsqueeze(1))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()  # under autocast, the dtype of the forward's product
        x, weight = x.to(grad.dtype), weight.to(grad.dtype)
        onednn = use_onednn(grad)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = mm(weight.t().contiguous(), grad, onednn)
        if ctx.needs_input_grad[1]:
            grad_w = mm_nt(grad, x.contiguous(), onednn)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(1)
        return grad_x, grad_w, grad_b, grad if ctx.has_residual else None
