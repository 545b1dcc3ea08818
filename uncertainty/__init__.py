"""dunno's uncertainty methods: post-hoc calibration, predictive uncertainty (MC-Dropout,
ensembles, heteroscedastic models, MDNs, Bayesian NNs) and OOD detectors."""

from uncertainty.calibration import CalibratedClassifier, TemperatureScaling, make_calibrator

__all__: list[str] = ["CalibratedClassifier", "TemperatureScaling", "make_calibrator"]
