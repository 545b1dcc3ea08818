"""Exception types shared across the toolkit."""

__all__ = [
    "CheckpointError",
    "DataError",
    "MissingDependencyError",
    "NotFittedError",
    "OutputLockedError",
    "PluginError",
    "check_is_fitted",
]


class NotFittedError(RuntimeError, AttributeError):
    """Raised when a method needing learned state is called before ``fit``.

    Subclasses :class:`AttributeError` as scikit-learn's does, so ``hasattr``-style
    checks keep working.
    """


class DataError(ValueError):
    """A dataset could not be found, verified or parsed."""


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt or for another architecture."""


class MissingDependencyError(ImportError):
    """An optional dependency (an extra of the ``dunno`` distribution, e.g. ``tensorboard``)
    is not installed; the message names the ``pip install`` that adds it."""


class OutputLockedError(BlockingIOError):
    """Another run holds the lock of an output directory (see :mod:`dunno.outputs`).

    An :class:`OSError` whose ``filename`` is the directory and whose ``strerror`` names the
    lock file and its holder (pid, host, start time)."""


class PluginError(RuntimeError):
    """A third-party plugin (an entry point of a :class:`dunno.registry.Registry` group)
    could not be imported or registered; the message names the entry point."""


def check_is_fitted(estimator, attributes, what: str = "fit") -> None:
    """Raise :class:`NotFittedError` unless every name in ``attributes`` is set.

    Parameters
    ----------
    estimator : object
        The estimator to check.
    attributes : str or sequence of str
        Learned attributes (ending in ``_``) that ``fit`` sets.
    what : str
        The method the user should call first, named in the message.
    """
    if isinstance(attributes, str):
        attributes = [attributes]
    if not all(getattr(estimator, a, None) is not None for a in attributes):
        name = type(estimator).__name__
        raise NotFittedError(
            f"This {name} instance is not fitted yet. Call '{what}' with appropriate "
            f"arguments before using this {name}."
        )
