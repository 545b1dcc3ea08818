"""Shift transforms for images, dynamic binarisation, resizing and per-channel statistics.

All act on batches ``x (N, C, H, W)`` with values in ``value_range`` (``(0, 1)`` for our
image sets) and return a new tensor of the same shape. They back the dataset-spec options
``rotate=DEG``, ``invert``, ``blur=SIGMA`` and ``noise=STD`` (``mnist:rotate=90``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["DynamicBinarize", "channel_stats", "gaussian_blur", "invert", "pixel_noise",
           "resize_images", "rotate"]


def _check_images(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"The '{name}' argument must be images of shape (N, C, H, W). Got {shape}."
        )


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate images counter-clockwise by ``degrees`` about their centre.

    Bilinear interpolation (``grid_sample``), zeros outside the original frame. Multiples
    of 90 degrees are exact (``torch.rot90``).
    """
    _check_images(x)
    degrees = float(degrees)
    if degrees % 90 == 0 and x.shape[-1] == x.shape[-2]:
        return torch.rot90(x, k=int(degrees // 90) % 4, dims=(-2, -1)).contiguous()
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # grid_sample maps output coordinates to input ones: rotate the sampling grid by -theta
    # (y axis points down in image coordinates, so this turns the content counter-clockwise)
    matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(matrix.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def invert(x: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Photometric inversion ``lo + hi - x`` (white digits on black become black on white)."""
    lo, hi = value_range
    return (lo + hi) - x


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur with an isotropic Gaussian of standard deviation ``sigma`` pixels.

    Separable kernel of radius ``ceil(3 sigma)`` normalised to sum 1, reflect padding
    (falls back to replicate for images smaller than the kernel).
    """
    _check_images(x)
    sigma = float(sigma)
    if sigma <= 0:
        raise ValueError(f"The 'sigma' parameter must be > 0. Got {sigma} instead.")
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    out = F.pad(x, (radius, radius, 0, 0), mode=mode)
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode=mode)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def pixel_noise(
    x: torch.Tensor,
    std: float,
    *,
    generator: torch.Generator | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Add i.i.d. Gaussian noise ``N(0, std^2)`` to every pixel and clip to the range."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + float(std) * noise).clamp(*value_range)


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    r"""Per-channel mean and standard deviation of images ``x (N, C, H, W)``, over all
    ``N * H * W`` pixels of each channel, in float64:
    :math:`\mu_c = \frac{1}{NHW} \sum_{n,h,w} x_{nchw}`,
    :math:`\sigma_c = \big(\frac{1}{NHW} \sum_{n,h,w} (x_{nchw} - \mu_c)^2\big)^{1/2}`
    (the population standard deviation, as the usual CIFAR constants are computed). Returns
    two lists of ``C`` floats, e.g. the ``mean`` / ``std`` options of ``resnet18-cifar``."""
    _check_images(x)
    if x.shape[0] == 0:
        raise ValueError("The 'x' argument of channel_stats holds no images.")
    x = x.detach()
    count = x.shape[0] * x.shape[2] * x.shape[3]

    def chunks():  # two passes, each holding a float64 copy of 1024 images at a time
        return (x[i:i + 1024].to(torch.float64) for i in range(0, len(x), 1024))

    mean = sum(c.sum(dim=(0, 2, 3)) for c in chunks()) / count  # (C,)
    squares = sum((c - mean[:, None, None]).pow(2).sum(dim=(0, 2, 3)) for c in chunks())
    return mean.tolist(), (squares / count).sqrt().tolist()


def resize_images(x: torch.Tensor, size: int | tuple[int, int], channels: int | None = None
                  ) -> torch.Tensor:
    """Resize images ``x (N, C, H, W)`` to ``(N, C', size)`` by bilinear interpolation
    (half-pixel centres, antialiased when shrinking; values stay within the input's range)
    and, with ``channels``, repeat a single grey channel ``channels`` times (grey -> RGB), as
    OpenOOD feeds MNIST to CIFAR models (``Resize(32)`` + ``convert('RGB')``)."""
    _check_images(x)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"The 'size' argument of resize_images must be an int >= 1 or a pair "
                         f"(H, W). Got {size!r}.")
    out = x if tuple(x.shape[-2:]) == hw else F.interpolate(
        x, size=hw, mode="bilinear", align_corners=False,
        antialias=hw[0] < x.shape[-2] or hw[1] < x.shape[-1])
    if channels is not None and channels != x.shape[1]:
        if x.shape[1] != 1:
            raise ValueError(f"resize_images repeats a single grey channel; 'x' has "
                             f"{x.shape[1]} channels, 'channels' is {channels}.")
        out = out.expand(-1, channels, -1, -1)
    return out.contiguous()


class DynamicBinarize:
    """Dynamic binarisation: each call draws ``x_b ~ Bernoulli(x)`` afresh.

    Used when training on binarised MNIST (Salakhutdinov & Murray 2008 use a fixed draw;
    dynamic binarisation, as in Burda et al. 2016, draws a new one every time an image is
    seen). Inputs must lie in ``[0, 1]``.
    """

    def __init__(self, seed: int | None = None):
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.min() < 0 or x.max() > 1:
            raise ValueError("DynamicBinarize needs inputs in [0, 1] (pixel intensities).")
        u = torch.rand(x.shape, generator=self.generator, dtype=x.dtype)
        return (u.to(x.device) < x).to(x.dtype)

    def __repr__(self) -> str:
        return "DynamicBinarize()"
