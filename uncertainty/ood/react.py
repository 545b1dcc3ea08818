r"""ReAct: rectified activations (Sun, Guo & Li, "ReAct: Out-of-distribution Detection With
Rectified Activations", NeurIPS 2021).

OOD inputs drive a few penultimate units to abnormally large values, which inflate the logits.
ReAct truncates every activation at a threshold :math:`c` before the classifier's head
:math:`z = W h + b` and scores with the energy of the rectified logits:

.. math::

    \bar h(x) = \min\big(h(x), c\big), \qquad
    s(x) = -T \log \sum_{c'=1}^{C} \exp\!\Big(\frac{\mathrm{head}(\bar h(x))_{c'}}{T}\Big),

with :math:`c` the :math:`p`-th percentile of **all** penultimate activations of the
in-distribution training data (every entry of the ``(N, F)`` feature matrix; numpy's linear
interpolation), estimated on whatever ``fit`` is given (the training split in
:func:`~uncertainty.ood.run_ood`; ``fit_split="val"`` uses the validation split, as OpenOOD
does). The default :math:`p = 90` and :math:`T = 1` are the paper's (and OpenOOD's).

ReAct is written for non-negative (post-ReLU) features, where clipping only removes the
abnormally large tail. With signed features the same formula is applied as written
(:math:`\min(h, c)` clips from above only; negative activations pass unchanged), which the paper
does not study. If the threshold is 0 for non-negative features (at least :math:`p`\% of the
training activations are zero), every rectified vector would be zero and every score the same;
``fit`` refuses that and asks for a higher percentile.
"""

from __future__ import annotations

import torch
from torch import nn

from uncertainty.ood._shaping import HeadDetector, apply_head, percentile
from uncertainty.ood.energy import energy_score
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["ReAct", "react_score", "react_threshold"]


def react_threshold(features: torch.Tensor, pct: float = 90.0) -> float:
    r"""ReAct's clipping threshold :math:`c`: the ``pct``-th percentile of all entries of the
    in-distribution training features ``(N, F)`` (:func:`numpy.percentile`'s default
    interpolation)."""
    return percentile(features, pct)


def react_score(features: torch.Tensor, head, threshold: float,
                temperature: float = 1.0) -> torch.Tensor:
    r"""Energy of the head applied to the clipped features,
    :math:`-T \log\sum_c \exp(\mathrm{head}(\min(h, c))_c / T)`.

    Args:
        features: ``(N, F)`` penultimate features (the head's input).
        head: the classifier's head, ``(N, F) -> (N, C)`` logits (``model.head``).
        threshold: the clipping threshold :math:`c` (:func:`react_threshold`).
        temperature: :math:`T > 0` of the energy (1 in the paper).

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    clipped = features.clamp(max=threshold)  # (N, F)
    return energy_score(apply_head(head, clipped, "react_score"), temperature)


class ReAct(HeadDetector):
    """ReAct (Sun et al. 2021): energy of the head applied to features clipped at the
    ``percentile``-th percentile of the training activations; see the module docstring.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier, with ``features`` and ``head`` (every :mod:`dunno.nets` backbone).
    percentile : float
        :math:`p \\in (0, 100)` of the clipping threshold (default 90, the paper's).
    temperature : float
        :math:`T > 0` of the energy (default 1).
    layer : None
        Must stay ``None``: the features are the head's input.

    Attributes
    ----------
    threshold_ : float, the clipping threshold :math:`c` learned by ``fit``.
    """

    name = "react"
    reference = "Sun, Guo & Li 2021, NeurIPS"
    fit_needs = frozenset({"features"})
    _state_names = ("threshold_",)
    score_time_params = ("temperature",)
    percent_params = ("percentile",)

    def __init__(self, model: nn.Module | None = None, *, percentile: float = 90.0,
                 temperature: float = 1.0, layer: LayerSpec = None) -> None:
        super().__init__(model, temperature=temperature, layer=layer)
        self.percentile = percentile

    def _fit(self, outputs: ModelOutputs) -> None:
        feats = outputs.features
        threshold = react_threshold(feats, self.percentile)
        if threshold <= 0 and float(feats.min()) >= 0:
            zero = float((feats == 0).to(torch.float64).mean())
            raise ValueError(
                f"The 'percentile' parameter of {type(self).__name__} gives a clipping "
                f"threshold of {threshold:g}: {100 * zero:.1f}% of the training activations are "
                "zero, so every clipped feature vector would be zero and every input would get "
                f"the same score. Got {self.percentile!r}; use a percentile above "
                f"{100 * zero:.1f}."
            )
        self.threshold_ = threshold

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return react_score(outputs.features, self._head(), self.threshold_, self.temperature)
