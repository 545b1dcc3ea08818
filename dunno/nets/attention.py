"""Transformer encoder blocks shared by :mod:`dunno.nets.vit` and :mod:`dunno.nets.transformer`.

Multi-head self-attention and a position-wise MLP, each wrapped in a residual connection and
layer normalisation (Vaswani et al., 2017, "Attention Is All You Need", NeurIPS):

* post-norm (the original): ``x = LN(x + Drop(MHA(x)))``, ``x = LN(x + Drop(MLP(x)))``;
* pre-norm (ViT, Dosovitskiy et al., 2021): ``x = x + Drop(MHA(LN(x)))``,
  ``x = x + Drop(MLP(LN(x)))``, with a final LN after the last block.

Written out instead of using :class:`torch.nn.TransformerEncoderLayer` to keep the block small,
explicit about shapes, and free of its fast-path warnings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EncoderBlock", "SelfAttention", "sinusoidal_positions"]


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (Vaswani et al. 2017).

    ``(N, T, D) -> (N, T, D)``; ``heads`` must divide ``D``.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"The attention dimension {dim} is not divisible by heads={heads}.")
        self.heads = heads
        self.attn_dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, D) -> (N, T, D)``."""
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads)  # (N, T, 3, h, D/h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, h, T, D/h)
        p = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (N, h, T, D/h)
        out = out.transpose(1, 2).reshape(n, t, d)  # (N, T, D)
        return self.proj(out)


class EncoderBlock(nn.Module):
    """Self-attention + MLP with residuals and layer norm (pre- or post-norm).

    ``(N, T, D) -> (N, T, D)`` (Vaswani et al. 2017; pre-norm as in Dosovitskiy et al. 2021).

    Parameters
    ----------
    dim, heads, mlp_dim : int
        Model width ``D``, attention heads, hidden units of the MLP.
    dropout : float
        Dropout on attention weights, inside the MLP and on both residual branches.
    norm_first : bool
        Pre-norm (ViT) if True, post-norm (original Transformer) if False.
    activation : str
        ``"gelu"`` (ViT) or ``"relu"`` (original Transformer).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU() if activation == "gelu" else nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
        )
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, D) -> (N, T, D)``."""
        if self.norm_first:
            x = x + self.drop1(self.attn(self.norm1(x)))
            return x + self.drop2(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop1(self.attn(x)))
        return self.norm2(x + self.drop2(self.mlp(x)))


def sinusoidal_positions(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal positional encoding ``(length, dim)`` (Vaswani et al. 2017, Sec. 3.5).

    ``PE[t, 2i] = sin(t / 10000^(2i/dim))``, ``PE[t, 2i+1] = cos(t / 10000^(2i/dim))``.
    """
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # (T, 1)
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )  # (ceil(dim / 2),)
    angles = position * freq  # (T, ceil(dim / 2))
    pe = torch.zeros(length, dim, device=device, dtype=torch.float32)  # (T, D)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return pe.to(dtype) if dtype is not None else pe
