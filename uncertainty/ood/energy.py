r"""Energy score (Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection",
NeurIPS 2020).

.. math::

    E(x; T) = -T \log \sum_{c=1}^{C} e^{z_c(x) / T},

the free energy of the classifier viewed as an energy-based model: in-distribution inputs get
low energy, so :math:`E` itself is the OOD score (higher = more OOD).
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_float
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["Energy", "energy_score"]


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Free energy :math:`-T \log\sum_c \exp(z_c / T)`.

    Args:
        logits: ``(N, C)`` raw classifier outputs.
        temperature: :math:`T > 0` (1 in the paper).

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    z = logits.to(torch.float64)  # (N, C)
    return -temperature * torch.logsumexp(z / temperature, dim=1)


class Energy(OODDetector):
    """Energy-score detector (Liu et al. 2020): :func:`energy_score`. ``fit`` is a no-op.

    Parameters: ``model`` (the classifier), ``temperature`` (``T > 0``, default 1).
    """

    name = "energy"
    reference = "Liu et al. 2020, NeurIPS"
    needs = frozenset({"logits"})

    def __init__(self, model: nn.Module | None = None, *, temperature: float = 1.0,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.temperature = temperature

    def _validate_params(self) -> None:
        super()._validate_params()
        check_float(self.temperature, "temperature", type(self).__name__, low=0.0, low_open=True)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return energy_score(outputs.logits, self.temperature)
