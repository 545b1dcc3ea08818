"""Soft spectral normalisation with a Lipschitz coefficient.

Spectral normalisation (Miyato et al., 2018, "Spectral Normalization for Generative Adversarial
Networks", ICLR) divides a weight by its largest singular value ``sigma(W)``, estimated by one
step of power iteration per training forward pass. The *soft* variant used by SNGP (Liu et al.,
2020, "Simple and Principled Uncertainty Estimation with Deterministic Deep Learning via
Distance Awareness", NeurIPS) and DDU (Mukhoti et al., 2021, "Deterministic Neural Networks with
Appropriate Inductive Biases Capture Epistemic and Aleatoric Uncertainty") only rescales weights
whose norm exceeds a coefficient ``c``:

.. math::

    \\bar W = \\frac{W}{\\max(1, \\hat\\sigma(W) / c)},
    \\qquad \\hat\\sigma(W) = u^\\top W_{\\mathrm{mat}} v,

so every normalised layer has ``sigma(W_mat) <= c`` (up to the power-iteration error).

What is bounded: ``W_mat`` is the kernel reshaped to ``(out_channels, in_channels * kh * kw)``,
the quantity Miyato et al. normalise. For a ``kh x kw`` convolution this is not the operator
norm of the convolution itself (which DDU bounds with a power iteration on the convolution);
the operator norm is at most ``sqrt(kh * kw) * sigma(W_mat)`` (Tsuzuku et al., 2018), so the
reshaped bound is a bound on the operator up to that fixed factor. For 1x1 convolutions and
linear layers the two coincide.

The power-iteration vectors ``u`` and ``v`` are persistent buffers (saved in the state dict).
They are updated only in training mode; in eval mode the stored estimate is used, so eval-mode
outputs are deterministic.

Batch norm undoes a bound on the convolutions: in eval mode it is the per-channel affine map
``x -> gamma_c (x - mu_c) / sqrt(var_c + eps) + beta_c``, whose Lipschitz constant
``max_c |gamma_c| / sqrt(var_c + eps)`` is unbounded (a channel with a small running variance
is amplified without limit). :class:`SpectralBatchNorm2d` bounds it the same soft way
(van Amersfoort, Smith, Jesson, Key & Gal, 2021, "On Feature Collapse and Deep Kernel
Learning for Single Forward Pass Uncertainty", arXiv 2102.11409, Sec. 2.1), so that a network
of normalised convolutions, bounded batch norms, 1-Lipschitz activations and residual
connections is Lipschitz as a whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["SoftSpectralNorm", "SpectralBatchNorm2d", "soft_spectral_norm"]


class SoftSpectralNorm(nn.Module):
    """Parametrization ``W -> W / max(1, sigma(W_mat) / coeff)`` (Miyato et al. 2018; SNGP/DDU).

    Register it with :func:`soft_spectral_norm`. ``W`` has shape ``(out, ...)`` and is
    reshaped to ``W_mat`` of shape ``(out, prod(...))``.

    Parameters
    ----------
    weight : Tensor
        The weight being normalised ``(out, ...)``; used for shapes and the warm-up iterations.
    coeff : float
        The bound ``c > 0`` on the largest singular value of ``W_mat``.
    n_power_iterations : int
        Power-iteration steps per training forward (default 1).
    eps : float
        Guards the normalisation of ``u`` and ``v``.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        coeff: float,
        n_power_iterations: int = 1,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if not coeff > 0:
            raise ValueError(f"The 'coeff' parameter of SoftSpectralNorm must be > 0. Got {coeff}.")
        if n_power_iterations < 1:
            raise ValueError(
                "The 'n_power_iterations' parameter of SoftSpectralNorm must be an int >= 1. "
                f"Got {n_power_iterations} instead."
            )
        self.coeff = float(coeff)
        self.n_power_iterations = int(n_power_iterations)
        self.eps = eps
        w = weight.detach().flatten(1)  # (out, in * kh * kw)
        u = F.normalize(w.new_empty(w.shape[0]).normal_(), dim=0, eps=eps)  # (out,)
        v = F.normalize(w.new_empty(w.shape[1]).normal_(), dim=0, eps=eps)  # (in * kh * kw,)
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self._power_iteration(w, 15)  # warm start, as torch's spectral_norm does

    @torch.no_grad()
    def _power_iteration(self, w: torch.Tensor, n: int) -> None:
        for _ in range(n):
            self.v.copy_(F.normalize(w.t() @ self.u, dim=0, eps=self.eps))  # (in * kh * kw,)
            self.u.copy_(F.normalize(w @ self.v, dim=0, eps=self.eps))  # (out,)

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """The current estimate ``u^T W_mat v`` of the largest singular value (a scalar)."""
        w = weight.flatten(1)  # (out, in * kh * kw)
        u = self.u.clone(memory_format=torch.contiguous_format)
        v = self.v.clone(memory_format=torch.contiguous_format)
        return torch.dot(u, w @ v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The normalised weight, same shape as ``weight``."""
        if self.training:
            self._power_iteration(weight.detach().flatten(1), self.n_power_iterations)
        factor = torch.clamp(self.sigma(weight) / self.coeff, min=1.0)
        return weight / factor

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}, n_power_iterations={self.n_power_iterations}"


def soft_spectral_norm(
    module: nn.Module, coeff: float, name: str = "weight", n_power_iterations: int = 1
) -> nn.Module:
    """Register :class:`SoftSpectralNorm` on ``module.<name>`` and return ``module``.

    Afterwards ``module.weight`` is the normalised weight, the raw one is
    ``module.parametrizations.weight.original`` and the power-iteration state is
    ``module.parametrizations.weight[0]`` (Miyato et al. 2018; soft bound of Liu et al. 2020).
    """
    weight = getattr(module, name)
    parametrize.register_parametrization(
        module, name, SoftSpectralNorm(weight, coeff, n_power_iterations)
    )
    return module


class SpectralBatchNorm2d(nn.BatchNorm2d):
    r"""Batch norm with its Lipschitz constant softly bounded by ``coeff`` (van Amersfoort et
    al. 2021, DUE).

    ``(N, C, H, W) -> (N, C, H, W)``. With the running variance :math:`v_c`, the scale is

    .. math::

        \bar\gamma = \frac{\gamma}{\max(1, L / c)}, \qquad
        L = \max_c \frac{|\gamma_c|}{\sqrt{v_c + \epsilon}},

    and the layer is :class:`torch.nn.BatchNorm2d` with :math:`\bar\gamma` in place of
    :math:`\gamma` -- in training too (batch statistics normalise, the bound uses the running
    ones), so the eval-mode map is ``c``-Lipschitz. Parameters, buffers and state-dict keys
    are those of ``BatchNorm2d``; with a large ``coeff`` the layer *is* ``BatchNorm2d``.

    Parameters
    ----------
    num_features : int
        Channels ``C``.
    coeff : float
        The bound ``c > 0``.
    eps, momentum : float
        As in :class:`torch.nn.BatchNorm2d` (``momentum`` may not be None).
    """

    def __init__(self, num_features: int, coeff: float, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        if not coeff > 0:
            raise ValueError(
                f"The 'coeff' parameter of SpectralBatchNorm2d must be > 0. Got {coeff}.")
        if momentum is None:
            raise ValueError("The 'momentum' parameter of SpectralBatchNorm2d must be a float. "
                             "Got None.")
        self.coeff = float(coeff)

    def lipschitz(self) -> torch.Tensor:
        """``L = max_c |gamma_c| / sqrt(v_c + eps)`` of the unbounded layer (a scalar)."""
        return (self.weight.abs() * torch.rsqrt(self.running_var + self.eps)).max()

    def bounded_weight(self) -> torch.Tensor:
        """``gamma / max(1, L / coeff)``: ``(C,)``."""
        return self.weight / torch.clamp(self.lipschitz() / self.coeff, min=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        self._check_input_dim(x)
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean, self.running_var, self.bounded_weight(),
                            self.bias, self.training, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, coeff={self.coeff}"
