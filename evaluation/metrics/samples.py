r"""Sample-quality metrics for generative models, computed on feature arrays in float64.

None of these needs Inception weights: the features and class probabilities come from any
network the caller chooses (``dunno gan eval`` uses our own MNIST LeNet-5, so its Fréchet
distance is a *classifier-based* FID, "cFID", not comparable with numbers computed on
Inception-v3 features).

``features_real`` / ``features_fake`` are ``(N, F)`` arrays (one feature vector per image),
``probs`` an ``(N, C)`` matrix of class probabilities, ``samples`` ``(N, D)`` points.

* :func:`frechet_distance` -- the Fréchet (2-Wasserstein) distance between Gaussians fitted to
  two feature sets (Heusel et al. 2017):

  .. math::

      d^2 = \lVert \mu_r - \mu_f \rVert_2^2
            + \operatorname{Tr}\big(\Sigma_r + \Sigma_f - 2 (\Sigma_r \Sigma_f)^{1/2}\big),

  with unbiased covariances (``ddof=1``, as ``numpy.cov``). The trace of the matrix square
  root is computed from an eigen-decomposition of the **symmetric** product
  :math:`\Sigma_r^{1/2} \Sigma_f \Sigma_r^{1/2}`, which is similar to
  :math:`\Sigma_r \Sigma_f` and therefore has the same (non-negative) eigenvalues
  :math:`\lambda_i`: :math:`\operatorname{Tr}(\Sigma_r \Sigma_f)^{1/2} = \sum_i
  \sqrt{\lambda_i}`. This equals the ``scipy.linalg.sqrtm(sigma_r @ sigma_f)`` formula of the
  reference implementation (pinned by a test) without its complex round-off; tiny negative
  eigenvalues from round-off are clipped to 0. The result is the *squared* distance, as FID
  reports it.
* :func:`classifier_score` -- the Inception-score analogue (Salimans et al. 2016),
  :math:`\exp\big(\mathbb{E}_x\, \mathrm{KL}(p(y \mid x) \,\Vert\, p(y))\big)` with
  :math:`p(y) = \frac1N \sum_i p(y \mid x_i)`; between 1 (every prediction the same) and
  :math:`C` (confident predictions spread evenly over the classes).
* :func:`precision_recall` -- improved precision and recall (Kynkäänniemi et al. 2019): each
  real (fake) point spans a ball reaching its ``k``-th nearest real (fake) neighbour;
  precision is the share of fake points inside some real ball, recall the share of real
  points inside some fake ball.
* :func:`mode_coverage` (with :func:`ring_modes`) -- for mixtures of Gaussians such as the
  ring of 8 (Metz et al. 2017): the VEEGAN convention (Srivastava et al. 2017) -- a sample is
  *high quality* when its Euclidean distance to the nearest mode is at most 3 standard
  deviations, and a mode is *covered* when it is the nearest mode of at least ``min_count``
  high-quality samples (VEEGAN: 1; PacGAN (Lin et al. 2018) asks for 20 of 2500).
* :func:`best_mapping_accuracy` -- accuracy of the best one-to-one mapping from discrete codes
  (an InfoGAN's categorical code, cluster ids) to class labels (the Hungarian algorithm).

References:
    Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium", NeurIPS 2017 (FID).
    Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016 (Inception score).
    Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing Generative
    Models", NeurIPS 2019.
    Srivastava et al., "VEEGAN: Reducing Mode Collapse in GANs using Implicit Variational
    Learning", NeurIPS 2017.
    Chen et al., "InfoGAN: Interpretable Representation Learning by Information Maximizing
    Generative Adversarial Nets", NeurIPS 2016.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from dunno.validation import (
    check_float,
    check_inferred_classes,
    check_int,
    check_probs,
    check_real,
    to_numpy,
)

__all__ = [
    "ModeCoverage",
    "PrecisionRecall",
    "best_mapping_accuracy",
    "classifier_score",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "mode_coverage",
    "precision_recall",
    "ring_modes",
]

_BLOCK = 1024  # rows per block of pairwise distances (a 1024 x 10000 float64 block is 80 MB)


def _features(x, name: str, min_rows: int = 1) -> np.ndarray:
    arr = check_real(x, name, ndim=2, what="a 2-D array of shape (N, F)")
    if arr.shape[0] < min_rows:
        raise ValueError(
            f"The {name!r} argument must have at least {min_rows} samples (rows); got shape "
            f"{arr.shape}."
        )
    return arr


def _same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"The {name_a!r} and {name_b!r} arguments must have the same number of features "
            f"(columns); got {a.shape[1]} and {b.shape[1]}."
        )


# ----------------------------------------------------------------------------- Fréchet
def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and unbiased covariance ``(F, F)`` (``ddof=1``) of ``features (N, F)``,
    ``N >= 2``, in float64: the statistics :func:`frechet_distance_from_statistics` takes."""
    x = _features(features, "features", min_rows=2)
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (x.shape[0] - 1)
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    vals, vecs = np.linalg.eigh(sigma)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def _check_stats(mu, sigma, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = check_real(mu, f"mu_{name}", ndim=1, what="a 1-D mean vector of shape (F,)")
    sigma = check_real(sigma, f"sigma_{name}", ndim=2, what="a covariance of shape (F, F)")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"The 'sigma_{name}' argument must be a ({mu.shape[0]}, {mu.shape[0]}) covariance "
            f"matching 'mu_{name}'; got shape {sigma.shape}."
        )
    scale = max(float(np.abs(sigma).max()), 1e-300) if sigma.size else 1.0
    asym = float(np.abs(sigma - sigma.T).max()) if sigma.size else 0.0
    if asym > 1e-6 * scale:
        raise ValueError(
            f"The 'sigma_{name}' argument must be a symmetric covariance; sigma - sigma.T "
            f"reaches {asym:g} (largest entry {scale:g}). Pass np.cov(features, rowvar=False)."
        )
    if sigma.size:
        low = float(np.linalg.eigvalsh(0.5 * (sigma + sigma.T)).min())
        if low < -1e-6 * scale:
            raise ValueError(
                f"The 'sigma_{name}' argument must be a positive semi-definite covariance; its "
                f"smallest eigenvalue is {low:g} (largest entry {scale:g})."
            )
    return mu, sigma


def frechet_distance_from_statistics(mu_real, sigma_real, mu_fake, sigma_fake) -> float:
    r"""Squared Fréchet distance between :math:`N(\mu_r, \Sigma_r)` and
    :math:`N(\mu_f, \Sigma_f)` (see the module docstring for the formula and how the matrix
    square root is taken).

    Args:
        mu_real, mu_fake: ``(F,)`` means.
        sigma_real, sigma_fake: ``(F, F)`` symmetric positive semi-definite covariances
            (an asymmetry or a negative eigenvalue beyond ``1e-6`` times the largest entry is
            refused; round-off below it is symmetrised and clipped).
    """
    mu_r, s_r = _check_stats(mu_real, sigma_real, "real")
    mu_f, s_f = _check_stats(mu_fake, sigma_fake, "fake")
    if mu_r.shape != mu_f.shape:
        raise ValueError(
            f"The real and fake statistics must have the same number of features; got "
            f"{mu_r.shape[0]} and {mu_f.shape[0]}."
        )
    s_r = 0.5 * (s_r + s_r.T)
    s_f = 0.5 * (s_f + s_f.T)
    root_r = _psd_sqrt(s_r)
    product = root_r @ s_f @ root_r  # symmetric PSD, similar to s_r @ s_f
    eig = np.linalg.eigvalsh(0.5 * (product + product.T))
    trace_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu_r - mu_f
    value = float(diff @ diff + np.trace(s_r) + np.trace(s_f) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def frechet_distance(features_real, features_fake) -> float:
    r"""Squared Fréchet distance between Gaussians fitted to two feature sets (the FID
    formula of Heusel et al. 2017, on whatever features are given).

    Args:
        features_real: ``(N_r, F)`` features of real data, ``N_r >= 2``.
        features_fake: ``(N_f, F)`` features of generated data, ``N_f >= 2``.

    Returns:
        :math:`\lVert\mu_r-\mu_f\rVert^2 + \operatorname{Tr}(\Sigma_r+\Sigma_f
        - 2(\Sigma_r\Sigma_f)^{1/2})` >= 0; exactly 0 for a set against itself (up to
        round-off).

    The estimate is biased upwards for small ``N`` (and needs ``N`` well above ``F`` for a
    stable covariance); compare numbers computed with the same ``N`` and feature network.
    """
    real = _features(features_real, "features_real", min_rows=2)
    fake = _features(features_fake, "features_fake", min_rows=2)
    _same_dim(real, fake, "features_real", "features_fake")
    return frechet_distance_from_statistics(*feature_statistics(real), *feature_statistics(fake))


# ----------------------------------------------------------------------------- classifier score
def classifier_score(probs) -> float:
    r"""The Inception-score analogue for any classifier (Salimans et al. 2016):

    .. math::

        \mathrm{CS} = \exp\Big(\frac1N \sum_{i=1}^N \mathrm{KL}\big(p(y \mid x_i)
        \,\Vert\, \hat p(y)\big)\Big), \qquad \hat p(y) = \frac1N \sum_i p(y \mid x_i),

    with :math:`0 \log 0 = 0`. It is 1 when every prediction is the same and :math:`C` when
    the predictions are one-hot and spread evenly over the :math:`C` classes.

    Args:
        probs: ``(N, C)`` class probabilities of generated samples (rows sum to 1; pass
            ``softmax(logits)``, never logits).
    """
    p = np.asarray(check_probs(probs, "probs"), dtype=np.float64)
    marginal = p.mean(axis=0)  # (C,)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0)  # (N, C)
    kl = terms.sum(axis=1)  # (N,)
    return float(math.exp(float(kl.mean())))


# ----------------------------------------------------------------------------- precision / recall
class PrecisionRecall(NamedTuple):
    """``precision``: share of fake samples on the real manifold (quality); ``recall``: share
    of real samples on the fake manifold (coverage)."""

    precision: float
    recall: float


def _sq_dists(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d = (a * a).sum(axis=1)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)  # (A, B)
    return np.maximum(d, 0.0)


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each row to its ``k``-th nearest other row ``(N,)``."""
    x_sq = (x * x).sum(axis=1)
    radii = np.empty(x.shape[0])
    for start in range(0, x.shape[0], _BLOCK):
        d = _sq_dists(x[start:start + _BLOCK], x, x_sq)
        # index k of the sorted row: index 0 is the point itself (distance 0)
        radii[start:start + _BLOCK] = np.partition(d, k, axis=1)[:, k]
    return radii


def _inside(query: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Share of ``query`` rows within the ball of at least one of ``centres``."""
    c_sq = (centres * centres).sum(axis=1)
    hits = 0
    for start in range(0, query.shape[0], _BLOCK):
        d = _sq_dists(query[start:start + _BLOCK], centres, c_sq)
        hits += int(np.any(d <= radii[None, :], axis=1).sum())
    return hits / query.shape[0]


def precision_recall(features_real, features_fake, *, k: int = 3) -> PrecisionRecall:
    r"""Improved precision and recall of Kynkäänniemi et al. (2019) on feature vectors.

    With :math:`\mathrm{NN}_k(\phi, \Phi)` the distance from :math:`\phi` to its ``k``-th
    nearest neighbour in :math:`\Phi \setminus \{\phi\}`, the manifold of a set is the union of
    balls :math:`\{\phi : \lVert \phi - \phi' \rVert \le \mathrm{NN}_k(\phi', \Phi)\}`, and

    .. math::

        \text{precision} = \frac{1}{|\Phi_f|}\sum_{\phi \in \Phi_f}
            1[\phi \in \text{manifold}(\Phi_r)], \qquad
        \text{recall} = \frac{1}{|\Phi_r|}\sum_{\phi \in \Phi_r}
            1[\phi \in \text{manifold}(\Phi_f)].

    A set compared with itself has precision = recall = 1. Distances are Euclidean, computed
    in blocks (memory ``O(1024 N)``), time ``O(N_r N_f F)``.

    Args:
        features_real: ``(N_r, F)`` features of real data.
        features_fake: ``(N_f, F)`` features of generated data.
        k: neighbourhood size (3 in the paper); ``1 <= k < min(N_r, N_f)``.
    """
    real = _features(features_real, "features_real")
    fake = _features(features_fake, "features_fake")
    _same_dim(real, fake, "features_real", "features_fake")
    n = min(real.shape[0], fake.shape[0])
    if (
        isinstance(k, bool | np.bool_)
        or not isinstance(k, numbers.Integral)
        or not 1 <= k < n
    ):
        raise ValueError(
            f"The 'k' parameter of precision_recall must be an int >= 1 and < the number of "
            f"samples ({n}). Got {k!r} instead."
        )
    k = int(k)
    precision = _inside(fake, real, _knn_radii(real, k))
    recall = _inside(real, fake, _knn_radii(fake, k))
    return PrecisionRecall(precision, recall)


# ----------------------------------------------------------------------------- Gaussian mixtures
class ModeCoverage(NamedTuple):
    """What :func:`mode_coverage` measured.

    ``modes_covered`` (int), ``high_quality`` (share of samples within ``num_std`` standard
    deviations of their nearest mode), ``counts`` (``(K,)`` high-quality samples per mode) and
    ``num_modes`` (K).
    """

    modes_covered: int
    high_quality: float
    counts: np.ndarray
    num_modes: int


def ring_modes(num_modes: int = 8, radius: float = 2.0) -> np.ndarray:
    r"""Means ``(K, 2)`` of the ring of Gaussians of :func:`dunno.data.toy.ring_of_gaussians`:
    :math:`r(\cos 2\pi j/K, \sin 2\pi j/K)`, :math:`j = 0..K-1`.

    Args:
        num_modes: ``K``, an int >= 1 (default 8).
        radius: ``r``, a finite float > 0 (default 2.0).
    """
    num_modes = check_int(num_modes, "num_modes", "ring_modes", low=1)
    radius = check_float(radius, "radius", "ring_modes", low=0.0, low_open=True)
    angle = 2 * np.pi * np.arange(num_modes) / num_modes
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def mode_coverage(
    samples, modes, std: float, *, num_std: float = 3.0, min_count: int = 1
) -> ModeCoverage:
    r"""Modes covered and share of high-quality samples (VEEGAN convention).

    Sample :math:`x_i` is *high quality* when :math:`\min_j \lVert x_i - m_j \rVert_2 \le`
    ``num_std * std``; mode :math:`j` is *covered* when at least ``min_count`` high-quality
    samples have it as their nearest mode. For the 8-Gaussian ring (std 0.02, radius 2)
    Srivastava et al. (2017) use 2500 samples, ``num_std=3`` and ``min_count=1``.

    Args:
        samples: ``(N, D)`` generated points.
        modes: ``(K, D)`` mixture means (e.g. :func:`ring_modes`).
        std: the components' (isotropic) standard deviation, > 0.
        num_std: the quality radius in standard deviations, > 0.
        min_count: high-quality samples a mode needs to count as covered, >= 1.
    """
    x = _features(samples, "samples")
    m = _features(modes, "modes")
    _same_dim(x, m, "samples", "modes")
    for name, value in (("std", std), ("num_std", num_std)):
        check_float(value, name, "mode_coverage", low=0.0, low_open=True)
    min_count = check_int(min_count, "min_count", "mode_coverage", low=1)
    d = np.sqrt(_sq_dists(x, m, (m * m).sum(axis=1)))  # (N, K)
    nearest = d.argmin(axis=1)
    good = d[np.arange(x.shape[0]), nearest] <= num_std * std
    counts = np.bincount(nearest[good], minlength=m.shape[0])
    return ModeCoverage(
        modes_covered=int((counts >= min_count).sum()),
        high_quality=float(good.mean()),
        counts=counts,
        num_modes=m.shape[0],
    )


# ----------------------------------------------------------------------------- code -> class
def _int_labels(x, name: str) -> np.ndarray:
    arr = to_numpy(x, name)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(
            f"The {name!r} argument must be a non-empty 1-D array of shape (N,); got shape "
            f"{arr.shape}."
        )
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"The {name!r} argument must hold integer indices; got dtype {arr.dtype}."
        )
    if int(arr.min()) < 0:
        raise ValueError(f"The {name!r} argument must hold indices >= 0; got {int(arr.min())}.")
    return arr.astype(np.int64)


def best_mapping_accuracy(codes, labels) -> float:
    r"""Accuracy of the best one-to-one mapping from ``codes`` to ``labels``.

    With the contingency table :math:`n_{ab} = |\{i : \text{code}_i = a, \text{label}_i =
    b\}|`, the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) finds the
    injective mapping :math:`\pi` maximising :math:`\sum_a n_{a\pi(a)}`; the result is that sum
    divided by ``N``. Used for InfoGAN's categorical code against classifier predictions of
    the generated images (Chen et al. 2016 report about 95% on MNIST). Codes left without a
    partner (more codes than labels) count as errors.

    Args:
        codes: ``(N,)`` integer codes (e.g. the categorical value used to generate image i).
        labels: ``(N,)`` integer labels (e.g. the predicted class of image i).
    """
    from scipy.optimize import linear_sum_assignment

    a = _int_labels(codes, "codes")
    b = _int_labels(labels, "labels")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"The 'labels' argument must have the same length as 'codes' ({a.shape[0]}); got "
            f"{b.shape[0]}."
        )
    rows = check_inferred_classes(int(a.max()), a.shape[0], "best_mapping_accuracy", "codes")
    cols = check_inferred_classes(int(b.max()), b.shape[0], "best_mapping_accuracy", "labels")
    table = np.zeros((rows, cols), dtype=np.int64)  # (codes, labels) contingency table
    np.add.at(table, (a, b), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / a.shape[0])
