r"""Generalized entropy (Liu, Lochman & Zach, "GEN: Pushing the Limits of Softmax-Based
Out-of-Distribution Detection", CVPR 2023).

With :math:`p = \operatorname{softmax}(z(x))` and :math:`p_{(1)} \ge p_{(2)} \ge \dots` its
entries sorted in decreasing order, the score is the generalized (Tsallis-like) entropy of the
:math:`M` largest probabilities,

.. math::

    G_\gamma(p) = \sum_{j=1}^{M} p_{(j)}^{\gamma}\,\bigl(1 - p_{(j)}\bigr)^{\gamma},
    \qquad 0 < \gamma \le 1,

high when the classifier spreads its probability (the paper uses :math:`-G_\gamma` as the
in-distribution confidence, so :math:`G_\gamma` is the OOD score). The probabilities are not
renormalised over the top :math:`M`. Defaults follow the paper: :math:`\gamma = 0.1`,
:math:`M = 100` (its ImageNet setting); with fewer classes than :math:`M` all :math:`C` are
used, i.e. the effective :math:`M` is :math:`\min(M, C)`.

**Precision.** :math:`(1 - p)^\gamma` with a small :math:`\gamma` is far from 0 even when
:math:`1 - p` is below the float64 resolution of :math:`p` (:math:`(10^{-20})^{0.1} = 0.01`),
so :math:`1 - p_{(1)}` is computed as :math:`\sum_{c \ne (1)} p_c` in log space rather than by
subtraction: confident predictions keep their ranking.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_float, check_int
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["GEN", "gen_score"]


def gen_score(logits: torch.Tensor, gamma: float = 0.1, top_m: int = 100) -> torch.Tensor:
    r"""Generalized entropy :math:`\sum_{j \le M} p_{(j)}^\gamma (1 - p_{(j)})^\gamma` of the
    :math:`\min(M, C)` largest softmax probabilities.

    Args:
        logits: ``(N, C)`` raw classifier outputs.
        gamma: :math:`\gamma \in (0, 1]` (0.1 in the paper).
        top_m: :math:`M \ge 1`, how many of the largest probabilities enter (100 in the paper;
            ``min(top_m, C)`` are used).

    Returns:
        ``(N,)`` float64 scores in :math:`[0, \min(M, C)\, 4^{-\gamma}]`; higher = more OOD.
    """
    z = logits.to(torch.float64)  # (N, C)
    log_probs = torch.log_softmax(z, dim=1)  # (N, C)
    log_p, index = log_probs.topk(min(int(top_m), z.shape[1]), dim=1)  # (N, M), decreasing
    # log(1 - p): log1p(-p) is accurate for p <= 1/2, which holds for every entry but the
    # largest; for the largest, 1 - p_(1) is the sum of the other probabilities.
    log_rest = torch.log1p(-log_p.exp())  # (N, M)
    others = log_probs.scatter(1, index[:, :1], float("-inf"))  # (N, C)
    log_rest[:, 0] = torch.logsumexp(others, dim=1)
    return torch.exp(gamma * (log_p + log_rest)).sum(dim=1)


class GEN(OODDetector):
    r"""Generalized-entropy detector (Liu, Lochman & Zach 2023): :func:`gen_score`. ``fit`` is
    a no-op.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier.
    gamma : float
        :math:`\gamma \in (0, 1]` (default 0.1, the paper's).
    top_m : int
        :math:`M \ge 1`, the number of largest probabilities summed (default 100, the paper's;
        :math:`\min(M, C)` are used).
    layer : str or list of str, optional
        Unused: GEN reads logits only.
    """

    name = "gen"
    reference = "Liu, Lochman & Zach 2023, CVPR"
    needs = frozenset({"logits"})
    score_time_params = ("gamma", "top_m")

    def __init__(self, model: nn.Module | None = None, *, gamma: float = 0.1, top_m: int = 100,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.gamma = gamma
        self.top_m = top_m

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        check_float(self.gamma, "gamma", owner, low=0.0, high=1.0, low_open=True)
        check_int(self.top_m, "top_m", owner, low=1)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return gen_score(outputs.logits, self.gamma, self.top_m)
