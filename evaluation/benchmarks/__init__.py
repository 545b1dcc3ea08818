"""Runners that produce tables (calibration, OOD, UCI, density, GAN) and the demo.

This is the top layer: it may import from ``dunno``, ``uncertainty`` and ``generative``.
"""

__all__: list[str] = []
