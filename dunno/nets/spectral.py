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

Two things can be bounded for a convolution:

* :class:`SoftSpectralNorm` (:func:`soft_spectral_norm`) bounds ``W_mat``, the kernel reshaped
  to ``(out_channels, in_channels * kh * kw)``, the quantity Miyato et al. normalise. This is
  not the operator norm of the convolution: that is at most ``sqrt(kh * kw) * sigma(W_mat)``
  (Tsuzuku et al., 2018, "Lipschitz-Margin Training", NeurIPS), so the bound holds on the
  operator only up to that factor (3 for a 3x3 kernel). For 1x1 convolutions and linear layers
  the two coincide.
* :class:`ConvSpectralNorm` (:func:`conv_spectral_norm`) bounds the operator norm of the
  convolution itself, the map ``R^{C_in x H x W} -> R^{C_out x H' x W'}`` at a given input size,
  by power iteration through the convolution and its transpose (Gouk, Frank, Pfahringer &
  Cree, 2021, "Regularisation of Neural Networks by Enforcing Lipschitz Continuity", Machine
  Learning; Behrmann et al., 2019, "Invertible Residual Networks", ICML). This is what DDU
  bounds, and it makes ``c`` the layer's actual Lipschitz constant.

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

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from dunno.validation import check_int

__all__ = [
    "ConvSpectralNorm",
    "SoftSpectralNorm",
    "SpectralBatchNorm2d",
    "conv_spectral_norm",
    "soft_spectral_norm",
]


class _SoftSpectralBound(nn.Module, ABC):
    """Shared by the two parametrizations: ``W -> W / max(1, sigma_hat / coeff)``, with
    ``sigma_hat`` from persistent power-iteration vectors ``u``, ``v`` advanced
    ``n_power_iterations`` steps per training-mode forward (subclasses define the operator)."""

    def __init__(self, coeff: float, n_power_iterations: int, eps: float) -> None:
        super().__init__()
        owner = type(self).__name__
        if not coeff > 0:
            raise ValueError(f"The 'coeff' parameter of {owner} must be > 0. Got {coeff}.")
        check_int(n_power_iterations, "n_power_iterations", owner, low=1)
        self.coeff = float(coeff)
        self.n_power_iterations = n_power_iterations
        self.eps = eps

    @abstractmethod
    def _power_iteration(self, weight: torch.Tensor, n: int) -> None:
        """Advance ``u`` and ``v`` by ``n`` steps for the (detached) ``weight``."""

    @abstractmethod
    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """The current estimate ``<u, A v>`` of the largest singular value (a scalar)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The normalised weight, same shape as ``weight``."""
        if self.training:
            self._power_iteration(weight.detach(), self.n_power_iterations)
        factor = torch.clamp(self.sigma(weight) / self.coeff, min=1.0)
        return weight / factor

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}, n_power_iterations={self.n_power_iterations}"


class SoftSpectralNorm(_SoftSpectralBound):
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
        super().__init__(coeff, n_power_iterations, eps)
        w = weight.detach().flatten(1)  # (out, in * kh * kw)
        u = F.normalize(w.new_empty(w.shape[0]).normal_(), dim=0, eps=eps)  # (out,)
        v = F.normalize(w.new_empty(w.shape[1]).normal_(), dim=0, eps=eps)  # (in * kh * kw,)
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self._power_iteration(weight.detach(), 15)  # warm start, as torch's spectral_norm does

    @torch.no_grad()
    def _power_iteration(self, weight: torch.Tensor, n: int) -> None:
        w = weight.flatten(1)  # (out, in * kh * kw)
        for _ in range(n):
            self.v.copy_(F.normalize(w.t() @ self.u, dim=0, eps=self.eps))  # (in * kh * kw,)
            self.u.copy_(F.normalize(w @ self.v, dim=0, eps=self.eps))  # (out,)

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """The current estimate ``u^T W_mat v`` of the largest singular value (a scalar)."""
        w = weight.flatten(1)  # (out, in * kh * kw)
        u = self.u.clone(memory_format=torch.contiguous_format)
        v = self.v.clone(memory_format=torch.contiguous_format)
        return torch.dot(u, w @ v)


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


class ConvSpectralNorm(_SoftSpectralBound):
    r"""Parametrization bounding the operator norm of a 2-d convolution by ``coeff``.

    The convolution ``K: x -> conv2d(x, W)`` is a linear map from ``(C_in, H, W)`` to
    ``(C_out, H', W')`` inputs. Its largest singular value is estimated by power iteration
    with the convolution and its adjoint (the transposed convolution),

    .. math::

        v \leftarrow \frac{K^\top u}{\|K^\top u\|}, \qquad
        u \leftarrow \frac{K v}{\|K v\|}, \qquad \hat\sigma(K) = \langle u, K v \rangle,

    one step per training forward, and the kernel is rescaled softly,
    ``W -> W / max(1, sigma_hat / coeff)`` (Gouk et al. 2021; Behrmann et al. 2019; the soft
    coefficient of DDU, Mukhoti et al. 2021). Register it with :func:`conv_spectral_norm`.

    The operator norm depends on the input size through the zero padding at the borders; it is
    computed at ``input_size`` and grows towards the circular-convolution value for larger
    inputs (random 16-channel 3x3 kernels: about 5% from 7x7 to 56x56 inputs; at 28x28 within
    0.5% of the limit), so inputs larger than ``input_size`` may see a slightly larger gain.

    Parameters
    ----------
    weight : Tensor
        The kernel ``(C_out, C_in / groups, kh, kw)``.
    coeff : float
        The bound ``c > 0`` on the operator norm.
    in_channels : int
        ``C_in``.
    input_size : (int, int)
        ``(H, W)`` of the inputs the bound is computed for.
    stride, padding, dilation : (int, int)
        As in the convolution (zero padding only).
    groups : int
        As in the convolution.
    n_power_iterations, eps
        As in :class:`SoftSpectralNorm`.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        coeff: float,
        *,
        in_channels: int,
        input_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        n_power_iterations: int = 1,
        eps: float = 1e-12,
    ) -> None:
        super().__init__(coeff, n_power_iterations, eps)
        if weight.dim() != 4:
            raise ValueError("ConvSpectralNorm needs a 2-d convolution kernel (out, in, kh, kw); "
                             f"got a weight of shape {tuple(weight.shape)}.")
        h, w = (int(v) for v in input_size)
        if h < 1 or w < 1:
            raise ValueError("The 'input_size' parameter of ConvSpectralNorm must be two ints "
                             f">= 1. Got {tuple(input_size)!r} instead.")
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.dilation, self.groups = tuple(dilation), int(groups)
        self.input_size = (h, w)
        kernel = weight.shape[2:]
        out_size = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(
            self.input_size, self.padding, self.dilation, kernel, self.stride, strict=True)]
        if min(out_size) < 1:
            raise ValueError(f"ConvSpectralNorm: input size {self.input_size} is too small for "
                             f"a {tuple(kernel)} kernel with padding {self.padding}.")
        # the transposed convolution maps (C_out, H', W') back onto exactly (C_in, H, W)
        self.output_padding = tuple(
            n - ((m - 1) * s - 2 * p + d * (k - 1) + 1) for n, m, s, p, d, k in
            zip(self.input_size, out_size, self.stride, self.padding, self.dilation, kernel,
                strict=True))
        v = weight.new_empty(1, in_channels, h, w).normal_()  # (1, C_in, H, W)
        u = weight.new_empty(1, weight.shape[0], *out_size).normal_()  # (1, C_out, H', W')
        self.register_buffer("v", v / v.norm().clamp_min(eps))
        self.register_buffer("u", u / u.norm().clamp_min(eps))
        self._power_iteration(weight.detach(), 50)  # warm start

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def _conv_transpose(self, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(y, weight, None, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)

    @torch.no_grad()
    def _power_iteration(self, weight: torch.Tensor, n: int) -> None:
        for _ in range(n):
            v = self._conv_transpose(self.u, weight)  # (1, C_in, H, W)
            self.v.copy_(v / v.norm().clamp_min(self.eps))
            u = self._conv(self.v, weight)  # (1, C_out, H', W')
            self.u.copy_(u / u.norm().clamp_min(self.eps))

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """The current estimate ``<u, K v>`` of the operator norm (a scalar, differentiable in
        ``weight``)."""
        u = self.u.clone(memory_format=torch.contiguous_format)
        v = self.v.clone(memory_format=torch.contiguous_format)
        return (u * self._conv(v, weight)).sum()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_size={self.input_size}"


def conv_spectral_norm(
    module: nn.Conv2d,
    coeff: float,
    input_size: int | tuple[int, int],
    n_power_iterations: int = 1,
) -> nn.Conv2d:
    """Bound the operator norm of ``module`` at inputs of ``input_size`` by ``coeff`` and return
    ``module`` (:class:`ConvSpectralNorm`; Gouk et al. 2021, DDU 2021).

    ``input_size`` is the spatial size ``(H, W)`` (or one int for square inputs) of the
    convolution's input. The raw kernel is ``module.parametrizations.weight.original``.
    """
    if not isinstance(module, nn.Conv2d):
        raise ValueError("The 'module' parameter of conv_spectral_norm must be an nn.Conv2d. "
                         f"Got {type(module).__name__}.")
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise ValueError("conv_spectral_norm supports numeric zero padding only; got "
                         f"padding={module.padding!r}, padding_mode={module.padding_mode!r}.")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    parametrize.register_parametrization(module, "weight", ConvSpectralNorm(
        module.weight, coeff, in_channels=module.in_channels, input_size=size,
        stride=module.stride, padding=module.padding, dilation=module.dilation,
        groups=module.groups, n_power_iterations=n_power_iterations))
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
