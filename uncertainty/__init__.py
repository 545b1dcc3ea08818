"""dunno's uncertainty methods: post-hoc calibration, predictive uncertainty (MC-Dropout,
ensembles, heteroscedastic models, MDNs, Bayesian NNs) and OOD detectors."""

__all__: list[str] = []
