r"""Predictive entropy of the softmax as an OOD score.

.. math::

    s(x) = H[p(y \mid x)] = -\sum_c p_c \log p_c, \qquad p = \operatorname{softmax}(z(x)),

high when the classifier spreads its probability over many classes (computed stably as
:math:`\log\sum_c e^{z_c} - \sum_c p_c z_c`).
"""

from __future__ import annotations

import torch

from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import ModelOutputs

__all__ = ["Entropy", "entropy_score"]


def entropy_score(logits: torch.Tensor) -> torch.Tensor:
    r"""Entropy :math:`-\sum_c p_c \log p_c` (nats) of :math:`p = \mathrm{softmax}(z)`.

    Args:
        logits: ``(N, C)`` raw classifier outputs.

    Returns:
        ``(N,)`` float64 scores in ``[0, log C]``; higher = more OOD.
    """
    z = logits.to(torch.float64)  # (N, C)
    log_p = torch.log_softmax(z, dim=1)
    return (-(log_p.exp() * log_p).sum(dim=1)).clamp_min(0.0)


class Entropy(OODDetector):
    """Softmax-entropy detector: :func:`entropy_score`. ``fit`` is a no-op."""

    name = "entropy"
    reference = "Shannon entropy of the predictive distribution (e.g. Hendrycks & Gimpel 2017)"
    needs = frozenset({"logits"})

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return entropy_score(outputs.logits)
