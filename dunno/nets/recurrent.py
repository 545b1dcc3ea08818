"""Recurrent classifiers: LSTM (Hochreiter & Schmidhuber, 1997, "Long Short-Term Memory",
Neural Computation) and GRU (Cho et al., 2014, "Learning Phrase Representations using RNN
Encoder-Decoder for Statistical Machine Translation", EMNLP).

Images are read row by row: ``(N, C, H, W) -> (N, T=H, D=C*W)`` (the "row-by-row MNIST"
benchmark); sequences ``(N, T, D)`` are used as they are, with ``D = in_channels * W`` where
``W`` is the width of ``input_size`` (so a plain sequence of ``D`` features per step is
``in_channels=D, input_size=(T, 1)``). Any sequence length ``T`` works; only ``W`` of
``input_size`` is used.

The features are the final hidden state of the last layer, both directions concatenated when
``bidirectional=True``. ``dropout`` is applied between stacked layers (when ``num_layers > 1``,
as :class:`torch.nn.LSTM` does) and to the features before the head.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.nets.base import Backbone, rows_as_sequence
from dunno.validation import check_bool, check_int

__all__ = ["GRU", "LSTM"]


class _Recurrent(Backbone):
    """Shared body of :class:`LSTM` and :class:`GRU`."""

    rnn_type: type[nn.RNNBase]

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 28,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            {
                "input_size": input_size,
                "hidden_size": hidden_size,
                "num_layers": num_layers,
                "bidirectional": bidirectional,
                "dropout": dropout,
            },
        )
        owner = type(self).__name__
        check_int(hidden_size, "hidden_size", owner, low=1)
        check_int(num_layers, "num_layers", owner, low=1)
        check_bool(bidirectional, "bidirectional", owner)
        self.width = self.input_size[1]
        self.rnn = self.rnn_type(
            input_size=self.in_channels * self.width,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            # torch warns about inter-layer dropout on a single layer; pass it only when stacked.
            dropout=self.dropout_rate if num_layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(self.dropout_rate)
        self.num_features = self.directions * hidden_size
        self.head = nn.Linear(self.num_features, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` or ``(N, T, D) -> (N, directions * hidden_size)``."""
        seq = rows_as_sequence(x, self.in_channels, self.width, type(self).__name__)  # (N, T, D)
        _, state = self.rnn(seq)
        h = state[0] if isinstance(state, tuple) else state  # (layers * dirs, N, hidden)
        last = h[-self.directions :]  # (dirs, N, hidden): the last layer
        feats = last.transpose(0, 1).reshape(seq.shape[0], -1)  # (N, dirs * hidden)
        return self.dropout(feats)


class LSTM(_Recurrent):
    """LSTM classifier over image rows or sequences (Hochreiter & Schmidhuber 1997).

    Input ``(N, C, H, W)`` (rows as steps) or ``(N, T, D)``; ``features(x)`` is
    ``(N, hidden_size)``, or ``(N, 2 * hidden_size)`` when bidirectional.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels (features per step for sequences) and number of logits.
    input_size : int or (int, int)
        ``(H, W)``; ``W`` sets the step size ``D = in_channels * W``.
    hidden_size, num_layers : int
        Units per layer and stacked layers.
    bidirectional : bool
        Also run right-to-left and concatenate both final states.
    dropout : float
        Between stacked layers and before the head.
    """

    name = "lstm"
    summary = "LSTM over image rows (or any (N, T, D) sequence), 128 units, last hidden state"
    reference = "Hochreiter & Schmidhuber 1997, Long Short-Term Memory (Neural Computation)"
    rnn_type = nn.LSTM


class GRU(_Recurrent):
    """GRU classifier over image rows or sequences (Cho et al. 2014).

    Input ``(N, C, H, W)`` (rows as steps) or ``(N, T, D)``; ``features(x)`` is
    ``(N, hidden_size)``, or ``(N, 2 * hidden_size)`` when bidirectional.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels (features per step for sequences) and number of logits.
    input_size : int or (int, int)
        ``(H, W)``; ``W`` sets the step size ``D = in_channels * W``.
    hidden_size, num_layers : int
        Units per layer and stacked layers.
    bidirectional : bool
        Also run right-to-left and concatenate both final states.
    dropout : float
        Between stacked layers and before the head.
    """

    name = "gru"
    summary = "GRU over image rows (or any (N, T, D) sequence), 128 units, last hidden state"
    reference = "Cho et al. 2014, Learning Phrase Representations using RNN Encoder-Decoder"
    rnn_type = nn.GRU
