r"""SCALE: scaling without pruning (Xu, Chen, Franchi & Yao, "Scaling for Training Time and
Post-hoc Out-of-distribution Detection Enhancement", ICLR 2024).

ASH-S (:mod:`uncertainty.ood.ash`) both prunes and scales; Xu et al. show that the pruning
costs in-distribution accuracy and that the scaling alone carries the OOD signal. SCALE keeps
**every** activation and multiplies the whole feature vector by ASH-S's factor, computed from
the sample's own activations:

.. math::

    r(x) = \frac{s_1}{s_2} = \frac{\sum_{j=1}^{F} h_j(x)}{\sum_{j \in K(x)} h_j(x)}, \qquad
    \tilde h(x) = h(x)\, e^{r(x)}, \qquad
    s(x) = -T \log \sum_{c=1}^{C} \exp\!\Big(\frac{\mathrm{head}(\tilde h(x))_c}{T}\Big),

where :math:`K(x)` holds the :math:`k = F - \operatorname{round}(F p / 100)` largest activations
(those above the sample's :math:`p`-th percentile). The scaling multiplies :math:`W h` by
:math:`e^{r}`, so for a head without bias the predicted class -- and the accuracy -- are
unchanged.
``fit`` learns nothing. **Default** ``percentile = 85``: the paper's setting (also OpenOOD's).

Like ASH, SCALE assumes non-negative (post-ReLU) features: then :math:`1 \le r \le F/k`, and an
all-zero row stays zero (the energy of the head's bias). With signed features the formula is
applied as written; a non-zero row with :math:`s_2 = 0` (undefined :math:`r`) and logits that
overflow are refused with a :class:`ValueError`, never scored as inf / NaN.
"""

from __future__ import annotations

import torch
from torch import nn

from uncertainty.ood._shaping import (
    HeadDetector,
    apply_head,
    kept_count,
    sharpening_ratio,
    top_k_mask,
)
from uncertainty.ood.energy import energy_score
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["SCALE", "scale_features", "scale_score"]


def scale_features(features: torch.Tensor, percentile: float = 85.0) -> torch.Tensor:
    r""":math:`h\, e^{s_1/s_2}` row by row (module docstring).

    Args:
        features: ``(N, F)`` penultimate features.
        percentile: :math:`p \in (0, 100)`; :math:`s_2` sums the
            :math:`k = F - \operatorname{round}(Fp/100) \ge 1` largest activations.

    Returns:
        ``(N, F)`` scaled features, in ``features``' dtype.
    """
    k = kept_count(features.shape[1], percentile, "SCALE")
    ratio = sharpening_ratio(features, top_k_mask(features, k), "SCALE")  # (N,)
    return (features.to(torch.float64) * torch.exp(ratio).unsqueeze(1)).to(features.dtype)


def scale_score(features: torch.Tensor, head, percentile: float = 85.0,
                temperature: float = 1.0) -> torch.Tensor:
    r"""Energy of the head applied to the scaled features,
    :math:`-T\log\sum_c \exp(\mathrm{head}(h\, e^{s_1/s_2})_c / T)`.

    Args:
        features: ``(N, F)`` penultimate features (the head's input).
        head: the classifier's head, ``(N, F) -> (N, C)`` logits (``model.head``).
        percentile: see :func:`scale_features`.
        temperature: :math:`T > 0` of the energy (1 in the paper).

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    scaled = scale_features(features, percentile)
    return energy_score(apply_head(head, scaled, "SCALE"), temperature)


class SCALE(HeadDetector):
    """SCALE (Xu et al. 2024): energy of the head applied to the features scaled by
    :math:`e^{s_1/s_2}`; see the module docstring. ``fit`` is a no-op.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier, with ``features`` and ``head`` (every :mod:`dunno.nets` backbone).
    percentile : float
        :math:`p \\in (0, 100)` defining the kept set of :math:`s_2` (default 85, the paper's).
    temperature : float
        :math:`T > 0` of the energy (default 1).
    layer : None
        Must stay ``None``: the features are the head's input.
    """

    name = "scale"
    reference = "Xu et al. 2024, ICLR"
    score_time_params = ("percentile", "temperature")
    percent_params = ("percentile",)

    def __init__(self, model: nn.Module | None = None, *, percentile: float = 85.0,
                 temperature: float = 1.0, layer: LayerSpec = None) -> None:
        super().__init__(model, temperature=temperature, layer=layer)
        self.percentile = percentile

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return scale_score(outputs.features, self._head(), self.percentile, self.temperature)
