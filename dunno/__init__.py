"""dunno: neural networks that know what they don't know.

Shared plumbing used by every part of the toolkit:

* :mod:`dunno.data` -- dataset registry (digits, MNIST, Fashion-MNIST, UCI, user data,
  synthetic OOD sets, shifts, 2-D toys) and loaders;
* :mod:`dunno.nets` -- backbone zoo;
* :mod:`dunno.training` -- the one fit loop;
* :mod:`dunno.checkpoints` -- safe, atomic checkpoints;
* :mod:`dunno.devices` -- device selection;
* :mod:`dunno.estimator` -- the estimator base of calibrators, detectors and predictive methods;
* :mod:`dunno.registry` -- the registry helper behind every name lookup (plugins via entry
  points);
* :mod:`dunno.ensemble` -- the deep-ensemble mixture module and its training over ranks.

The command line lives in :mod:`dunno.cli`, which this package does not import.
"""

from dunno.errors import CheckpointError, DataError, NotFittedError, PluginError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "DataError", "NotFittedError", "PluginError", "__version__"]
