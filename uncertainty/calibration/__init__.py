r"""Post-hoc calibration of classifiers: maps on the logits, fitted on held-out data.

>>> from uncertainty.calibration import TemperatureScaling, CalibratedClassifier
>>> ts = TemperatureScaling().fit(val_logits, val_labels)        # logits (N, C), labels (N,)
>>> probs = ts.predict_proba(test_logits)                        # (N, C), rows sum to 1
>>> clf = CalibratedClassifier(model, "temperature").fit(val_loader)
>>> clf.predict_proba(x)

Every calibrator has ``fit(logits, labels) -> self``, ``transform(logits)`` (calibrated
logits: rescaled logits for the scaling methods, log-probabilities for the binning methods;
``softmax(transform(z)) == predict_proba(z)``) and ``predict_proba(logits) -> (N, C)``.
Methods, by registry name (:data:`CALIBRATORS`, :func:`make_calibrator`):

* ``temperature`` -- :class:`TemperatureScaling`, :math:`z / T` (Guo et al. 2017);
* ``vector`` -- :class:`VectorScaling`, :math:`w \odot z + b` (Guo et al. 2017);
* ``matrix`` -- :class:`MatrixScaling`, :math:`W z + b`, optional ODIR (Guo et al. 2017;
  Kull et al. 2019);
* ``histogram`` -- :class:`HistogramBinning`, one-vs-rest bins, renormalised (Zadrozny &
  Elkan 2001);
* ``isotonic`` -- :class:`IsotonicCalibration`, one-vs-rest, renormalised (Zadrozny & Elkan
  2002);
* ``platt`` -- :class:`PlattScaling`, binary, :math:`\sigma(a s + b)` (Platt 1999);
* ``beta`` -- :class:`BetaCalibration`, binary beta calibration (Kull et al. 2017).

Fitted calibrators are saved and loaded with :func:`save_calibrator` /
:func:`load_calibrator` (tensors and plain values only; loading never runs code). A
calibrator fitted through :class:`CalibratedClassifier` records the
:func:`model_fingerprint` of its model and refuses any other model.

:func:`run_calibration` (:mod:`uncertainty.calibration.compare`) fits several methods on a
held-out split of a dataset and compares them with the uncalibrated model on its test split
(accuracy, ECE, adaptive ECE, MCE, NLL, Brier), in a :class:`CalibrationResult`::

    result = run_calibration(model, "digits", methods="all")
    print(result.table())
"""

from uncertainty.calibration._base import Calibrator
from uncertainty.calibration.beta import BetaCalibration, PlattScaling
from uncertainty.calibration.compare import CalibrationResult, run_calibration
from uncertainty.calibration.fingerprint import model_fingerprint
from uncertainty.calibration.histogram import HistogramBinning
from uncertainty.calibration.isotonic import IsotonicCalibration
from uncertainty.calibration.registry import (
    CALIBRATORS,
    available_calibrators,
    calibrator_from_dict,
    calibrator_to_dict,
    load_calibrator,
    make_calibrator,
    register_calibrator,
    save_calibrator,
)
from uncertainty.calibration.temperature import TemperatureScaling, temperature_nll
from uncertainty.calibration.vector_matrix import MatrixScaling, VectorScaling
from uncertainty.calibration.wrapper import CalibratedClassifier

__all__ = [
    "CALIBRATORS",
    "BetaCalibration",
    "CalibratedClassifier",
    "CalibrationResult",
    "Calibrator",
    "HistogramBinning",
    "IsotonicCalibration",
    "MatrixScaling",
    "PlattScaling",
    "TemperatureScaling",
    "VectorScaling",
    "available_calibrators",
    "calibrator_from_dict",
    "calibrator_to_dict",
    "load_calibrator",
    "make_calibrator",
    "model_fingerprint",
    "register_calibrator",
    "run_calibration",
    "save_calibrator",
    "temperature_nll",
]
