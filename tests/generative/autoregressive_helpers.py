"""Helpers shared by the autoregressive models' test files: large random weights, every
binary image of a tiny space, the models' raster order, and images as flat bits."""

from __future__ import annotations

import itertools

import torch

__all__ = ["all_binary_images", "flat_bits", "in_model_order", "randomise"]


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Large random weights: distributions far from uniform for the normalisation sums, and
    ReLUs of tiny random networks that are not all dead (default-initialised biases can
    switch off every unit of a colour group at the first pixel)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return model


def all_binary_images(shape) -> torch.Tensor:
    """Every binary image of ``shape = (C, H, W)``: ``(2^D, C, H, W)`` float64."""
    c, h, w = shape
    grid = torch.tensor(list(itertools.product([0.0, 1.0], repeat=c * h * w)),
                        dtype=torch.float64)  # (2^D, D) in (r, c, k) order
    return grid.view(-1, h, w, c).permute(0, 3, 1, 2).contiguous()  # (2^D, C, H, W)


def in_model_order(t: torch.Tensor) -> torch.Tensor:
    """``(C, H, W) -> (D,)`` in raster order with the channel innermost."""
    return t.permute(1, 2, 0).reshape(-1)


def flat_bits(x: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W) -> (N, D)`` in the models' raster order (channel innermost)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
