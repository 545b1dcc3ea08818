r"""The detector contract shared by every OOD detector in :mod:`uncertainty.ood`.

**Sign convention: a higher score means "more out-of-distribution"**, for every detector (the
metrics in :mod:`evaluation.metrics.ood` assume it; a contract test over the registry pins it).

Every detector is a pure score function (``energy_score(logits, temperature)``) plus a thin
class in scikit-learn's estimator style:

* ``__init__(model=None, *, <hyper-parameters>, layer=None)`` only stores its arguments;
* ``fit(loader) -> self`` learns the detector's state (class means, a feature bank, an
  autoencoder, ...) from in-distribution training data; a no-op for detectors that learn
  nothing (MSP, MaxLogit, Entropy, Energy, ODIN without tuning);
* ``score(x) -> (N,)`` float64 scores of a batch of inputs, computed in batches;
* ``needs`` / ``fit_needs``: which of ``"logits"``, ``"features"``, ``"input"``, ``"log_prob"``
  (a density model's log-likelihood) the scoring / fitting reads, so that a runner can
  compute logits and features **once per dataset** with
  :func:`~uncertainty.ood.outputs.extract_outputs` and hand the same
  :class:`~uncertainty.ood.outputs.ModelOutputs` to every detector through
  ``fit_outputs(outputs)`` and ``score_outputs(outputs)``.

Scoring before ``fit`` raises :class:`~dunno.errors.NotFittedError` where ``fit`` learns
something. Features come from ``model.features`` or, with ``layer="name"``, from a forward hook
on that module; ``layer=["a", "b"]`` concatenates the spatially averaged outputs of several
modules, and ``"a@k"`` pools a module's output to a ``k x k`` grid
(:mod:`uncertainty.ood.outputs`).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from dunno.estimator import Estimator
from dunno.inputs import Batches, as_loader, model_dtype, output_like
from dunno.validation import check_int
from uncertainty.ood.outputs import LayerSpec, ModelOutputs, check_layer, extract_outputs

__all__ = ["OODDetector"]


class OODDetector(Estimator, ABC):
    """Base class of the OOD detectors (see the module docstring for the contract).

    Parameters, ``repr``, ``set_params`` and :meth:`check_fitted` come from
    :class:`dunno.estimator.Estimator`; the classifier ``model`` (and a density detector's
    ``density``) is not a hyper-parameter. Subclasses set :attr:`name`, :attr:`needs` (and
    :attr:`fit_needs` when ``fit`` learns something), list the learned attributes in
    :attr:`_state_names`, and implement :meth:`_validate_params`, :meth:`_fit` and
    :meth:`_score`.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier (``x -> logits (N, C)``). Needed by :meth:`fit` and :meth:`score`;
        :meth:`fit_outputs` / :meth:`score_outputs` work without it except for detectors
        that need the inputs.
    layer : str or list of str, optional
        Module whose output is taken as the features, or several modules whose spatially
        averaged outputs are concatenated; ``NAME@k`` pools to a ``k x k`` grid (default:
        ``model.features``).
    """

    #: Registry name (``make_detector(name)``).
    name: ClassVar[str] = ""
    #: The paper, for tables and docs.
    reference: ClassVar[str] = ""
    #: What :meth:`score_outputs` reads.
    needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    #: What :meth:`fit_outputs` reads (empty: nothing is learned).
    fit_needs: ClassVar[frozenset[str]] = frozenset()
    #: Whether the detector scores through the classifier (False for RaPP's autoencoder and
    #: the density-based detectors).
    uses_model: ClassVar[bool] = True
    #: Whether the detector scores through a density model (``density=``, ``log_prob``).
    uses_density: ClassVar[bool] = False
    #: Whether :meth:`fit` needs labelled data (class-conditional detectors).
    fit_needs_labels: ClassVar[bool] = False
    #: Whether the detector reads ``model.head`` on the penultimate features (ReAct, DICE, ASH
    #: and SCALE re-apply it to modified features, ViM reads its weights, GradNorm
    #: differentiates it): the features must be the head's input, so it cannot take a ``layer``.
    reads_head: ClassVar[bool] = False
    #: Learned attributes that :meth:`score_outputs` requires.
    _state_names: ClassVar[tuple[str, ...]] = ()
    _wrapped_args: ClassVar[tuple[str, ...]] = ("model",)
    #: Hyper-parameters read only when scoring: detectors differing only in these can share
    #: one fit (:meth:`fitted_variant`).
    score_time_params: ClassVar[tuple[str, ...]] = ()
    #: Other settings worth comparing when a detector is chosen from in-distribution data
    #: (:func:`uncertainty.ood.selection.select_detector` tries each next to the defaults),
    #: e.g. RaPP's ``({"mode": "sap"},)``.
    variants: ClassVar[tuple[dict[str, Any], ...]] = ()

    def __init__(self, model: nn.Module | None = None, *, layer: LayerSpec = None) -> None:
        self.model = model
        self.layer = layer

    @classmethod
    def applies_to(cls, model: nn.Module | None) -> bool:
        """Whether this detector can score ``model`` at all (``"all"`` in the benchmark runner
        runs only those): True except for detectors that need a kind of model (dropout
        layers, an ensemble)."""
        return True

    def check_model(self) -> None:
        """Raise ValueError when the detector cannot score its ``model`` (a detector named
        explicitly never scores silently): the feature detectors need ``model.features`` or
        a ``layer``; :class:`~uncertainty.ood.mc_dropout_mi.MCDropoutMI` dropout layers,
        :class:`~uncertainty.ood.ensemble_disagreement.EnsembleDisagreement` an ensemble.
        Called by :func:`~uncertainty.ood.make_detector`, :meth:`fit` and :meth:`score`; a
        detector without a model (scoring precomputed outputs) passes."""
        if self.model is None or not self.uses_model:
            return
        owner = type(self).__name__
        if not self.applies_to(self.model):
            raise ValueError(
                f"The 'model' argument of {owner} ({self.name!r}) cannot be scored: "
                f"{type(self.model).__name__} {self._cannot_score_reason()}"
            )
        wants = self.needs | self.fit_needs
        if ("features" in wants and self.layer is None
                and not callable(getattr(self.model, "features", None))):
            names = [n for n, _ in self.model.named_modules() if n]
            shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            raise ValueError(
                f"The 'layer' parameter of {owner} ({self.name!r}) is None, but the detector "
                f"needs penultimate features and the model {type(self.model).__name__} has no "
                "'features' method. "
                f"Pass layer='<module name>' to record that module's output with a forward "
                f"hook (modules of {type(self.model).__name__}: {shown or 'none'})."
            )

    @classmethod
    def _cannot_score_reason(cls) -> str:
        """Why :meth:`applies_to` is False (for :meth:`check_model`'s message)."""
        return "is not a model this detector applies to."

    @property
    def requires_fit(self) -> bool:
        """Whether :meth:`fit` learns state that scoring needs."""
        return bool(self._state_names)

    def _validate_params(self) -> None:
        """Check the hyper-parameters; raise ValueError in scikit-learn's phrasing."""
        check_layer(self.layer, type(self).__name__)
        if self.model is not None and not isinstance(self.model, nn.Module):
            raise ValueError(
                f"The 'model' argument of {type(self).__name__} must be a torch.nn.Module. "
                f"Got {type(self.model).__name__} instead."
            )

    # ------------------------------------------------------------------ the contract
    def fit(self, x, y=None, *, batch_size: int = 512) -> OODDetector:
        """Learn the detector's state from in-distribution training data; returns ``self``.

        Parameters
        ----------
        x : numpy array, tensor, (x, y) pair, Dataset or DataLoader
            In-distribution training data, any kind read by :mod:`dunno.inputs` (labels are
            used where the detector needs them). NaN / inf inputs are refused.
        y : numpy array or tensor, optional
            Labels ``(N,)`` of array ``x``.
        batch_size : int
            Batch size when ``x`` is an array or a dataset (a DataLoader keeps its own).
        """
        self._validate_params()
        self.check_model()
        if not self.fit_needs:
            if y is not None or x is not None:
                self._data(x, y, "fit", batch_size)  # refuse bad data even when unused
            return self
        self._require_model(self.fit_needs, "fit")
        batches = self._data(x, y, "fit", batch_size)
        outputs = self._extract(batches, self.fit_needs, batch_size)
        self.fit_outputs(outputs)
        shape = self._input_shape_from(batches)
        if shape is not None:
            self.input_shape_ = shape
        return self

    def fit_outputs(self, outputs: ModelOutputs) -> OODDetector:
        """:meth:`fit` from precomputed outputs (``fit_needs`` must be present); ``self``."""
        self._validate_params()
        if not self.fit_needs:
            return self
        outputs = self._check_outputs(outputs, self.fit_needs, "fit_outputs")
        for attr in (*self._state_names, "input_shape_", "output_widths_"):
            if attr in self.__dict__:
                delattr(self, attr)
        if outputs.inputs is not None:
            self.input_shape_ = tuple(outputs.inputs.shape[1:])
        self._fit(outputs)
        # the widths scoring must match: C logits, F features (checked in score_outputs)
        self.output_widths_ = {name: int(getattr(outputs, name).shape[1])
                               for name in ("logits", "features")
                               if name in self.fit_needs and getattr(outputs, name) is not None}
        return self

    def score(self, x, *, batch_size: int = 512) -> torch.Tensor:
        """OOD scores ``(N,)`` float64 of inputs ``x (N, ...)``: higher = more OOD.

        ``x`` is any kind read by :mod:`dunno.inputs` (labels, if any, are ignored); numpy
        in gives numpy out. NaN / inf inputs are refused.
        """
        self._validate_params()
        self.check_model()
        self.check_fitted()
        batches = self._data(x, None, "score", batch_size)
        expected = getattr(self, "input_shape_", None)
        if expected is not None:
            batches = _check_shape(batches, tuple(expected), type(self).__name__)
        self._require_model(self.needs, "score")
        outputs = self._extract(batches, self.needs, batch_size)
        return output_like(self.score_outputs(outputs), x)

    def score_outputs(self, outputs: ModelOutputs) -> torch.Tensor:
        """:meth:`score` from precomputed outputs (``needs`` must be present): ``(N,)``."""
        self._validate_params()
        self.check_fitted()
        outputs = self._check_outputs(outputs, self.needs, "score_outputs")
        self._check_widths(outputs)
        scores = self._score(outputs)
        return scores.to(torch.float64)

    def fitted_variant(self, other: OODDetector) -> OODDetector | None:
        """A fitted copy of ``self`` with ``other``'s score-time parameters, when ``other`` is
        the same detector up to :attr:`score_time_params` (else ``None``). Lets a combination
        fit e.g. one RaPP autoencoder for both its NAP and SAP scores."""
        if type(other) is not type(self) or not self.score_time_params:
            return None
        if not all(getattr(self, a, None) is not None for a in self._state_names):
            return None
        mine, theirs = self.get_params(), other.get_params()
        same = all(mine[k] == theirs[k] for k in mine if k not in self.score_time_params)
        if not same or self.model is not other.model:
            return None
        if getattr(self, "autoencoder", None) is not getattr(other, "autoencoder", None):
            return None
        clone = copy.copy(self)
        for key in self.score_time_params:
            setattr(clone, key, theirs[key])
        return clone

    # ------------------------------------------------------------------ internals
    def _data(self, x, y, method: str, batch_size: int) -> Batches:
        """``x`` (and labels ``y``) read through :func:`dunno.inputs.as_loader`."""
        check_int(batch_size, "batch_size", f"{type(self).__name__}.{method}", low=1)
        dtype = model_dtype(self.model) if self.uses_model else None
        if x is None:
            raise ValueError(f"The 'x' argument of {type(self).__name__}.{method} is None; "
                             "pass the data (an array, a pair, a Dataset or a DataLoader).")
        return as_loader(x, labels=y, batch_size=batch_size, dtype=dtype,
                         owner=f"{type(self).__name__}.{method}")

    def _extract(self, data, needs: frozenset[str], batch_size: int) -> ModelOutputs:
        """The outputs :meth:`fit` / :meth:`score` compute for ``needs`` (one pass)."""
        return extract_outputs(
            self.model if self.uses_model else None, data, needs=needs, layer=self.layer,
            batch_size=batch_size, keep_inputs="input" in needs,
        )

    @staticmethod
    def _input_shape_from(batches: Batches) -> tuple[int, ...] | None:
        x = batches.x
        if x is None:
            x = getattr(batches.dataset, "x", None)
        return tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None

    def _require_model(self, needs: frozenset[str], method: str) -> None:
        if not self.uses_model:
            return
        if self.model is None and (needs & {"logits", "features", "input"}):
            raise ValueError(
                f"{type(self).__name__}.{method} runs the classifier, but the detector was built "
                f"without one. Pass it as {type(self).__name__}(model, ...), or call "
                f"{method}_outputs(ModelOutputs(...)) with precomputed "
                f"{' and '.join(sorted(needs))}."
            )

    def _check_outputs(self, outputs: Any, needs: frozenset[str], method: str) -> ModelOutputs:
        owner = f"{type(self).__name__}.{method}"
        if not isinstance(outputs, ModelOutputs):
            raise ValueError(
                f"The 'outputs' argument of {owner} must be a ModelOutputs (see "
                f"uncertainty.ood.extract_outputs). Got {type(outputs).__name__} instead."
            )
        missing = sorted(set(needs) - outputs.available())
        if missing:
            raise ValueError(
                f"{owner} needs {sorted(needs)} but the outputs lack {missing}; compute them "
                f"with extract_outputs(model, data, needs={sorted(needs)})."
            )
        if len(outputs) == 0:
            raise ValueError(f"The 'outputs' given to {owner} are empty: nothing to score.")
        for name in ("logits", "features", "log_prob", "inputs"):
            value = getattr(outputs, name)
            needed = name in needs or (name == "inputs" and "input" in needs)
            if needed and not bool(torch.isfinite(value).all()):
                raise ValueError(f"The '{name}' given to {owner} contain NaN or inf.")
        return outputs

    def _check_widths(self, outputs: ModelOutputs) -> None:
        """Refuse logits / features to score whose width differs from the fit's (another
        model, layer or class count): the fitted statistics would not apply to them."""
        widths = getattr(self, "output_widths_", None) or {}
        for name, what in (("logits", "classes"), ("features", "features per example")):
            value = getattr(outputs, name)
            if name in widths and name in self.needs and value is not None \
                    and int(value.shape[1]) != widths[name]:
                raise ValueError(
                    f"{type(self).__name__} was fitted on {widths[name]} {what}; the {name} "
                    f"have {int(value.shape[1])}. Score the outputs of the model (and layer) "
                    "the detector was fitted with."
                )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.fit_needs and cls._fit is OODDetector._fit and cls.fit_outputs is \
                OODDetector.fit_outputs:
            raise TypeError(f"{cls.__name__} declares fit_needs {sorted(cls.fit_needs)} but "
                            "implements neither _fit nor fit_outputs.")

    def _fit(self, outputs: ModelOutputs) -> None:  # noqa: B027 - fit-free detectors keep it
        """Learn from the validated outputs of the fit data. Only called when ``fit_needs`` is
        non-empty, and every such subclass overrides it (checked when the class is defined);
        fit-free scores (MSP, energy, ...) learn nothing."""

    @abstractmethod
    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        """``(N,)`` scores, higher = more OOD, from validated outputs."""


def _check_shape(batches: Batches, expected: tuple[int, ...], owner: str):
    """``batches`` with every batch's per-example shape checked against ``expected`` (the
    shape the detector was fitted on): up front for in-memory data, batch by batch else."""
    def refuse(shape):
        raise ValueError(f"{owner} was fitted on inputs of shape {expected} per example; 'x' "
                         f"has shape {tuple(shape)} per example.")

    if batches.in_memory:
        if tuple(batches.x.shape[1:]) != expected:
            refuse(batches.x.shape[1:])
        return batches

    def checked():
        for xb, yb in batches:
            if tuple(xb.shape[1:]) != expected:
                refuse(xb.shape[1:])
            yield xb, yb
    return checked()
