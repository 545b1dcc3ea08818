r"""Regression metrics for probabilistic predictions: RMSE, Gaussian and Gaussian-mixture NLL,
the closed-form CRPS of a Gaussian and of a Gaussian mixture, prediction-interval coverage
(PICP) and width, and the regression calibration curve.

Gaussian predictions are given as ``mean`` and ``variance`` (not the standard deviation) of the
same shape as ``targets``: ``(N,)`` or ``(N, D)`` for ``D`` independent outputs. Variances must
be > 0. Results are floats computed in float64; each docstring says how ``D`` is reduced.

References:
    Gneiting & Raftery, "Strictly Proper Scoring Rules, Prediction, and Estimation", JASA 2007
    (CRPS). Grimit, Gneiting, Berrocal & Johnson, "The continuous ranked probability score for
    circular variables and its application to mesoscale forecast ensemble verification", QJRMS
    2006 (CRPS of a Gaussian mixture). Kuleshov, Fenner & Ermon, "Accurate Uncertainties for
    Deep Learning Using Calibrated Regression", ICML 2018 (calibration curve). Bishop, "Mixture
    Density Networks", 1994. Hernández-Lobato & Adams, "Probabilistic Backpropagation", ICML
    2015 (UCI protocol: RMSE and Gaussian NLL).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import special

from dunno.validation import (
    PROB_SUM_ATOL,
    check_choice,
    check_probability_level,
    check_real,
    check_same_length,
)

__all__ = [
    "RegressionCalibrationCurve",
    "crps_gaussian",
    "crps_mixture",
    "gaussian_interval",
    "gaussian_mixture_nll",
    "gaussian_nll",
    "interval_coverage",
    "mean_interval_width",
    "regression_calibration_curve",
    "rmse",
]

_LOG_2PI = math.log(2.0 * math.pi)



def _check_mixture_weights(pi: np.ndarray) -> None:
    """Refuse mixture weights ``(N, K)`` outside [0, 1] or rows not summing to one."""
    if not (pi.min() >= 0.0 and pi.max() <= 1.0):
        bad = int(np.flatnonzero(~((pi >= 0.0) & (pi <= 1.0)).ravel())[0])
        row, col = np.unravel_index(bad, pi.shape)
        raise ValueError(
            f"The 'weights' argument must hold mixture weights in [0, 1] (probabilities, not "
            f"logits); found {pi.ravel()[bad]} at ({int(row)}, {int(col)})."
        )
    sums = pi.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > PROB_SUM_ATOL)
    if bad.size:
        raise ValueError(
            f"The 'weights' argument must have rows summing to 1 (tolerance {PROB_SUM_ATOL:g}); "
            f"row {int(bad[0])} sums to {sums[bad[0]]:.6g}."
        )

def _same_shape(arrays: dict[str, np.ndarray], reference: str) -> None:
    ref = arrays[reference]
    for name, arr in arrays.items():
        if arr.shape != ref.shape:
            raise ValueError(
                f"The {name!r} argument must have the same shape as {reference!r} "
                f"{ref.shape}; got {arr.shape}."
            )


def _real(x, name):
    return check_real(x, name, ndim=(1, 2), what="an array of shape (N,) or (N, D)")


def _positive(x, name):
    arr = _real(x, name)
    if not np.all(arr > 0):
        bad = int(np.flatnonzero(~(arr.ravel() > 0))[0])
        raise ValueError(
            f"The {name!r} argument must be > 0; found {arr.ravel()[bad]} at flat index {bad}."
        )
    return arr


def _gaussian_inputs(mean, variance, targets):
    mu, var, y = _real(mean, "mean"), _positive(variance, "variance"), _real(targets, "targets")
    _same_shape({"targets": y, "mean": mu, "variance": var}, "targets")
    return mu, var, y


def rmse(mean, targets) -> float:
    r"""Root-mean-square error over all entries,
    :math:`\sqrt{\frac{1}{ND}\sum_{i,d} (\mu_{id} - y_{id})^2}`.

    Args:
        mean: ``(N,)`` or ``(N, D)`` point predictions.
        targets: same shape, observed values.
    """
    mu, y = _real(mean, "mean"), _real(targets, "targets")
    _same_shape({"targets": y, "mean": mu}, "targets")
    return float(np.sqrt(np.mean((mu - y) ** 2)))


def gaussian_nll(mean, variance, targets) -> float:
    r"""Mean Gaussian negative log-likelihood per example, in nats:

    .. math::

        \frac{1}{N}\sum_{i=1}^{N}\sum_{d=1}^{D} \Big[\tfrac12 \log(2\pi\sigma^2_{id})
        + \frac{(y_{id} - \mu_{id})^2}{2\sigma^2_{id}}\Big]

    (summed over the ``D`` outputs of an example, averaged over examples; the constant
    :math:`\tfrac12\log 2\pi` is included).

    Args:
        mean: ``(N,)`` or ``(N, D)`` predictive means.
        variance: same shape, predictive variances (> 0).
        targets: same shape, observed values.
    """
    mu, var, y = _gaussian_inputs(mean, variance, targets)
    per_entry = 0.5 * (_LOG_2PI + np.log(var) + (y - mu) ** 2 / var)
    return float(np.sum(per_entry) / y.shape[0])


def gaussian_mixture_nll(weights, means, variances, targets) -> float:
    r"""Mean negative log-likelihood of scalar targets under per-example Gaussian mixtures (a
    mixture density network's output, Bishop 1994), in nats:

    .. math::

        -\frac{1}{N}\sum_{i=1}^{N} \log \sum_{k=1}^{K} \pi_{ik}\,
        \mathcal{N}(y_i;\, \mu_{ik}, \sigma^2_{ik}),

    computed with log-sum-exp.

    Args:
        weights: ``(N, K)`` mixture weights in [0, 1], rows summing to 1 within 1e-4.
        means: ``(N, K)`` component means.
        variances: ``(N, K)`` component variances (> 0).
        targets: ``(N,)`` observed values.
    """
    what = "a 2-D array of shape (N, K)"
    pi = check_real(weights, "weights", ndim=2, what=what)
    mu = check_real(means, "means", ndim=2, what=what)
    var = check_real(variances, "variances", ndim=2, what=what)
    y = check_real(targets, "targets", ndim=1, what="a 1-D array of shape (N,)")
    _same_shape({"weights": pi, "means": mu, "variances": var}, "weights")
    check_same_length(y.shape[0], pi.shape[0], "targets", "weights")
    if not np.all(var > 0):
        bad = int(np.flatnonzero(~(var.ravel() > 0))[0])
        raise ValueError(f"The 'variances' argument must be > 0; found {var.ravel()[bad]} at "
                         f"flat index {bad}.")
    _check_mixture_weights(pi)
    with np.errstate(divide="ignore"):
        log_terms = np.log(pi) - 0.5 * (_LOG_2PI + np.log(var) + (y[:, None] - mu) ** 2 / var)
    return float(-np.mean(special.logsumexp(log_terms, axis=1)))


def crps_gaussian(mean, variance, targets) -> float:
    r"""Mean continuous ranked probability score of Gaussian predictions, closed form
    (Gneiting & Raftery 2007, eq. 21); lower is better, in the units of the targets:

    .. math::

        \mathrm{CRPS}(\mathcal{N}(\mu, \sigma^2), y) = \int_{-\infty}^{\infty}
        \big(F(x) - [x \ge y]\big)^2 dx
        = \sigma\Big[z\,(2\Phi(z) - 1) + 2\varphi(z) - \frac{1}{\sqrt{\pi}}\Big],
        \quad z = \frac{y - \mu}{\sigma},

    averaged over all ``N·D`` entries.

    Args:
        mean: ``(N,)`` or ``(N, D)`` predictive means.
        variance: same shape, predictive variances (> 0).
        targets: same shape, observed values.
    """
    mu, var, y = _gaussian_inputs(mean, variance, targets)
    sigma = np.sqrt(var)
    z = (y - mu) / sigma
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    crps = sigma * (z * (2.0 * special.ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))
    return float(np.mean(crps))


def _abs_gaussian_mean(mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    r""":math:`\mathbb{E}|X|` for :math:`X \sim \mathcal{N}(\mu, \sigma^2)`:
    :math:`\sigma\sqrt{2/\pi}\, e^{-\mu^2 / (2\sigma^2)} + \mu\,(1 - 2\Phi(-\mu/\sigma))`."""
    sigma = np.sqrt(var)
    z = mu / sigma
    return (sigma * math.sqrt(2.0 / math.pi) * np.exp(-0.5 * z * z)
            + mu * (1.0 - 2.0 * special.ndtr(-z)))


#: entries of the (rows, K, K, D) pairwise term evaluated at once
_CRPS_CHUNK = 1 << 22


def crps_mixture(weights, means, variances, targets, *, reduction: str = "mean"):
    r"""Continuous ranked probability score of Gaussian-mixture predictions, closed form
    (Grimit et al. 2006; Gneiting & Raftery 2007, eq. 20 with :math:`\beta = 1`): for
    :math:`F = \sum_m w_m \mathcal{N}(\mu_m, \sigma_m^2)`,

    .. math::

        \mathrm{CRPS}(F, y) = \int_{-\infty}^{\infty} \big(F(z) - [z \ge y]\big)^2 dz
        = \sum_m w_m\, A(y - \mu_m, \sigma_m^2)
          - \tfrac12 \sum_{m,k} w_m w_k\, A(\mu_m - \mu_k, \sigma_m^2 + \sigma_k^2),

    with :math:`A(\mu, \sigma^2) = \mathbb{E}|\mathcal{N}(\mu, \sigma^2)| =
    \sigma\sqrt{2/\pi}\, e^{-\mu^2/(2\sigma^2)} + \mu\,(1 - 2\Phi(-\mu/\sigma))` (the
    energy form :math:`\mathbb{E}|X - y| - \frac12 \mathbb{E}|X - X'|`). With one component
    it is :func:`crps_gaussian`. Lower is better, in the units of the targets. Cost
    :math:`O(N K^2 D)` (the pairwise term, computed in chunks of bounded memory), float64.

    Args:
        weights: ``(N, K)`` mixture weights in [0, 1], rows summing to 1 within 1e-4 (the
            same weights for every output).
        means: ``(N, K)`` component means for scalar targets, or ``(N, K, D)`` for ``D``
            outputs (each output's marginal is the mixture of the components' marginals).
        variances: the shape of ``means``, component variances (> 0).
        targets: ``(N,)`` with ``(N, K)`` components, or ``(N, D)``.
        reduction: ``"mean"`` (default): the mean over all ``N·D`` entries, a float;
            ``"none"``: the per-entry scores, float64 of the shape of ``targets``.
    """
    check_choice(reduction, "reduction", "crps_mixture", ("mean", "none"))
    what = "an array of shape (N, K) or (N, K, D)"
    mu = check_real(means, "means", ndim=(2, 3), what=what)
    var = check_real(variances, "variances", ndim=(2, 3), what=what)
    pi = check_real(weights, "weights", ndim=2, what="a 2-D array of shape (N, K)")
    scalar = mu.ndim == 2
    y = check_real(targets, "targets", ndim=1 if scalar else 2,
                   what="a 1-D array of shape (N,)" if scalar else "an array of shape (N, D)")
    _same_shape({"means": mu, "variances": var}, "means")
    if pi.shape != mu.shape[:2]:
        raise ValueError(f"The 'weights' argument must have shape (N, K) = {mu.shape[:2]} like "
                         f"'means'; got {pi.shape}.")
    if y.shape != (mu.shape[0],) + mu.shape[2:]:
        raise ValueError(f"The 'targets' argument must have shape {(mu.shape[0],) + mu.shape[2:]}"
                         f" for 'means' of shape {mu.shape}; got {y.shape}.")
    if not np.all(var > 0):
        bad = int(np.flatnonzero(~(var.ravel() > 0))[0])
        raise ValueError(f"The 'variances' argument must be > 0; found {var.ravel()[bad]} at "
                         f"flat index {bad}.")
    _check_mixture_weights(pi)
    if scalar:
        mu, var, y = mu[..., None], var[..., None], y[:, None]  # (N, K, 1), (N, 1)
    n, k, d = mu.shape
    w = pi[:, :, None]  # (N, K, 1)
    out = np.empty((n, d))
    rows = max(1, _CRPS_CHUNK // (k * k * d))
    for lo in range(0, n, rows):
        sl = slice(lo, lo + rows)
        spread = _abs_gaussian_mean(y[sl, None, :] - mu[sl], var[sl])  # (n, K, D)
        pair = _abs_gaussian_mean(mu[sl, :, None] - mu[sl, None, :],
                                  var[sl, :, None] + var[sl, None, :])  # (n, K, K, D)
        ww = w[sl, :, None] * w[sl, None, :]  # (n, K, K, 1)
        out[sl] = (w[sl] * spread).sum(1) - 0.5 * (ww * pair).sum((1, 2))
    out = out[:, 0] if scalar else out
    return float(np.mean(out)) if reduction == "mean" else out


def gaussian_interval(mean, variance, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    r"""Central prediction interval of a Gaussian at ``level``:
    :math:`\mu \pm z\,\sigma` with :math:`z = \Phi^{-1}\big(\tfrac{1 + \text{level}}{2}\big)`
    (1.959964 for 0.95).

    Args:
        mean: ``(N,)`` or ``(N, D)`` predictive means.
        variance: same shape, predictive variances (> 0).
        level: nominal coverage in (0, 1) (default 0.95).

    Returns:
        ``(lower, upper)`` float64 arrays of the shape of ``mean``.
    """
    level = check_probability_level(level, "level", "gaussian_interval")
    mu, var = _real(mean, "mean"), _positive(variance, "variance")
    _same_shape({"mean": mu, "variance": var}, "mean")
    half = special.ndtri(0.5 + 0.5 * level) * np.sqrt(var)
    return mu - half, mu + half


def _interval_inputs(lower, upper):
    lo, hi = _real(lower, "lower"), _real(upper, "upper")
    _same_shape({"lower": lo, "upper": hi}, "lower")
    if not np.all(lo <= hi):
        bad = int(np.flatnonzero(~(lo <= hi).ravel())[0])
        raise ValueError(
            f"The 'lower' argument must be <= 'upper' everywhere; flat index {bad} has "
            f"lower={lo.ravel()[bad]} > upper={hi.ravel()[bad]}."
        )
    return lo, hi


def interval_coverage(lower, upper, targets) -> float:
    r"""Prediction interval coverage probability (PICP): the fraction of targets inside their
    closed interval, :math:`\frac{1}{ND}\sum_{i,d} [l_{id} \le y_{id} \le u_{id}]`.

    For Gaussian predictions at a given level use
    ``interval_coverage(*gaussian_interval(mean, variance, level), targets)``.

    Args:
        lower: ``(N,)`` or ``(N, D)`` lower interval bounds.
        upper: same shape, upper bounds (>= lower).
        targets: same shape, observed values.
    """
    lo, hi = _interval_inputs(lower, upper)
    y = _real(targets, "targets")
    _same_shape({"lower": lo, "targets": y}, "lower")
    return float(np.mean((lo <= y) & (y <= hi)))


def mean_interval_width(lower, upper) -> float:
    r"""Mean prediction interval width :math:`\frac{1}{ND}\sum_{i,d} (u_{id} - l_{id})`
    (report it next to :func:`interval_coverage`: wide intervals cover trivially).

    Args:
        lower: ``(N,)`` or ``(N, D)`` lower interval bounds.
        upper: same shape, upper bounds (>= lower).
    """
    lo, hi = _interval_inputs(lower, upper)
    return float(np.mean(hi - lo))


class RegressionCalibrationCurve(NamedTuple):
    """Observed vs expected coverage of central Gaussian prediction intervals.

    Attributes:
        expected: ``(L,)`` nominal levels.
        observed: ``(L,)`` fraction of targets inside the central interval at each level.
    """

    expected: np.ndarray
    observed: np.ndarray

    def calibration_error(self) -> float:
        """Mean absolute difference between observed and expected coverage."""
        return float(np.mean(np.abs(self.observed - self.expected)))


def regression_calibration_curve(
    mean, variance, targets, levels=None
) -> RegressionCalibrationCurve:
    r"""Regression calibration curve: for each nominal level :math:`p`, the observed fraction of
    targets inside the central Gaussian interval of level :math:`p`,

    .. math::

        \hat c(p) = \frac{1}{ND}\sum_{i,d} \big[\,|2\Phi(z_{id}) - 1| \le p\,\big], \qquad
        z_{id} = \frac{y_{id} - \mu_{id}}{\sigma_{id}}

    (the interval is closed). A calibrated model has :math:`\hat c(p) \approx p`; the curve is
    drawn as observed vs expected coverage (cf. Kuleshov et al. 2018, who use one-sided
    quantiles).

    Args:
        mean: ``(N,)`` or ``(N, D)`` predictive means.
        variance: same shape, predictive variances (> 0).
        targets: same shape, observed values.
        levels: ``(L,)`` nominal levels in [0, 1]; default ``np.linspace(0, 1, 21)``.
    """
    mu, var, y = _gaussian_inputs(mean, variance, targets)
    if levels is None:
        lv = np.linspace(0.0, 1.0, 21)
    else:
        lv = check_real(levels, "levels", ndim=1)
        if not (lv.min() >= 0.0 and lv.max() <= 1.0):
            bad = int(np.flatnonzero(~((lv >= 0.0) & (lv <= 1.0)))[0])
            raise ValueError(
                f"The 'levels' argument must lie in [0, 1]; found {lv[bad]} at index {bad}."
            )
    # |2 Phi(z) - 1| = erf(|z| / sqrt 2): the level of the narrowest central interval holding y.
    z = np.abs(y - mu) / np.sqrt(var)
    needed = np.sort(special.erf(z / math.sqrt(2.0)).ravel())
    observed = np.searchsorted(needed, lv, side="right") / needed.shape[0]
    return RegressionCalibrationCurve(lv, observed)
