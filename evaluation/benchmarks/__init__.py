"""Runners that produce tables (density, GAN), write the reports of the library's results
(:mod:`~evaluation.benchmarks.calibration`, :mod:`~evaluation.benchmarks.ood`), and the demo.

This is the top layer: it may import from ``dunno``, ``uncertainty`` and ``generative``.
"""

__all__: list[str] = []
