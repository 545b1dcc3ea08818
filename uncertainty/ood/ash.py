r"""ASH: activation shaping (Djurisic, Bozanic, Ashok & Liu, "Extremely Simple Activation
Shaping for Out-of-Distribution Detection", ICLR 2023).

Per sample, and without any training statistics: keep the :math:`k` largest of the :math:`F`
penultimate activations, :math:`k = F - \operatorname{round}(F p / 100)` (the reference code's
count; the ones above the sample's own :math:`p`-th percentile), set the others to zero, and
shape the survivors. With :math:`K` the kept set, :math:`s_1 = \sum_j h_j` the sum of all
activations and :math:`s_2 = \sum_{j \in K} h_j` that of the kept ones:

.. math::

    \text{ASH-P (prune):}\quad & \tilde h_j = h_j\, \mathbb{1}[j \in K], \\
    \text{ASH-B (binarise):}\quad & \tilde h_j = \frac{s_1}{k}\, \mathbb{1}[j \in K], \\
    \text{ASH-S (scale):}\quad & \tilde h_j = h_j\, e^{s_1 / s_2}\, \mathbb{1}[j \in K],

then re-apply the classifier's head and score with the energy,
:math:`s(x) = -T \log \sum_c \exp(\mathrm{head}(\tilde h(x))_c / T)`. ``fit`` learns nothing.

**Default** ``percentile = 90`` for all three: the setting of the reference code's CIFAR-10 /
CIFAR-100 configurations (ASH-S@90) and OpenOOD's configured default (its ASH is ASH-B at 90).
On ImageNet ResNet-50 the paper picks lower pruning levels for ASH-P and ASH-B (60-65); set
``percentile`` for such models.

**Features.** ASH assumes non-negative (post-ReLU) activations, where zero means "inactive".
Ties at the cut (e.g. many zeros) are broken towards the lower feature index, which only
changes ASH-B (where the kept positions carry :math:`s_1/k`). With non-negative features
:math:`1 \le s_1/s_2 \le F/k`, so ASH-S's factor is at most :math:`e^{F/k}`; an all-zero row
(nothing fires) stays zero and scores the energy of the head's bias. With signed features
(a ViT, a transformer, an LSTM) the formulas are applied as written, which the paper does not
study; ASH-S refuses a non-zero row whose kept activations sum to :math:`s_2 = 0` (the factor
is undefined), and any shaping whose logits overflow is refused, never scored as inf / NaN
(:func:`~uncertainty.ood._shaping.sharpening_ratio`, :func:`~uncertainty.ood._shaping.apply_head`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from dunno.validation import check_choice
from uncertainty.ood._shaping import (
    HeadDetector,
    apply_head,
    kept_count,
    sharpening_ratio,
    top_k_mask,
)
from uncertainty.ood.energy import energy_score
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["ASHB", "ASHP", "ASHS", "ASH_VARIANTS", "ash_features", "ash_score"]

#: ``"p"`` (prune), ``"b"`` (binarise), ``"s"`` (scale).
ASH_VARIANTS = ("p", "b", "s")


def ash_features(features: torch.Tensor, percentile: float = 90.0,
                 variant: str = "s") -> torch.Tensor:
    r"""The shaped features :math:`\tilde h` of ASH-P, ASH-B or ASH-S (module docstring).

    Args:
        features: ``(N, F)`` penultimate features.
        percentile: :math:`p \in (0, 100)`; :math:`k = F - \operatorname{round}(Fp/100) \ge 1`
            activations are kept per row.
        variant: ``"p"``, ``"b"`` or ``"s"``.

    Returns:
        ``(N, F)`` shaped features, in ``features``' dtype.
    """
    owner = f"ASH-{variant.upper()}" if variant in ASH_VARIANTS else "ash_features"
    check_choice(variant, "variant", "ash_features", ASH_VARIANTS)
    k = kept_count(features.shape[1], percentile, owner)
    mask = top_k_mask(features, k)  # (N, F)
    if variant == "p":
        return features * mask
    if variant == "b":
        fill = features.to(torch.float64).sum(dim=1, keepdim=True) / k  # (N, 1)
        return (fill * mask).to(features.dtype)
    factor = torch.exp(sharpening_ratio(features, mask, owner)).unsqueeze(1)  # (N, 1)
    return (features.to(torch.float64) * mask * factor).to(features.dtype)


def ash_score(features: torch.Tensor, head, percentile: float = 90.0, variant: str = "s",
              temperature: float = 1.0) -> torch.Tensor:
    r"""Energy of the head applied to the ASH-shaped features,
    :math:`-T\log\sum_c \exp(\mathrm{head}(\tilde h)_c / T)`.

    Args:
        features: ``(N, F)`` penultimate features (the head's input).
        head: the classifier's head, ``(N, F) -> (N, C)`` logits (``model.head``).
        percentile, variant: see :func:`ash_features`.
        temperature: :math:`T > 0` of the energy (1 in the paper).

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    shaped = ash_features(features, percentile, variant)
    return energy_score(apply_head(head, shaped, f"ASH-{variant.upper()}"), temperature)


class _ASH(HeadDetector):
    """ASH with the variant :attr:`variant`; see the module docstring.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier, with ``features`` and ``head`` (every :mod:`dunno.nets` backbone).
    percentile : float
        :math:`p \\in (0, 100)`: each sample keeps its activations above its own ``p``-th
        percentile (default 90, see the module docstring).
    temperature : float
        :math:`T > 0` of the energy (default 1).
    layer : None
        Must stay ``None``: the features are the head's input.
    """

    reference = "Djurisic et al. 2023, ICLR"
    #: ``"p"``, ``"b"`` or ``"s"``.
    variant: ClassVar[str] = ""
    score_time_params = ("percentile", "temperature")
    percent_params = ("percentile",)

    def __init__(self, model: nn.Module | None = None, *, percentile: float = 90.0,
                 temperature: float = 1.0, layer: LayerSpec = None) -> None:
        super().__init__(model, temperature=temperature, layer=layer)
        self.percentile = percentile

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return ash_score(outputs.features, self._head(), self.percentile, self.variant,
                         self.temperature)


class ASHP(_ASH):
    """ASH-P (Djurisic et al. 2023): prune each sample's activations below its ``percentile``-th
    percentile, keep the rest as they are; energy of the head. ``fit`` is a no-op."""

    name = "ash-p"
    variant = "p"


class ASHB(_ASH):
    """ASH-B (Djurisic et al. 2023): prune, then set every kept activation to
    :math:`s_1 / k` (the row's total activation spread evenly); energy of the head. ``fit`` is
    a no-op."""

    name = "ash-b"
    variant = "b"


class ASHS(_ASH):
    """ASH-S (Djurisic et al. 2023): prune, then scale the kept activations by
    :math:`e^{s_1/s_2}` (all over kept activation); energy of the head. ``fit`` is a no-op."""

    name = "ash-s"
    variant = "s"
