"""The estimator base shared by calibrators, OOD detectors and the predictive methods.

It carries scikit-learn's estimator contract (``sklearn.base.BaseEstimator``):

* ``__init__`` only stores its arguments, each under its own name (no validation, no work);
* the **hyper-parameters** are the named ``__init__`` parameters, read from the signature
  (:meth:`Estimator.param_names`), except the objects the estimator works on
  (``_wrapped_args``: a detector's classifier, a density model) -- :meth:`~Estimator.get_params`,
  :meth:`~Estimator.set_params` and ``repr`` (which shows the non-default ones) use them;
* ``fit`` calls the hook :meth:`~Estimator._validate_params` first
  (:meth:`~Estimator.check_params` runs it on demand), so parameter errors surface there,
  phrased "The 'max_iter' parameter of TemperatureScaling must be an int >= 1. Got 0
  instead.", and returns ``self``; learned state ends in ``_``;
* using an unfitted estimator raises :class:`~dunno.errors.NotFittedError` naming the class
  and the method to call (:meth:`~Estimator.check_fitted`).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from dunno.errors import check_is_fitted

__all__ = ["Estimator"]


def _is_default(value: Any, default: Any) -> bool:
    """Whether ``value`` is the signature's ``default`` (tensors and arrays never are)."""
    if value is default:
        return True
    if default is inspect.Parameter.empty or type(value) is not type(default):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError, RuntimeError):  # arrays / tensors: ambiguous truth value
        return False


class Estimator:
    """Base class of the toolkit's estimators (see the module docstring for the contract).

    Subclasses define ``__init__`` storing every argument as an attribute of the same name,
    override :meth:`_validate_params` and call it at the start of ``fit``, list in
    ``_state_names`` the learned attributes that using a fitted estimator needs, and in
    ``_wrapped_args`` the ``__init__`` arguments that are not hyper-parameters.
    """

    #: ``__init__`` arguments that are the objects the estimator works on (a classifier, a
    #: density model), not hyper-parameters: left out of get_params, set_params and repr.
    _wrapped_args: ClassVar[tuple[str, ...]] = ()
    #: Learned attributes (ending in ``_``) that :meth:`check_fitted` requires; empty for
    #: estimators that learn nothing.
    _state_names: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ parameters
    @classmethod
    def param_names(cls) -> list[str]:
        """The hyper-parameter names, in ``__init__`` signature order."""
        init = cls.__init__
        if init is object.__init__:
            return []
        names = []
        for p in inspect.signature(init).parameters.values():
            if p.name == "self" or p.name in cls._wrapped_args:
                continue
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise TypeError(
                    f"{cls.__name__}.__init__ takes *{p.name}: an estimator lists its "
                    "hyper-parameters explicitly (scikit-learn's convention)."
                )
            names.append(p.name)
        return names

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, ``{name: value}`` in signature order."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> Estimator:
        """Set hyper-parameters by name; returns ``self``. Values are checked by ``fit``."""
        valid = self.param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"Invalid parameter(s) {unknown} for {type(self).__name__}. Valid parameters "
                f"are: {valid}."
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        signature = inspect.signature(type(self).__init__).parameters
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not _is_default(v, signature[k].default)]
        return f"{type(self).__name__}({', '.join(changed)})"

    def check_params(self) -> Estimator:
        """Check the hyper-parameters now, as ``fit`` does first (e.g. before a runner's
        expensive shared forward pass); ValueError on a bad value, else ``self``."""
        self._validate_params()
        return self

    def _validate_params(self) -> None:
        """The hook that checks the hyper-parameters (``fit`` and :meth:`check_params` call
        it); raise ValueError in scikit-learn's phrasing. The base accepts anything."""

    # ------------------------------------------------------------------ fitted state
    def check_fitted(self) -> None:
        """Raise :class:`~dunno.errors.NotFittedError` (naming the class and ``fit``) unless
        every learned attribute in ``_state_names`` is set."""
        if self._state_names:
            check_is_fitted(self, list(self._state_names), "fit")
