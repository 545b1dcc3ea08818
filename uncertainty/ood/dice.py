r"""DICE: directed sparsification of the last layer (Sun & Li, "DICE: Leveraging
Sparsification for Out-of-Distribution Detection", ECCV 2022).

The classifier's head is a linear layer :math:`z = W h + b`, :math:`W \in \mathbb{R}^{C \times
F}`. DICE ranks every weight by its **contribution** to the in-distribution logits,

.. math::

    V = W \odot \bar h, \qquad V_{cj} = W_{cj}\, \bar h_j, \qquad
    \bar h = \frac1N \sum_{i=1}^{N} h(x_i)

(:math:`\bar h` the mean penultimate feature of the in-distribution training data), keeps the
weights whose contribution is above the :math:`p`-th percentile of all :math:`C F` entries of
:math:`V` -- the top :math:`(100 - p)\%` -- and zeroes the rest:

.. math::

    M_{cj} = \mathbb{1}\big[V_{cj} > P_p(V)\big], \qquad
    \tilde z(x) = (M \odot W)\, h(x) + b, \qquad
    s(x) = -T \log \sum_{c=1}^{C} e^{\tilde z_c(x) / T}.

:math:`P_p` is numpy's linear-interpolation percentile and the comparison is strict, as in the
reference code and OpenOOD. The default sparsity :math:`p = 90` is the paper's CIFAR setting
(also OpenOOD's default; the paper uses :math:`p = 70` on ImageNet). ``fit`` learns
:math:`\bar h` only; the mask is built from the head's current weights when scoring, so
``sparsity`` (like ``temperature``) is a score-time parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uncertainty.ood._shaping import HeadDetector, apply_head, percentile
from uncertainty.ood.energy import energy_score
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["DICE", "dice_mask", "dice_score"]


def dice_mask(weight: torch.Tensor, mean_features: torch.Tensor,
              sparsity: float = 90.0) -> torch.Tensor:
    r"""DICE's mask :math:`M = \mathbb{1}[W \odot \bar h > P_p(W \odot \bar h)]`.

    Args:
        weight: ``(C, F)`` weight of the linear head.
        mean_features: ``(F,)`` mean in-distribution training feature :math:`\bar h`.
        sparsity: :math:`p \in (0, 100)`, the percentage of weights dropped (about).

    Returns:
        ``(C, F)`` bool mask on ``weight``'s device.
    """
    if weight.dim() != 2 or mean_features.shape != (weight.shape[1],):
        raise ValueError(
            f"dice_mask needs a head weight (C, F) and mean features (F,); got "
            f"{tuple(weight.shape)} and {tuple(mean_features.shape)}."
        )
    contrib = weight.detach().to(torch.float64) * mean_features.to(weight.device,
                                                                   torch.float64)  # (C, F)
    mask = contrib > percentile(contrib, sparsity)
    if not bool(mask.any()):
        raise ValueError(
            f"DICE keeps no weight: no contribution W * mean_features exceeds its "
            f"{sparsity:g}th percentile (all {contrib.numel()} contributions are equal, e.g. "
            "the mean training features are all zero)."
        )
    return mask


def dice_score(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               mean_features: torch.Tensor, sparsity: float = 90.0,
               temperature: float = 1.0) -> torch.Tensor:
    r"""Energy of the sparsified head, :math:`-T\log\sum_c \exp(((M \odot W) h + b)_c / T)`.

    Args:
        features: ``(N, F)`` penultimate features.
        weight: ``(C, F)`` and bias: ``(C,)`` or ``None``, of the linear head.
        mean_features: ``(F,)`` mean in-distribution training feature.
        sparsity: :math:`p`, see :func:`dice_mask`.
        temperature: :math:`T > 0` of the energy (1 in the paper).

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    masked = weight.detach() * dice_mask(weight, mean_features, sparsity)  # (C, F)
    b = None if bias is None else bias.detach()

    def sparse_head(h: torch.Tensor) -> torch.Tensor:
        return F.linear(h.to(device=masked.device, dtype=masked.dtype), masked, b)

    return energy_score(apply_head(sparse_head, features, "dice_score"), temperature)


class DICE(HeadDetector):
    """DICE (Sun & Li 2022): energy of the linear head with only its top-contributing weights;
    see the module docstring.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier, with ``features`` and a :class:`torch.nn.Linear` ``head``.
    sparsity : float
        :math:`p \\in (0, 100)`: the weights with contributions above the ``p``-th percentile
        are kept (default 90, the paper's CIFAR setting).
    temperature : float
        :math:`T > 0` of the energy (default 1).
    layer : None
        Must stay ``None``: the features are the head's input.

    Attributes
    ----------
    mean_features_ : Tensor ``(F,)`` float64, the mean training feature :math:`\\bar h`.
    """

    name = "dice"
    reference = "Sun & Li 2022, ECCV"
    fit_needs = frozenset({"features"})
    needs_linear_head = True
    _state_names = ("mean_features_",)
    score_time_params = ("sparsity", "temperature")
    percent_params = ("sparsity",)

    def __init__(self, model: nn.Module | None = None, *, sparsity: float = 90.0,
                 temperature: float = 1.0, layer: LayerSpec = None) -> None:
        super().__init__(model, temperature=temperature, layer=layer)
        self.sparsity = sparsity

    def _fit(self, outputs: ModelOutputs) -> None:
        self.mean_features_ = outputs.features.to(torch.float64).mean(dim=0)  # (F,)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        head = self._head()
        if head.in_features != len(self.mean_features_):
            raise ValueError(
                f"{type(self).__name__} was fitted on {len(self.mean_features_)} features, but "
                f"the model's head reads {head.in_features}."
            )
        return dice_score(outputs.features, head.weight, head.bias, self.mean_features_,
                          self.sparsity, self.temperature)
