"""Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words: Transformers
for Image Recognition at Scale", ICLR).

The image is cut into non-overlapping ``p x p`` patches, each linearly embedded (a stride-``p``
convolution); a learned class token is prepended, learned positional embeddings are added, and
a pre-norm Transformer encoder processes the sequence. The features are the final layer-normed
class token.

Adapted for small inputs:

* tiny: width 64, depth 4, 4 heads, MLP 128 (ViT-Base: 768, 12, 12, 3072);
* patch size 4 (7x7 = 49 patches on 28x28, 8x8 on 32x32), or 2 for inputs smaller than 16
  (4x4 = 16 patches on 8x8 ``digits``);
* an input whose sides are not multiples of the patch size is zero-padded on the bottom/right;
* the positional embeddings are sized for ``input_size``: other input sizes are rejected;
* a linear head on the class token (the paper's fine-tuning head).

Dropout (paper: 0.1 for training ViT-B/L from scratch on ImageNet) is applied after the
embeddings, inside each encoder block and before the head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dunno.nets.attention import EncoderBlock
from dunno.nets.base import Backbone, check_image
from dunno.validation import check_int

__all__ = ["ViT"]


class ViT(Backbone):
    """A tiny Vision Transformer with class token (Dosovitskiy et al. 2021).

    Input ``(N, C, H, W)`` with ``(H, W) = input_size``; ``features(x)`` is ``(N, dim)``.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and number of logits.
    input_size : int or (int, int)
        ``(H, W)`` of the inputs; sizes the positional embeddings.
    patch_size : int or None
        Side of the square patches; None: 4, or 2 if ``min(H, W) < 16``.
    dim, depth, heads, mlp_dim : int
        Token width, encoder blocks, attention heads (must divide ``dim``), MLP hidden units.
    dropout : float
        Dropout on the embeddings, in the encoder and before the head.
    """

    name = "vit"
    summary = "ViT: patch 4 (2 below 16 px), class token, learned positions, dim 64, depth 4"
    reference = "Dosovitskiy et al. 2021, An Image is Worth 16x16 Words (ICLR)"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 28,
        patch_size: int | None = None,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            {
                "input_size": input_size,
                "patch_size": patch_size,
                "dim": dim,
                "depth": depth,
                "heads": heads,
                "mlp_dim": mlp_dim,
                "dropout": dropout,
            },
        )
        owner = type(self).__name__
        h, w = self.input_size
        if patch_size is None:
            patch_size = 4 if min(h, w) >= 16 else 2
        self.patch_size = check_int(patch_size, "patch_size", owner, low=1)
        check_int(dim, "dim", owner, low=1)
        check_int(depth, "depth", owner, low=1)
        check_int(heads, "heads", owner, low=1)
        check_int(mlp_dim, "mlp_dim", owner, low=1)
        if dim % heads != 0:
            raise ValueError(
                f"The 'dim' parameter of {owner} must be divisible by 'heads' ({heads}). "
                f"Got {dim!r} instead."
            )
        self.grid = (math.ceil(h / self.patch_size), math.ceil(w / self.patch_size))
        n_patches = self.grid[0] * self.grid[1]

        self.patch_embed = nn.Conv2d(self.in_channels, dim, self.patch_size, stride=self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))  # (1, 1, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, dim))  # (1, P + 1, D)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.embed_dropout = nn.Dropout(self.dropout_rate)
        self.blocks = nn.Sequential(
            *[
                EncoderBlock(dim, heads, mlp_dim, self.dropout_rate, norm_first=True)
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.num_features = dim
        self.head = nn.Linear(dim, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, dim)``: the layer-normed class token."""
        owner = type(self).__name__
        check_image(x, self.in_channels, owner)
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"{owner} was built for input_size={self.input_size} (its positional embeddings "
                f"are sized for it). Got images of size {tuple(x.shape[-2:])}; create the model "
                f"with input_size={tuple(x.shape[-2:])}."
            )
        p = self.patch_size
        pad_h, pad_w = -x.shape[-2] % p, -x.shape[-1] % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # (N, C, gh * p, gw * p)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, P, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (N, 1, D)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed  # (N, P + 1, D)
        tokens = self.blocks(self.embed_dropout(tokens))  # (N, P + 1, D)
        return self.dropout(self.norm(tokens[:, 0]))  # (N, D)
