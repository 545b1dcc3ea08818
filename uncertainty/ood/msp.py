r"""Maximum softmax probability (Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
Out-of-Distribution Examples in Neural Networks", ICLR 2017).

.. math::

    s(x) = -\max_c \operatorname{softmax}(z(x) / T)_c

(negated so that higher = more OOD; :math:`T = 1` is the baseline).
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_float
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["MSP", "msp_score"]


def msp_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Negative maximum softmax probability, :math:`-\max_c \mathrm{softmax}(z / T)_c`.

    Args:
        logits: ``(N, C)`` raw classifier outputs.
        temperature: :math:`T > 0`.

    Returns:
        ``(N,)`` float64 scores in ``[-1, -1/C]``; higher = more OOD.
    """
    z = logits.to(torch.float64) / temperature  # (N, C)
    return -torch.softmax(z, dim=1).amax(dim=1)


class MSP(OODDetector):
    """Maximum softmax probability detector (Hendrycks & Gimpel 2017): :func:`msp_score`.

    ``fit`` is a no-op. Parameters: ``model`` (the classifier), ``temperature`` (``T > 0``,
    default 1), ``layer`` (unused: MSP reads logits only).
    """

    name = "msp"
    reference = "Hendrycks & Gimpel 2017, ICLR"
    needs = frozenset({"logits"})

    def __init__(self, model: nn.Module | None = None, *, temperature: float = 1.0,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.temperature = temperature

    def _validate_params(self) -> None:
        super()._validate_params()
        check_float(self.temperature, "temperature", type(self).__name__, low=0.0, low_open=True)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return msp_score(outputs.logits, self.temperature)
