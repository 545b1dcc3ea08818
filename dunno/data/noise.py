"""Synthetic OOD sets: Gaussian and uniform noise matching an in-distribution set."""

from __future__ import annotations

import torch

__all__ = ["gaussian_noise", "uniform_noise"]


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def gaussian_noise(
    n: int, shape: tuple[int, ...], value_range=(0.0, 1.0), *, seed: int = 0
) -> torch.Tensor:
    """``n`` samples of i.i.d. ``N(mid, (width/4)^2)`` clipped to ``value_range``.

    ``mid`` and ``width`` are the range's centre and width, so for ``(0, 1)`` images the
    pixels are ``clip(N(0.5, 0.25^2), 0, 1)``. Returns ``(n, *shape)`` float32.
    """
    lo, hi = value_range
    x = torch.randn((n, *shape), generator=_generator(seed))
    return (0.5 * (lo + hi) + 0.25 * (hi - lo) * x).clamp(lo, hi)


def uniform_noise(
    n: int, shape: tuple[int, ...], value_range=(0.0, 1.0), *, seed: int = 0
) -> torch.Tensor:
    """``n`` samples of i.i.d. ``U(lo, hi)`` pixels. Returns ``(n, *shape)`` float32."""
    lo, hi = value_range
    return lo + (hi - lo) * torch.rand((n, *shape), generator=_generator(seed))
