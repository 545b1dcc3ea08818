"""dunno's evaluation suite: metrics (calibration, OOD, likelihood, regression), plots and
benchmark runners. ``evaluation.metrics`` and ``evaluation.plots`` depend only on numpy /
torch (matplotlib lazily); ``evaluation.benchmarks`` sits on top of everything."""

__all__: list[str] = []
