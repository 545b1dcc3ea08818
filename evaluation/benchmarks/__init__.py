"""Runners that write the reports of the library's results
(:mod:`~evaluation.benchmarks.calibration`, :mod:`~evaluation.benchmarks.ood`), and the demo
(density models and GANs: ``generative``, run by ``dunno density`` and ``dunno gan``).

This is the top layer: it may import from ``dunno``, ``uncertainty`` and ``generative``.
"""

__all__: list[str] = []
