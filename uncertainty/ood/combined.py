r"""Several detectors combined through conformal p-values fitted on held-out in-distribution
data (their minimum, or Fisher's method).

Logit scores (Energy, MaxLogit), feature-density scores (DDU, Mahalanobis, kNN) and
input-space novelty scores (RaPP) fail in different places. On LeNet-5 models, logit scores
separate MNIST from noise perfectly but a Fashion-MNIST model is confident on many MNIST
digits; feature densities catch those digits but not noise (noise features have small norms
and land between the class clusters); an autoencoder trained on the images catches noise and
most near-OOD images. Combining scores on different scales needs a common one, and choosing
it must not look at OOD data.

**p-values.** ``fit`` splits the in-distribution training data at random (seeded) into a part
the components are fitted on and a held-out part (``holdout``, default 20%) whose scores
:math:`s_k^{(1)} \le \dots \le s_k^{(n)}` are the reference of component :math:`k`. A test
score gets the conformal p-value (Vovk et al. 2005; Bates et al., "Testing for outliers with
conformal p-values", Ann. Statist. 2023)

.. math::

    p_k(x) = \frac{1 + \#\{i : s_k^{(i)} \ge s_k(x)\}}{n + 1},

valid without any assumption on the score distribution. Beyond the largest reference score
the p-value is extrapolated with an exponential tail fitted to the top ``tail`` fraction of the
reference (the generalised Pareto tail with shape 0; :math:`\beta` = mean exceedance over the
threshold :math:`u`), so that far-out inputs keep being ordered:

.. math::

    -\log p_k(x) = \log(n + 1) + \frac{s_k(x) - s_k^{(n)}}{\beta_k}
    \quad\text{for } s_k(x) > s_k^{(n)}.

**Combination.** ``reduce="fisher"`` (the default; Fisher 1925, as Haroush et al., "A
Statistical Framework for Efficient Out of Distribution Detection in Deep Neural Networks",
ICLR 2022, do for layer-wise statistics) sums the evidence, ``reduce="max"`` takes the most
extreme component (the min-p rule of Tippett 1931):

.. math::

    s(x) = -\sum_k \log p_k(x) \qquad\text{or}\qquad s(x) = \max_k\, -\log p_k(x).

Held-out data matters: on their own training data feature-density scores are optimistically
low (a kNN bank even contains the point itself).

**The default** (``make_detector("default")``, ``dunno ood --detectors default``): Fisher's
sum of the conformal :math:`-\log p` of the feature norm :math:`\lVert f(x) \rVert_2`
(negated), the multi-layer Mahalanobis ensemble
(:mod:`uncertainty.ood.mahalanobis_ensemble`: Lee et al. 2018's distances at every
convolution and linear layer, Fisher-combined) and RaPP-SAP (Kim et al. 2020). It was chosen by
a procedure that sees **only in-distribution data**
(:func:`uncertainty.ood.selection.select_detector`, run by ``benchmarks/select_default.py``):
on the anchor LeNet-5s of MNIST and Fashion-MNIST, each of the 25 applicable registered
detectors (RaPP with both aggregations) alone and every pair and triple of them under Fisher's
sum and under the maximum (5225 candidates) was fitted on the ``train`` split (this detector's
20% reference held out of it) and scored on the disjoint ``val`` split against eight kinds of
synthetic outliers made from those ``val`` images (:mod:`dunno.data.outliers`: permuted
pixels, shuffled 7 x 7 and 14 x 14 patches, eroded and dilated strokes, additive pixel noise,
overlaid pairs, spliced halves). The rule: the best worst-case AUROC over both models and all
kinds, ties (within one standard error, 0.47 points) by the mean. Winner: worst case 76.09%
(eroded Fashion-MNIST), mean 92.65% over the 16 model x kind pairs; the best worst case,
76.53% (Fisher over ODIN, the Mahalanobis ensemble and RaPP-NAP), ties with it and has a lower
mean (92.31%); the previous default, Fisher's sum of GEN, kNN and RaPP-SAP, ranks 6th (75.56%,
dilated Fashion-MNIST, just outside the tie). The top of the ranking is decided by tenths of a
point on eroded and dilated Fashion-MNIST. No OOD test set took part, so the numbers on them
in ``benchmarks/README.md`` are not tuned to them (the synthetic kinds and the evaluation sets
-- Fashion-MNIST / MNIST, Gaussian noise, ``letters``, rotation by 90 degrees, inversion --
are disjoint by construction). Nothing inside the detector looks at OOD data either.

**Unlabelled fit data.** The Mahalanobis ensemble learns per-class statistics. When the fit
data has no labels, the default (``components=None``) takes the best candidate of the same
selection run among those that need no labels (every candidate without Mahalanobis, its
ensemble and relative variant, DDU or SHE; same rule, 2680 candidates): the maximum of the
conformal :math:`-\log p` of ODIN, kNN and RaPP-SAP (worst case 75.61%, mean 92.70%;
:data:`DEFAULT_COMPONENTS_UNLABELLED`). ``components_`` and ``reduce_`` record which one a
fitted detector uses.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dunno.validation import check_choice, check_probability_level, check_seed
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs, model_device
from uncertainty.ood.registry import DETECTORS, make_detector
from uncertainty.ood.shared_search import active_searches

__all__ = ["DEFAULT_COMPONENTS", "DEFAULT_COMPONENTS_UNLABELLED", "DEFAULT_REDUCE",
           "DEFAULT_REDUCE_UNLABELLED", "Combined", "component_label", "conformal_neg_log_p"]

REDUCTIONS = ("fisher", "max")

#: The default components and rule, chosen from in-distribution data alone (module docstring;
#: ``benchmarks/select_default.py``).
DEFAULT_COMPONENTS: tuple = ("featurenorm", "mahalanobis-ensemble", ("rapp", {"mode": "sap"}))
DEFAULT_REDUCE = "fisher"
#: The default for fit data without labels: the same selection's best label-free candidate.
DEFAULT_COMPONENTS_UNLABELLED: tuple = ("odin", "knn", ("rapp", {"mode": "sap"}))
DEFAULT_REDUCE_UNLABELLED = "max"


def conformal_neg_log_p(
    scores: torch.Tensor, reference: torch.Tensor, tail: float = 0.01, min_tail: int = 10
) -> torch.Tensor:
    r""":math:`-\log p(x)` of conformal p-values against in-distribution ``reference`` scores,
    with an exponential upper tail beyond the largest reference score (module docstring).

    Args:
        scores: ``(N,)`` scores to convert (higher = more OOD).
        reference: ``(n,)`` held-out in-distribution scores of the same detector.
        tail: fraction of the reference used to fit the tail scale :math:`\beta`.
        min_tail: at least this many reference scores in the tail fit.

    Returns:
        ``(N,)`` float64, ``>= 0``; higher = more OOD.
    """
    ref = reference.detach().to(torch.float64).flatten().sort().values  # (n,)
    s = scores.detach().to(device=ref.device, dtype=torch.float64)
    n = len(ref)
    at_least = n - torch.searchsorted(ref, s, right=False)  # #ref >= s
    neg_log_p = math.log(n + 1) - torch.log1p(at_least.to(torch.float64))
    m = min(n, max(min_tail, int(math.ceil(tail * n))))
    top = ref[n - m:]  # (m,) the largest reference scores
    threshold = ref[n - m - 1] if n > m else ref[0]
    beta = float((top - threshold).mean())
    if not beta > 0:
        spread = float(ref[-1] - ref[0])
        beta = spread if spread > 0 else 1.0
    beyond = s > ref[-1]
    extrapolated = math.log(n + 1) + (s - ref[-1]) / beta
    return torch.where(beyond, extrapolated, neg_log_p).to(scores.device)


ComponentSpec = str | tuple[str, dict[str, Any]]


def component_label(spec: ComponentSpec) -> str:
    """``"knn"`` for ``"knn"``; ``"rapp(mode=sap)"`` for ``("rapp", {"mode": "sap"})``."""
    if isinstance(spec, str):
        return spec
    name, params = spec
    inner = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{name}({inner})" if inner else name


class Combined(OODDetector):
    r"""Fisher's combination of conformal p-values of several detectors (module docstring).

    Parameters
    ----------
    model : nn.Module, optional
        The classifier, shared by every component.
    components : tuple, optional
        The component detectors, each a registry name (``"knn"``) or a pair
        ``(name, params)`` (``("rapp", {"mode": "sap"})``). ``None`` (default): chosen from
        in-distribution data (module docstring) -- with labelled fit data the feature norm,
        the multi-layer Mahalanobis ensemble and RaPP-SAP (:data:`DEFAULT_COMPONENTS`),
        without labels ODIN, kNN and RaPP-SAP (:data:`DEFAULT_COMPONENTS_UNLABELLED`).
        Components with a ``device`` parameter (RaPP) default to the model's device;
        components that differ only in a score-time parameter (RaPP's ``mode``) share one fit
        (one autoencoder).
    holdout : float
        Fraction of the fit data held out as the p-value reference, in (0, 1).
    tail : float
        Fraction of the reference used to fit the exponential tail, in (0, 1).
    reduce : {"fisher", "max"}, optional
        Sum (Fisher) or maximum of the :math:`-\log p_k`; ``None`` (default): the default
        components' rule (:data:`DEFAULT_REDUCE` or :data:`DEFAULT_REDUCE_UNLABELLED`), or
        ``"fisher"`` for components given explicitly.
    seed : int
        Seed of the fit / held-out split.
    layer : str or list of str, optional
        Module whose output are the features (passed to every component that has ``layer``).

    Attributes
    ----------
    detectors_ : dict label -> fitted component; references_ : dict label -> ``(n,)`` held-out
    in-distribution scores; components_, reduce_ : the components and rule used.
    """

    name = "combined"
    reference = "conformal p-values (Bates et al. 2023) of the feature norm, the Mahalanobis " \
                "ensemble (Lee et al. 2018) and RaPP (Kim et al. 2020), combined by Fisher's " \
                "method (Haroush et al. 2022, ICLR) or their minimum"
    _state_names = ("detectors_", "references_", "components_", "reduce_")

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        components: tuple[ComponentSpec, ...] | None = None,
        holdout: float = 0.2,
        tail: float = 0.01,
        reduce: str | None = None,
        seed: int = 0,
        layer: LayerSpec = None,
    ) -> None:
        super().__init__(model, layer=layer)
        self.components = components
        self.holdout = holdout
        self.tail = tail
        self.reduce = reduce
        self.seed = seed

    def _plan(self, labelled: bool) -> tuple[tuple[ComponentSpec, ...], str]:
        """The components and rule for fit data with (or without) labels."""
        if self.components is not None:
            return tuple(self.components), self.reduce or DEFAULT_REDUCE
        if labelled:
            return DEFAULT_COMPONENTS, self.reduce or DEFAULT_REDUCE
        return DEFAULT_COMPONENTS_UNLABELLED, self.reduce or DEFAULT_REDUCE_UNLABELLED

    def _candidates(self) -> list[OODDetector]:
        """Every component this detector may fit: the fitted ones once fitted, else those of
        both plans while ``components`` is ``None`` (the fit data decides)."""
        if getattr(self, "detectors_", None) is not None:
            return list(self.detectors_.values())
        plans = (True,) if self.components is not None else (True, False)
        return [d for labelled in plans for d in self._make_components(labelled).values()]

    def _make_components(self, labelled: bool = True) -> dict[str, OODDetector]:
        owner = type(self).__name__
        components = self._plan(labelled)[0]
        if not isinstance(components, tuple | list) or not components:
            raise ValueError(
                f"The 'components' parameter of {owner} must be a non-empty tuple of detector "
                f"names or (name, params) pairs. Got {self.components!r} instead."
            )
        out: dict[str, OODDetector] = {}
        for spec in components:
            if isinstance(spec, str):
                name, params = spec, {}
            elif (isinstance(spec, tuple | list) and len(spec) == 2
                  and isinstance(spec[0], str) and isinstance(spec[1], dict)):
                name, params = spec[0], dict(spec[1])
            else:
                raise ValueError(
                    f"Each entry of the 'components' parameter of {owner} must be a detector "
                    f"name or a (name, params) pair. Got {spec!r}."
                )
            if name == self.name or name not in DETECTORS:
                known = [n for n in DETECTORS if n != self.name]
                raise ValueError(
                    f"The 'components' parameter of {owner} names {name!r}; it must list "
                    f"detectors from {known}."
                )
            label = component_label((name, params))
            if label in out:
                raise ValueError(f"The 'components' parameter of {owner} lists {label!r} twice.")
            cls = DETECTORS[name]
            if "layer" in cls.param_names() and self.layer is not None:
                params.setdefault("layer", self.layer)
            if "device" in cls.param_names() and self.model is not None:
                params.setdefault("device", str(model_device(self.model)))
            try:
                out[label] = make_detector(name, self.model if cls.uses_model else None,
                                           **params)
            except ValueError as err:  # say which detector the user asked for
                raise ValueError(f"{owner} ({self.name!r}, the default detector unless "
                                 f"'components' is given) cannot use its component "
                                 f"{label!r}. {err}") from err
        return out

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        """The union of the components' needs."""
        return frozenset().union(*(d.needs for d in self._candidates()))

    @property
    def fit_needs_labels(self) -> bool:  # type: ignore[override]
        """Whether a component given in ``components`` learns per-class statistics (the
        default needs no labels: it falls back to its label-free components)."""
        return self.components is not None and any(
            d.fit_needs_labels for d in self._make_components().values())

    @property
    def fit_needs(self) -> frozenset[str]:  # type: ignore[override]
        """What fitting and held-out scoring of every component read."""
        return frozenset().union(*(d.fit_needs | d.needs for d in self._candidates()))

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        check_probability_level(self.holdout, "holdout", owner)
        check_probability_level(self.tail, "tail", owner)
        if self.reduce is not None:
            check_choice(self.reduce, "reduce", owner, REDUCTIONS)
        check_seed(self.seed, owner)
        for det in self._candidates():
            det._validate_params()

    def _fit(self, outputs: ModelOutputs) -> None:
        n = len(outputs)
        n_hold = int(round(self.holdout * n))
        if n_hold < 2 or n - n_hold < 2:
            raise ValueError(
                f"Combined needs at least 2 examples on each side of its {self.holdout:g} "
                f"held-out split; the fit data has {n} examples."
            )
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=g)
        held, kept = order[:n_hold].sort().values, order[n_hold:].sort().values
        fit_part, held_part = outputs.subset(kept), outputs.subset(held)
        searches = active_searches()  # inside run_ood: kNN searches shared with kNN's
        if searches is not None and outputs.features is not None:
            searches.note_subset(fit_part.features, outputs.features, kept)
        labelled = outputs.labels is not None
        detectors: dict[str, OODDetector] = {}
        references = {}
        for label, det in self._make_components(labelled).items():
            shared = next((v for d in detectors.values()
                           if (v := d.fitted_variant(det)) is not None), None)
            det = shared if shared is not None else det.fit_outputs(fit_part)
            references[label] = det.score_outputs(held_part).cpu()
            detectors[label] = det
        self.detectors_ = detectors
        self.references_ = references
        self.components_, self.reduce_ = self._plan(labelled)

    def component_scores(self, outputs: ModelOutputs) -> dict[str, torch.Tensor]:
        r"""Each component's :math:`-\log p_k` for precomputed outputs: ``(N,)`` each."""
        self.check_fitted()
        return {
            name: conformal_neg_log_p(det.score_outputs(outputs), self.references_[name],
                                      self.tail).cpu()
            for name, det in self.detectors_.items()
        }

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        z = torch.stack(list(self.component_scores(outputs).values()))  # (K, N)
        rule = self.reduce if self.reduce is not None else self.reduce_
        return z.amax(dim=0) if rule == "max" else z.sum(dim=0)
