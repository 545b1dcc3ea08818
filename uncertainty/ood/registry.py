"""The detector registry: ``make_detector("energy", model, temperature=1.0)``.

:data:`DETECTORS` (a :class:`dunno.registry.Registry`, read like a dict) maps registry names
to classes, in the order tables list them; :mod:`uncertainty.ood` registers the built-in
detectors in that order. This module imports no detector, so a detector that builds others
by name (:class:`~uncertainty.ood.combined.Combined`) imports it without a cycle.

**Extension point.** A new detector is one file with a pure score function and an
:class:`~uncertainty.ood._base.OODDetector` subclass declaring ``name``, ``needs`` (and
``fit_needs``), registered with :func:`register_detector` (usable as a class decorator; the
contract tests in ``tests/uncertainty/test_ood.py`` then run over it automatically). The
predictive-uncertainty detectors landed this way: ``mc-dropout`` (MC-Dropout mutual
information, ``needs = {"input"}``: T stochastic passes through
:class:`uncertainty.predictive.MCDropout`) and ``ensemble-disagreement`` (the same quantity
over the members of an ensemble with ``member_logits``). A detector in another distribution
registers through the entry-point group ``dunno.detectors`` (the entry point's name is the
registry name and must equal the class's ``name``)::

    [project.entry-points."dunno.detectors"]
    my-detector = "my_package.detector:MyDetector"

Density-based detectors (``uses_density = True``) score through a density model instead of the
classifier (:mod:`uncertainty.ood._density`): ``make_detector("likelihood-ratio",
density=nade)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dunno.registry import Registry
from uncertainty.ood._base import OODDetector

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "available_detectors", "make_detector",
           "register_detector", "resolve_alias", "resolve_alias_params"]

#: What the name ``"default"`` stands for (``run_ood(..., detectors="default")``, ``dunno ood
#: --detectors default``, ``make_detector("default", model)``): the recommended detector,
#: :class:`~uncertainty.ood.combined.Combined` with the components chosen from
#: in-distribution data alone (:mod:`uncertainty.ood.selection`, ``benchmarks/select_default.py``).
DEFAULT_DETECTOR = "combined"

#: Every detector by registry name (plugins of the entry-point group ``dunno.detectors``
#: included).
DETECTORS: Registry[type[OODDetector]] = Registry(
    "OOD detector", "dunno.detectors", base=OODDetector
)


def resolve_alias(name: str) -> str:
    """``"default"`` -> :data:`DEFAULT_DETECTOR`; any other name unchanged."""
    return DEFAULT_DETECTOR if name == "default" else name


def resolve_alias_params(detector_params: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``detector_params`` (``{detector: {param: value}}``) with the key
    ``"default"`` renamed to :data:`DEFAULT_DETECTOR`; naming both is refused."""
    out = dict(detector_params or {})
    if "default" in out:
        if DEFAULT_DETECTOR in out:
            raise ValueError(f"'detector_params' sets both 'default' and {DEFAULT_DETECTOR!r}, "
                             "the same detector; name it once.")
        out[DEFAULT_DETECTOR] = out.pop("default")
    return out


def register_detector(cls: type[OODDetector]) -> type[OODDetector]:
    """Add ``cls`` to :data:`DETECTORS` under ``cls.name`` (usable as a class decorator);
    a name taken by another class, or the alias ``"default"``, is refused."""
    if getattr(cls, "name", None) == "default":
        raise ValueError(f"The detector name 'default' of {cls.__name__} is taken: it stands "
                         f"for the recommended detector ({DEFAULT_DETECTOR!r}).")
    return DETECTORS.register(obj=cls)


def available_detectors() -> list[str]:
    """Registry names, in registry order."""
    return DETECTORS.available()


def make_detector(name: str, model: nn.Module | None = None, *, density: Any = None,
                  **params: Any) -> OODDetector:
    """A new, unfitted detector ``name`` (see :data:`DETECTORS`; ``"default"`` is
    :data:`DEFAULT_DETECTOR`) with ``params``.

    ``model`` is the classifier; ``density`` the density model (anything with ``log_prob``) of
    the density-based detectors (``likelihood``, ``likelihood-ratio``, ``complexity``,
    ``typicality``). A detector rejects what it does not score through (RaPP and the density
    detectors take no classifier, the classifier detectors no density model), so that a caller
    never believes a model was scored when it was not; likewise a detector that cannot score
    ``model`` (``mc-dropout`` without dropout layers, ``ensemble-disagreement`` on a single
    network, a feature detector on a model without ``features`` and no ``layer``) is refused
    here, when it is built (:meth:`~uncertainty.ood._base.OODDetector.check_model`).
    """
    cls = DETECTORS.get(resolve_alias(name))
    accepted = cls.param_names()
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
    detector = cls(model, **params)
    detector.check_model()
    return detector
