r"""What the activation-shaping detectors share: ReAct, DICE, ASH-P / ASH-B / ASH-S and SCALE.

Each of them modifies the penultimate features :math:`h(x) \in \mathbb{R}^F` (or the
classifier's last linear layer), re-applies the classifier's **head** to get new logits
:math:`\tilde z(x)`, and scores with the energy :math:`-T \log \sum_c e^{\tilde z_c / T}`
(:func:`~uncertainty.ood.energy.energy_score`; higher = more OOD).

The features must therefore be exactly what the head reads: ``model.features(x)``, with
``model.head`` the classifier's last module (every :mod:`dunno.nets` backbone has both, and
``model(x) == model.head(model.features(x))`` in eval mode). A model without them, or a
``layer=`` hook (whose output the head does not read), is refused by
:meth:`HeadDetector.check_model` -- these detectors never score some other layer silently.

Helpers: :func:`percentile` (numpy's default "linear" percentile over all entries of a
tensor), :func:`kept_count` and :func:`top_k_mask` (the per-sample pruning of ASH and SCALE),
:func:`sharpening_ratio` (ASH-S's and SCALE's :math:`s_1 / s_2`, with its undefined cases
refused) and :func:`apply_head` (the head in eval mode, without gradients, with a check that the
new logits are finite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from dunno.validation import check_float
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import model_device

__all__ = ["HeadDetector", "apply_head", "kept_count", "percentile", "sharpening_ratio",
           "top_k_mask"]


def percentile(values: torch.Tensor, q: float) -> float:
    r"""The ``q``-th percentile of all entries of ``values``, as :func:`numpy.percentile`
    computes it by default (linear interpolation between order statistics): with the
    :math:`n` entries sorted, :math:`v_{(0)} \le \dots \le v_{(n-1)}`, position
    :math:`r = \tfrac{q}{100}(n-1)`, :math:`i = \lfloor r \rfloor`,

    .. math::

        P_q = v_{(i)} + (r - i)\,(v_{(i+1)} - v_{(i)}).

    Computed in float64 with two :func:`torch.kthvalue` selections (no full sort: a ReAct fit
    over 55 000 x 84 activations selects from 4.6 million values).

    Args:
        values: any shape, at least one entry.
        q: percentile in ``[0, 100]``.

    Returns:
        A Python float.
    """
    flat = values.reshape(-1).to(torch.float64)
    n = flat.numel()
    if n == 0:
        raise ValueError("The percentile of an empty tensor is undefined; 'values' is empty.")
    rank = q / 100.0 * (n - 1)
    low = min(int(math.floor(rank)), n - 1)
    frac = rank - low
    a = float(torch.kthvalue(flat, low + 1).values) if n > 1 else float(flat[0])
    if frac == 0.0 or low + 1 >= n:
        return a
    b = float(torch.kthvalue(flat, low + 2).values)
    return a + (b - a) * frac


def kept_count(num_features: int, pct: float, owner: str) -> int:
    r"""How many of ``num_features`` activations per sample survive pruning at percentile
    ``pct``: :math:`k = F - \operatorname{round}(F \cdot p / 100)` (ASH's and SCALE's
    reference code, rounding half to even). Refused when it keeps none."""
    k = num_features - round(num_features * pct / 100.0)
    if k < 1:
        raise ValueError(
            f"The 'percentile' parameter of {owner} prunes all {num_features} features "
            f"(k = F - round(F * p / 100) = {k} kept); it must keep at least one. Got {pct!r} "
            f"instead; use a percentile below {100.0 * (num_features - 0.5) / num_features:g}."
        )
    return k


def top_k_mask(features: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, F)`` bool mask of the ``k`` largest activations of each row.

    Ties are broken towards the lower feature index (a stable descending sort), so the same
    row gives the same mask on every device and in every batch; this matters only for ASH-B,
    where the kept positions (not only their values) enter the result.
    """
    order = torch.sort(features, dim=1, descending=True, stable=True).indices[:, :k]  # (N, k)
    mask = torch.zeros(features.shape, dtype=torch.bool, device=features.device)
    return mask.scatter_(1, order, True)


def sharpening_ratio(features: torch.Tensor, mask: torch.Tensor, owner: str) -> torch.Tensor:
    r""":math:`s_1 / s_2` per row, float64: :math:`s_1 = \sum_j h_j` over all activations,
    :math:`s_2 = \sum_{j \in \text{kept}} h_j` over the kept ones (ASH-S, SCALE).

    For non-negative features :math:`1 \le s_1/s_2 \le F/k` whenever a feature is non-zero, so
    the factor :math:`e^{s_1/s_2}` is at most :math:`e^{F/k}` (:math:`e^{10}` at the 90th
    percentile). A row of zeros (nothing fires) gets ratio 1: its shaped features are zero
    whatever the factor, so the logits are the head's bias. With signed features :math:`s_2`
    can be 0 for a non-zero row; the ratio is then undefined and the row is refused (a
    :class:`ValueError` naming the row), never turned into inf / NaN.
    """
    h = features.to(torch.float64)
    s1 = h.sum(dim=1)  # (N,)
    s2 = (h * mask).sum(dim=1)  # (N,)
    zero_row = h.abs().amax(dim=1) == 0
    bad = (s2 == 0) & ~zero_row
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{owner}: the kept activations of row {row} of 'features' sum to s2 = 0 while the "
            f"row is not zero (all activations sum to s1 = {float(s1[row]):g}), so the "
            "sharpening factor exp(s1 / s2) is undefined. This happens only with negative "
            "features; the method assumes non-negative (post-ReLU) penultimate activations."
        )
    return torch.where(s2 == 0, torch.ones_like(s1), s1 / torch.where(s2 == 0, 1.0, s2))


def apply_head(head: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor,
               owner: str) -> torch.Tensor:
    """``head(features)`` -> logits ``(N, C)``: on the head's device and in its dtype, in eval
    mode (restored afterwards), without gradients. Non-finite logits (shaped features that
    overflow, e.g. a sharpening factor :math:`e^{s_1/s_2}` too large for the dtype) raise a
    :class:`ValueError` instead of reaching the energy as inf / NaN."""
    module = head if isinstance(head, nn.Module) else None
    if module is not None:
        device = model_device(module)
        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()),
                     features.dtype)
        features = features.to(device=device, dtype=dtype)
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        with torch.no_grad():
            logits = head(features)
    finally:
        if module is not None:
            module.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or len(logits) != len(features):
        shape = tuple(logits.shape) if hasattr(logits, "shape") else type(logits).__name__
        raise ValueError(f"{owner}: the head must map features (N, F) to logits (N, C); for "
                         f"N = {len(features)} it returned {shape}.")
    finite = torch.isfinite(logits).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(
            f"{owner}: the head gave non-finite logits for {int((~finite).sum())} of "
            f"{len(logits)} inputs (first: row {int((~finite).nonzero()[0, 0])}) from the "
            "shaped features: they overflow the head's dtype. Lower the 'percentile' (a "
            "smaller sharpening factor) or use float64 features and head."
        )
    return logits


class HeadDetector(OODDetector):
    """An OOD detector that re-applies ``model.head`` to modified penultimate features.

    ``needs = {"features"}``: the shared pass computes ``model.features(x)`` once per dataset
    and the detector makes no pass of its own (the head is one small layer). ``layer`` must be
    ``None``; :meth:`check_model` refuses a model without ``features`` and ``head``.
    Subclasses set :attr:`needs_linear_head` when they read the head's weight matrix (DICE).
    """

    needs = frozenset({"features"})
    #: Whether the head must be a :class:`torch.nn.Linear` (its weight and bias are read).
    needs_linear_head: ClassVar[bool] = False
    #: Hyper-parameters that are percentages in the open interval (0, 100).
    percent_params: ClassVar[tuple[str, ...]] = ()
    reads_head = True

    def __init__(self, model: nn.Module | None = None, *, temperature: float = 1.0,
                 layer=None) -> None:
        super().__init__(model, layer=layer)
        self.temperature = temperature

    @classmethod
    def applies_to(cls, model: nn.Module | None) -> bool:
        """A model with a ``features`` method and a ``head`` module (an ``nn.Linear`` for
        DICE); ``None`` (precomputed outputs) passes."""
        if model is None:
            return True
        head = getattr(model, "head", None)
        head_ok = isinstance(head, nn.Linear) if cls.needs_linear_head else \
            isinstance(head, nn.Module)
        return callable(getattr(model, "features", None)) and head_ok

    def _check_layer_is_none(self) -> None:
        if self.layer is not None:
            owner = type(self).__name__
            raise ValueError(
                f"The 'layer' parameter of {owner} ({self.name!r}) must be None. Got "
                f"{self.layer!r} instead: {owner} re-applies the classifier's head "
                "(model.head) to modified penultimate features, so the features must be the "
                "head's input, model.features(x); a hooked layer's output is not what the head "
                "reads."
            )

    def check_model(self) -> None:
        """Refuse a ``layer`` and a model without ``features`` + ``head`` (see the class)."""
        self._check_layer_is_none()
        if self.model is None:
            return
        if not self.applies_to(self.model):
            owner, kind = type(self).__name__, type(self.model).__name__
            head = getattr(self.model, "head", None)
            missing = [what for what, ok in (
                ("'features' method", callable(getattr(self.model, "features", None))),
                ("'head' module", isinstance(head, nn.Module))) if not ok]
            if missing:
                why = f"{kind} has no {' and no '.join(missing)}"
            else:
                why = f"its head is a {type(head).__name__}, not a torch.nn.Linear"
            linear = " (a torch.nn.Linear, whose weight is sparsified)" \
                if self.needs_linear_head else ""
            raise ValueError(
                f"The 'model' argument of {owner} ({self.name!r}) cannot be scored: {why}. "
                f"{owner} modifies the penultimate features model.features(x) -> (N, F) and "
                f"re-applies the classifier's head model.head{linear} to them, so it needs both "
                "(every dunno.nets backbone has them)."
            )
        super().check_model()

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_layer_is_none()
        check_float(self.temperature, "temperature", type(self).__name__, low=0.0,
                    low_open=True)
        for name in self.percent_params:
            check_float(getattr(self, name), name, type(self).__name__, low=0.0, high=100.0,
                        low_open=True, high_open=True)

    def _head(self) -> nn.Module:
        """``model.head``, after :meth:`check_model`; refused without a model."""
        if self.model is None:
            owner = type(self).__name__
            raise ValueError(
                f"{owner} re-applies the classifier's head to the modified features, but the "
                f"detector was built without a model. Pass it as {owner}(model, ...) (the "
                "model whose features the outputs hold)."
            )
        self.check_model()
        return self.model.head
