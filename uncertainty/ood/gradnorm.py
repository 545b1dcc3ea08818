r"""GradNorm (Huang, Geng & Li, "On the Importance of Gradients for Detecting Distributional
Shifts in the Wild", NeurIPS 2021).

Back-propagate, for each input on its own, the KL divergence between the uniform distribution
:math:`u = (1/C, \dots, 1/C)` and the temperature-scaled softmax of the logits
:math:`z = W h + b` of the last layer (weights :math:`W \in \mathbb R^{C \times F}`, input
:math:`h = h(x)`), and take the L1 norm of its gradient with respect to :math:`W`:

.. math::

    D(x) = \operatorname{KL}\bigl[u \,\Vert\, \operatorname{softmax}(z / T)\bigr]
         = -\frac1C \sum_{c=1}^{C} \log \operatorname{softmax}(z / T)_c - \log C,
    \qquad S(x) = \Bigl\lVert \frac{\partial D(x)}{\partial W} \Bigr\rVert_1 .

In-distribution inputs have the larger gradient norm, so the OOD score is :math:`-S(x)`
(higher = more OOD). :math:`T = 1` as in the paper. For a linear last layer the gradient has
a closed form: with :math:`p = \operatorname{softmax}(z/T)`,
:math:`\partial D / \partial z_c = (p_c - 1/C) / T` and
:math:`\partial D / \partial W_{cj} = (p_c - 1/C)\, h_j / T`, so

.. math::

    S(x) = \frac{1}{T} \Bigl(\sum_{c} \bigl\lvert p_c - \tfrac1C \bigr\rvert\Bigr)
           \Bigl(\sum_{j} \lvert h_j \rvert\Bigr),

which the tests check against. The score is computed by differentiation all the same --
per-example gradients with :func:`torch.func.vmap` over :func:`torch.func.grad`, batched, no
per-example loop -- so that it is the paper's definition whatever the loss's form.

**Which layer.** The last layer is ``model.head`` when that is an :class:`~torch.nn.Linear`
(every :mod:`dunno.nets` backbone), or the last module of an :class:`~torch.nn.Sequential`
head ending in one (whose earlier modules run first, in eval mode). Its input is computed
from the penultimate features ``model.features(x)`` of the shared pass
(:func:`~uncertainty.ood.extract_outputs`), so GradNorm needs no pass of its own through the
network; a ``layer`` hook is refused (a hooked layer's output is not the head's input).
Everything is computed in float64.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import grad, vmap

from dunno.validation import check_float
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["GradNorm", "gradnorm_score", "last_linear_layer"]

#: Per-example gradient entries held at once (rows per block = this // (C * F)).
BLOCK_ELEMENTS = 2**24


def gradnorm_score(features: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    r"""Negative L1 norm of :math:`\partial\, \mathrm{KL}[u \Vert \mathrm{softmax}((W h + b)/T)]
    / \partial W`, one per example, by :func:`torch.func.vmap` of :func:`torch.func.grad`.

    Args:
        features: ``(N, F)`` inputs :math:`h` of the last linear layer.
        weight: ``(C, F)`` its weights :math:`W`.
        bias: ``(C,)`` its bias :math:`b`, or ``None``.
        temperature: :math:`T > 0` (1 in the paper).

    Returns:
        ``(N,)`` float64 scores :math:`-S(x) \le 0`; higher = more OOD.
    """
    w = weight.detach().to(torch.float64)  # (C, F)
    h = features.detach().to(device=w.device, dtype=torch.float64)  # (N, F)
    b = None if bias is None else bias.detach().to(device=w.device, dtype=torch.float64)
    num_classes = w.shape[0]

    def kl_from_uniform(w_: torch.Tensor, h_: torch.Tensor) -> torch.Tensor:
        z = w_ @ h_  # (C,)
        if b is not None:
            z = z + b
        return -torch.log_softmax(z / temperature, dim=0).mean() - math.log(num_classes)

    per_example = vmap(grad(kl_from_uniform), in_dims=(None, 0))  # (B, F) -> (B, C, F)
    rows = max(1, BLOCK_ELEMENTS // max(1, w.numel()))
    out = [per_example(w, h[start:start + rows]).abs().sum(dim=(1, 2))
           for start in range(0, len(h), rows)]
    return -torch.cat(out) if out else h.new_zeros(0)


def last_linear_layer(model: nn.Module | None) -> tuple[nn.Module | None, nn.Linear] | None:
    """``(prefix, linear)`` of ``model.head``: ``(None, head)`` for a linear head,
    ``(head[:-1], head[-1])`` for an :class:`~torch.nn.Sequential` ending in a linear layer;
    ``None`` when the model has no ``features`` method or no such head."""
    if model is None or not callable(getattr(model, "features", None)):
        return None
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return None, head
    if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
        return (head[:-1] if len(head) > 1 else None), head[-1]
    return None


class GradNorm(OODDetector):
    r"""GradNorm detector (Huang, Geng & Li 2021), see the module docstring. ``fit`` is a
    no-op.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier, with ``features(x) -> (N, F)`` and a ``head`` (an ``nn.Linear``, or an
        ``nn.Sequential`` ending in one) mapping them to the logits; needed to score, also
        through :meth:`score_outputs`.
    temperature : float
        :math:`T > 0` of the softmax (default 1, the paper's).
    layer : None
        Must be None: the gradient is taken through ``model.head`` applied to
        ``model.features(x)``.
    """

    name = "gradnorm"
    reference = "Huang, Geng & Li 2021, NeurIPS"
    needs = frozenset({"features"})
    score_time_params = ("temperature",)
    reads_head = True  # through model.head applied to model.features: no layer

    def __init__(self, model: nn.Module | None = None, *, temperature: float = 1.0,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.temperature = temperature

    @classmethod
    def applies_to(cls, model: nn.Module | None) -> bool:
        """True when ``model`` has ``features`` and a linear ``head`` (see
        :func:`last_linear_layer`)."""
        return model is None or last_linear_layer(model) is not None

    @classmethod
    def _cannot_score_reason(cls) -> str:
        return ("has no 'features' method with a 'head' that GradNorm can differentiate: it "
                "needs model.features(x) -> (N, F) and model.head, an nn.Linear (or an "
                "nn.Sequential ending in one) mapping those features to the logits, as every "
                "dunno.nets backbone has.")

    def check_model(self) -> None:
        """Besides the base checks, refuse a ``layer`` hook and a model without a linear
        ``head`` over ``features``."""
        if self.layer is not None:
            raise ValueError(
                f"The 'layer' parameter of {type(self).__name__} ({self.name!r}) must be None. "
                f"Got {self.layer!r} instead. GradNorm differentiates through model.head "
                "applied to model.features(x); a hooked layer's output is not the head's "
                "input, so there is no last-layer gradient to take from it."
            )
        super().check_model()

    def _validate_params(self) -> None:
        super()._validate_params()
        check_float(self.temperature, "temperature", type(self).__name__, low=0.0,
                    low_open=True)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        owner = type(self).__name__
        if self.model is None:
            raise ValueError(
                f"{owner} differentiates through the classifier's head, but the detector was "
                f"built without one. Pass it as {owner}(model, ...)."
            )
        self.check_model()
        prefix, linear = last_linear_layer(self.model)
        feats = outputs.features.to(linear.weight.device)  # (N, F)
        first = linear if prefix is None else prefix[0]
        width = getattr(first, "in_features", None)
        if isinstance(width, int) and feats.shape[1] != width:
            raise ValueError(
                f"{owner}: model.head takes {width} inputs per example; the features give "
                f"{feats.shape[1]}. Pass the model's own features (extract_outputs(model, "
                "data) without 'layer')."
            )
        if prefix is not None:
            was_training = prefix.training
            prefix.eval()
            try:
                with torch.no_grad():
                    feats = prefix(feats.to(linear.weight.dtype)).flatten(1)
            finally:
                prefix.train(was_training)
        return gradnorm_score(feats, linear.weight, linear.bias, self.temperature)
