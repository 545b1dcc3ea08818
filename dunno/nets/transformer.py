"""Transformer encoder classifier (Vaswani et al., 2017, "Attention Is All You Need", NeurIPS).

Each step of a sequence ``(N, T, D)`` (or each row of an image, read as
``(N, C, H, W) -> (N, T=H, D=C*W)`` like the recurrent nets) is linearly projected to
``d_model``, fixed sinusoidal positional encodings are added, and a stack of encoder blocks
(post-norm and ReLU as in the paper; ``norm_first=True`` for pre-norm) processes the sequence.
The features are the mean of the output tokens (``pooling="mean"``) or the output at a
prepended learned class token (``pooling="cls"``, as in BERT, Devlin et al. 2019).

Adapted for classification and small inputs: encoder only, width 64, 2 blocks, 4 heads, MLP 128
(the paper's base model: 512, 6, 8, 2048); the input projection replaces the token embedding and
is not scaled by ``sqrt(d_model)``. The positional encoding is computed for the actual sequence
length, so any ``T`` works. Dropout (paper: 0.1) is applied after the positional encoding,
inside every block and before the head.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.nets.attention import EncoderBlock, sinusoidal_positions
from dunno.nets.base import Backbone, rows_as_sequence
from dunno.validation import check_bool, check_choice, check_int

__all__ = ["Transformer"]


class Transformer(Backbone):
    """Transformer encoder over sequences or image rows (Vaswani et al. 2017).

    Input ``(N, C, H, W)`` (rows as steps) or ``(N, T, D)`` with ``D = in_channels * W``;
    ``features(x)`` is ``(N, d_model)``.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels (features per step for sequences) and number of logits.
    input_size : int or (int, int)
        ``(H, W)``; ``W`` sets the step size ``D = in_channels * W``.
    d_model, depth, heads, mlp_dim : int
        Token width, encoder blocks, attention heads (must divide ``d_model``), MLP units.
    pooling : {"mean", "cls"}
        Average the output tokens, or read a prepended class token.
    norm_first : bool
        Pre-norm blocks (and a final layer norm) instead of the paper's post-norm.
    dropout : float
        After the positional encoding, inside the blocks and before the head (paper: 0.1).
    """

    name = "transformer"
    summary = "Transformer encoder over image rows or sequences, sinusoidal positions, mean pool"
    reference = "Vaswani et al. 2017, Attention Is All You Need (NeurIPS)"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 28,
        d_model: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 128,
        pooling: str = "mean",
        norm_first: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            {
                "input_size": input_size,
                "d_model": d_model,
                "depth": depth,
                "heads": heads,
                "mlp_dim": mlp_dim,
                "pooling": pooling,
                "norm_first": norm_first,
                "dropout": dropout,
            },
        )
        owner = type(self).__name__
        check_int(d_model, "d_model", owner, low=1)
        check_int(depth, "depth", owner, low=1)
        check_int(heads, "heads", owner, low=1)
        check_int(mlp_dim, "mlp_dim", owner, low=1)
        self.pooling = check_choice(pooling, "pooling", owner, ("mean", "cls"))
        check_bool(norm_first, "norm_first", owner)
        if d_model % heads != 0:
            raise ValueError(
                f"The 'd_model' parameter of {owner} must be divisible by 'heads' ({heads}). "
                f"Got {d_model!r} instead."
            )
        self.width = self.input_size[1]
        self.input_proj = nn.Linear(self.in_channels * self.width, d_model)
        if pooling == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))  # (1, 1, d_model)
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.embed_dropout = nn.Dropout(self.dropout_rate)
        self.blocks = nn.Sequential(
            *[
                EncoderBlock(
                    d_model, heads, mlp_dim, self.dropout_rate, norm_first, activation="relu"
                )
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.dropout = nn.Dropout(self.dropout_rate)
        self.num_features = d_model
        self.head = nn.Linear(d_model, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` or ``(N, T, D) -> (N, d_model)``."""
        seq = rows_as_sequence(x, self.in_channels, self.width, type(self).__name__)  # (N, T, D)
        tokens = self.input_proj(seq)  # (N, T, d_model)
        if self.pooling == "cls":
            cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (N, 1, d_model)
            tokens = torch.cat([cls, tokens], dim=1)  # (N, T + 1, d_model)
        pe = sinusoidal_positions(tokens.shape[1], tokens.shape[2], tokens.device, tokens.dtype)
        tokens = self.blocks(self.embed_dropout(tokens + pe))  # (N, T', d_model)
        tokens = self.norm(tokens)  # (N, T', d_model)
        pooled = tokens[:, 0] if self.pooling == "cls" else tokens.mean(dim=1)  # (N, d_model)
        return self.dropout(pooled)
