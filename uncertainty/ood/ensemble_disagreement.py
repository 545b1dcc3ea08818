r"""Deep-ensemble disagreement (Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable
Predictive Uncertainty Estimation using Deep Ensembles", NeurIPS 2017, Section 3.5 and
Figure 3: the members disagree on unseen inputs).

With the members' softmaxes :math:`p_m = \mathrm{softmax}(f_m(x))`, :math:`m = 1..M`, the
disagreement is the mutual information between the label and the member index (the
generalised Jensen-Shannon divergence of the members),

.. math::

    \mathbb{H}\Big[\frac1M \sum_m p_m\Big] - \frac1M \sum_m \mathbb{H}[p_m] \in [0, \log M],

zero when the members agree; higher = more OOD. The model is an ensemble with
``member_logits(x) -> (M, N, C)`` (:class:`dunno.ensemble.EnsembleClassifier`, what
``dunno train classifier --ensemble M`` writes and
:meth:`uncertainty.predictive.DeepEnsemble.to_module` returns).
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_int
from uncertainty.ood._base import OODDetector
from uncertainty.ood.mc_dropout_mi import mutual_information_score
from uncertainty.ood.outputs import LayerSpec, ModelOutputs, model_device

__all__ = ["EnsembleDisagreement", "ensemble_disagreement_score"]


def ensemble_disagreement_score(member_logits: torch.Tensor) -> torch.Tensor:
    """Mutual information of the members' softmaxes.

    Args:
        member_logits: ``(M, N, C)`` logits of the ``M`` members.

    Returns:
        ``(N,)`` float64 scores in nats; higher = more OOD.
    """
    return mutual_information_score(torch.softmax(member_logits.to(torch.float64), dim=-1))


class EnsembleDisagreement(OODDetector):
    """Ensemble-disagreement detector: :func:`ensemble_disagreement_score`. ``fit`` is a
    no-op. ``model`` must have ``member_logits(x) -> (M, N, C)``."""

    name = "ensemble-disagreement"
    reference = "Lakshminarayanan et al. 2017, NeurIPS"
    needs = frozenset({"input"})

    def __init__(self, model: nn.Module | None = None, *, batch_size: int = 512,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.batch_size = batch_size

    @classmethod
    def applies_to(cls, model: nn.Module | None) -> bool:
        """Ensembles: models with ``member_logits``."""
        return callable(getattr(model, "member_logits", None))

    @classmethod
    def _cannot_score_reason(cls) -> str:
        return ("is not an ensemble (no member_logits(x) -> (M, N, C)); use "
                "dunno.ensemble.EnsembleClassifier (from `dunno train classifier --ensemble M`).")

    def _validate_params(self) -> None:
        super()._validate_params()
        check_int(self.batch_size, "batch_size", type(self).__name__, low=1)
        if self.model is not None and not callable(getattr(self.model, "member_logits", None)):
            raise ValueError(
                f"EnsembleDisagreement needs an ensemble with member_logits(x) -> (M, N, C) "
                f"(dunno.ensemble.EnsembleClassifier, from `dunno train classifier --ensemble "
                f"M`). {type(self.model).__name__} has none."
            )

    @torch.no_grad()
    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        self._require_model(self.needs, "score_outputs")
        device = model_device(self.model)
        was = self.model.training
        self.model.eval()
        try:
            x = outputs.inputs
            return torch.cat([
                ensemble_disagreement_score(
                    self.model.member_logits(x[i:i + self.batch_size].to(device)))
                for i in range(0, len(x), self.batch_size)])
        finally:
            self.model.train(was)
