"""The detector registry: ``make_detector("energy", model, temperature=1.0)``.

:data:`DETECTORS` maps registry names to classes, in the order tables list them.

**Extension point.** A new detector is one file with a pure score function and an
:class:`~uncertainty.ood._base.OODDetector` subclass declaring ``name``, ``needs`` (and
``fit_needs``), registered with :func:`register_detector` (the contract tests in
``tests/uncertainty/test_ood.py`` then run over it automatically). The predictive-uncertainty
detectors landed this way: ``mc-dropout`` (MC-Dropout mutual information, ``needs =
{"input"}``: T stochastic passes through :class:`uncertainty.predictive.MCDropout`) and
``ensemble-disagreement`` (the same quantity over the members of an ensemble with
``member_logits``).

Density-based detectors (``uses_density = True``) score through a density model instead of the
classifier (:mod:`uncertainty.ood._density`): ``make_detector("likelihood-ratio",
density=nade)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from uncertainty.ood._base import OODDetector
from uncertainty.ood.combined import Combined
from uncertainty.ood.complexity import InputComplexity
from uncertainty.ood.ddu import DDU
from uncertainty.ood.energy import Energy
from uncertainty.ood.ensemble_disagreement import EnsembleDisagreement
from uncertainty.ood.entropy import Entropy
from uncertainty.ood.featurenorm import FeatureNorm
from uncertainty.ood.knn import KNN
from uncertainty.ood.likelihood import Likelihood
from uncertainty.ood.likelihood_ratio import LikelihoodRatio
from uncertainty.ood.mahalanobis import Mahalanobis
from uncertainty.ood.maxlogit import MaxLogit
from uncertainty.ood.mc_dropout_mi import MCDropoutMI
from uncertainty.ood.msp import MSP
from uncertainty.ood.odin import ODIN
from uncertainty.ood.rapp import RaPP
from uncertainty.ood.typicality import Typicality

__all__ = ["DETECTORS", "available_detectors", "make_detector", "register_detector"]

#: Every detector by registry name.
DETECTORS: dict[str, type[OODDetector]] = {
    cls.name: cls
    for cls in (MSP, MaxLogit, Entropy, Energy, ODIN, Mahalanobis, DDU, KNN, FeatureNorm, RaPP,
                Combined, MCDropoutMI, EnsembleDisagreement, Likelihood, LikelihoodRatio,
                InputComplexity, Typicality)
}


def register_detector(cls: type[OODDetector]) -> type[OODDetector]:
    """Add ``cls`` to :data:`DETECTORS` under ``cls.name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, OODDetector)) or not cls.name:
        raise ValueError(
            f"register_detector needs an OODDetector subclass with a 'name'. Got {cls!r}."
        )
    if cls.name in DETECTORS and DETECTORS[cls.name] is not cls:
        raise ValueError(f"A detector named {cls.name!r} is already registered "
                         f"({DETECTORS[cls.name].__name__}).")
    DETECTORS[cls.name] = cls
    return cls


def available_detectors() -> list[str]:
    """Registry names, in registry order."""
    return list(DETECTORS)


def make_detector(name: str, model: nn.Module | None = None, *, density: Any = None,
                  **params: Any) -> OODDetector:
    """A new, unfitted detector ``name`` (see :data:`DETECTORS`) with ``params``.

    ``model`` is the classifier; ``density`` the density model (anything with ``log_prob``) of
    the density-based detectors (``likelihood``, ``likelihood-ratio``, ``complexity``,
    ``typicality``). A detector rejects what it does not score through (RaPP and the density
    detectors take no classifier, the classifier detectors no density model), so that a caller
    never believes a model was scored when it was not.
    """
    if not isinstance(name, str) or name not in DETECTORS:
        raise ValueError(
            f"Unknown OOD detector {name!r}. Available: {', '.join(DETECTORS)}."
        )
    cls = DETECTORS[name]
    accepted = cls._param_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for {cls.__name__}; accepted: {accepted}."
        )
    if density is not None and not cls.uses_density:
        raise ValueError(
            f"{cls.__name__} does not score through a density model; pass density=None."
        )
    if not cls.uses_model:
        if model is not None:
            raise ValueError(
                f"{cls.__name__} does not score through a classifier; pass model=None."
            )
        return cls(density, **params) if cls.uses_density else cls(**params)
    return cls(model, **params)
