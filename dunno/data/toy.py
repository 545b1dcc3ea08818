"""2-D and 1-D toy sets for generative and regression demos."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["cubic", "inverse_sine", "ring_of_gaussians", "two_moons"]


def two_moons(n: int = 1000, noise: float = 0.1, *, seed: int = 0):
    """scikit-learn's two interleaving half circles. Returns ``x (n, 2)``, ``y (n,)``."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def ring_of_gaussians(
    n: int = 1000, k: int = 8, radius: float = 2.0, std: float = 0.02, *, seed: int = 0
):
    """Mixture of ``k`` equal-weight isotropic Gaussians with means on a circle.

    Component ``j`` has mean ``radius * (cos 2 pi j/k, sin 2 pi j/k)`` and standard
    deviation ``std`` (the mode-collapse test of Metz et al. 2017). Returns ``x (n, 2)``
    and the component index ``y (n,)``.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    angle = 2 * math.pi * y / k
    means = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    x = means + std * rng.standard_normal((n, 2))
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def cubic(n: int = 20, *, low: float = -4.0, high: float = 4.0, seed: int = 0):
    """The cubic toy of Hernandez-Lobato & Adams (2015): ``y = x^3 + eps``, ``eps ~ N(0, 9)``,
    ``x ~ U(low, high)``. Returns ``x (n, 1)``, ``y (n, 1)``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=(n, 1))
    y = x**3 + 3.0 * rng.standard_normal((n, 1))
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)


def inverse_sine(n: int = 1000, *, seed: int = 0):
    """Bishop's (1994) inverse problem: ``t ~ U(0, 1)``, ``x = t + 0.3 sin(2 pi t) + eps``,
    ``eps ~ U(-0.1, 0.1)``; the task is to predict ``t`` from ``x`` (multi-valued, the
    motivating example for mixture density networks). Returns ``x (n, 1)``, ``y = t (n, 1)``.
    """
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 1.0, size=(n, 1))
    x = t + 0.3 * np.sin(2 * math.pi * t) + rng.uniform(-0.1, 0.1, size=(n, 1))
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(t, dtype=torch.float32)
