r"""Maximum logit (Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World
Settings", ICML 2022).

.. math::

    s(x) = -\max_c z_c(x)

(negated so that higher = more OOD). Unlike the softmax it keeps the logits' magnitude, which
is what separates far-away inputs (e.g. noise) from in-distribution ones.
"""

from __future__ import annotations

import torch

from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import ModelOutputs

__all__ = ["MaxLogit", "max_logit_score"]


def max_logit_score(logits: torch.Tensor) -> torch.Tensor:
    r"""Negative maximum logit, :math:`-\max_c z_c`.

    Args:
        logits: ``(N, C)`` raw classifier outputs.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    return -logits.to(torch.float64).amax(dim=1)


class MaxLogit(OODDetector):
    """Maximum-logit detector (Hendrycks et al. 2022): :func:`max_logit_score`.

    ``fit`` is a no-op. Parameters: ``model`` (the classifier), ``layer`` (unused).
    """

    name = "maxlogit"
    reference = "Hendrycks et al. 2022, ICML"
    needs = frozenset({"logits"})

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return max_logit_score(outputs.logits)
