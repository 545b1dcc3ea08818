r"""Calibration metrics for classifiers: ECE (top-label and class-wise; equal-width and
equal-mass bins; L1, L2 and max norms), MCE, the reliability table, over/under-confidence,
Brier score, NLL and accuracy.

Every function takes ``probs`` of shape ``(N, C)`` (rows on the probability simplex: entries in
[0, 1], rows summing to 1 within 1e-4, see :mod:`dunno.validation.arrays`) and integer
``labels`` of shape ``(N,)`` in ``[0, C)``; torch tensors or numpy arrays, any device. Nothing
here accepts logits except :func:`nll_from_logits`. Results are Python floats computed in
float64.

**Top label.** The prediction is the arg-max of a row, ties broken towards the lowest class
index (as ``np.argmax`` / ``torch.max``); the confidence is the row maximum.

**Binning rule (equal-width).** ``n_bins`` bins with edges ``e = np.linspace(0, 1, n_bins + 1)``
(float64). Bin :math:`b` (0-based) holds the confidences in the half-open interval
:math:`(e_b, e_{b+1}]`; a confidence of exactly 0 goes into the first bin and a confidence of
exactly 1.0 into the last one (there is no extra bin). So a confidence equal to an interior
edge, e.g. 0.2 with 15 bins, belongs to the lower bin :math:`(0.1\overline{3}, 0.2]`.

**Binning rule (equal-mass, "adaptive").** Samples are sorted by confidence, ties broken by
correctness (incorrect first) so that the result does not depend on the input order, and cut
into ``n_bins`` contiguous groups whose sizes differ by at most one (the first ``N mod n_bins``
groups are one larger), exactly as ``np.array_split``. With ``N < n_bins`` some groups are
empty.

**Norms.** With :math:`n_b` samples in bin :math:`b`, accuracy :math:`\mathrm{acc}_b` and mean
confidence :math:`\mathrm{conf}_b` (empty bins contribute 0 and are skipped by the max):

.. math::

    \mathrm{ECE}_{1} = \sum_b \frac{n_b}{N} |\mathrm{acc}_b - \mathrm{conf}_b|, \qquad
    \mathrm{ECE}_{2} = \Big(\sum_b \frac{n_b}{N} (\mathrm{acc}_b - \mathrm{conf}_b)^2\Big)^{1/2},
    \qquad \mathrm{MCE} = \max_{b:\, n_b > 0} |\mathrm{acc}_b - \mathrm{conf}_b|.

These are the definitions of Guo et al. (2017) / Naeini et al. (2015) and of torchmetrics'
``norm='l1' | 'l2' | 'max'``; torchmetrics however puts a confidence of exactly 1.0 into an
extra bin and uses float32 edges, so its numbers can differ from ours.

References:
    Naeini, Cooper & Hauskrecht, "Obtaining Well Calibrated Probabilities Using Bayesian
    Binning", AAAI 2015. Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
    Networks", ICML 2017. Nixon, Dusenberry, Zhang, Jerfel & Tran, "Measuring Calibration in
    Deep Learning", CVPR Workshops 2019 (class-wise and adaptive ECE). Brier, "Verification of
    forecasts expressed in terms of probability", Monthly Weather Review 1950.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dunno.validation import (
    check_choice,
    check_labels,
    check_n_bins,
    check_probs,
    check_real,
)

from ._binning import (
    _classwise_equal_width_stats,
    _equal_mass_stats,
    _error_from_stats,
    _row_chunks,
    _split_from_stats,
    _top_label_correct,
    _top_label_stats,
)

__all__ = [
    "ConfidenceSplit",
    "ReliabilityTable",
    "accuracy",
    "brier_score",
    "calibration_metrics",
    "classwise_calibration_error",
    "expected_calibration_error",
    "maximum_calibration_error",
    "nll",
    "nll_from_logits",
    "over_under_confidence",
    "reliability_table",
]

_BINNINGS = ("equal_width", "equal_mass")
_NORMS = ("l1", "l2", "max")


# --------------------------------------------------------------------------------------------
# Shared with streaming.py
# --------------------------------------------------------------------------------------------


def _validate(probs, labels, owner: str):
    p = check_probs(probs, "probs")
    y = check_labels(labels, p.shape[0], p.shape[1], "labels")
    return p, y


def _check_common(n_bins, binning, owner):
    n_bins = check_n_bins(n_bins, owner)  # at most MAX_BINS: refused before allocating
    binning = check_choice(binning, "binning", owner, _BINNINGS)
    return n_bins, binning


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityTable:
    r"""Per-bin calibration statistics of top-label confidence: what a reliability diagram
    draws and what every binned calibration error is computed from.

    Attributes (all of shape ``(B,)``, ``B = n_bins``):
        lower, upper: bin boundaries. Equal-width bins hold confidences in ``(lower, upper]``
            (0 in the first bin). Equal-mass bins report the smallest and largest confidence
            they contain (NaN when empty).
        counts: number of samples per bin (int64).
        confidence_sums: sum of the confidences in each bin (float64).
        correct_counts: number of correct top-label predictions per bin (int64).
        binning: ``"equal_width"`` or ``"equal_mass"``.
    """

    lower: np.ndarray
    upper: np.ndarray
    counts: np.ndarray
    confidence_sums: np.ndarray
    correct_counts: np.ndarray
    binning: str = "equal_width"

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    @property
    def mean_confidence(self) -> np.ndarray:
        """Mean confidence per bin, NaN for empty bins, shape ``(B,)``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.confidence_sums / self.counts, np.nan)

    @property
    def accuracy(self) -> np.ndarray:
        """Accuracy per bin, NaN for empty bins, shape ``(B,)``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.correct_counts / self.counts, np.nan)

    @property
    def gap(self) -> np.ndarray:
        """``accuracy - mean_confidence`` per bin (negative: over-confident), NaN if empty."""
        return self.accuracy - self.mean_confidence

    def calibration_error(self, norm: str = "l1") -> float:
        """ECE (``'l1'``, ``'l2'``) or MCE (``'max'``) of this table; see the module docstring."""
        norm = check_choice(norm, "norm", "ReliabilityTable.calibration_error", _NORMS)
        return _error_from_stats(self.counts, self.confidence_sums, self.correct_counts, norm)


def reliability_table(
    probs, labels, *, n_bins: int = 15, binning: str = "equal_width"
) -> ReliabilityTable:
    r"""Per-bin count, mean confidence and accuracy of the top-label predictions.

    Args:
        probs: ``(N, C)`` class probabilities.
        labels: ``(N,)`` integer labels in ``[0, C)``.
        n_bins: number of bins ``B`` (default 15).
        binning: ``"equal_width"`` (bins :math:`(e_b, e_{b+1}]` over [0, 1], 1.0 in the last
            bin) or ``"equal_mass"`` (sorted samples cut into groups of equal size).

    Returns:
        A :class:`ReliabilityTable`; ``table.calibration_error('l1')`` is the ECE.
    """
    owner = "reliability_table"
    n_bins, binning = _check_common(n_bins, binning, owner)
    p, y = _validate(probs, labels, owner)
    counts, conf_sums, correct_counts, lower, upper = _top_label_stats(p, y, n_bins, binning)
    return ReliabilityTable(lower, upper, counts, conf_sums, correct_counts, binning)


def expected_calibration_error(
    probs, labels, *, n_bins: int = 15, binning: str = "equal_width", norm: str = "l1"
) -> float:
    r"""Top-label expected calibration error (Naeini et al. 2015; Guo et al. 2017).

    .. math::

        \mathrm{ECE}_1 = \sum_{b=1}^{B} \frac{n_b}{N}\,\big|\mathrm{acc}_b - \mathrm{conf}_b\big|

    over the bins of the top-label confidence :math:`\max_k p_{ik}`. Equal-width bins are
    :math:`(e_{b-1}, e_b]` with ``e = np.linspace(0, 1, n_bins + 1)``; a confidence of 1.0 is in
    the last bin; empty bins contribute 0. ``binning="equal_mass"`` gives the adaptive ECE of
    Nixon et al. (2019). ``norm="l2"`` is the root of the weighted mean squared gap and
    ``norm="max"`` the MCE (see the module docstring).

    Args:
        probs: ``(N, C)`` class probabilities (rows sum to 1 within 1e-4).
        labels: ``(N,)`` integer labels in ``[0, C)``.
        n_bins: number of bins (default 15).
        binning: ``"equal_width"`` (default) or ``"equal_mass"``.
        norm: ``"l1"`` (default), ``"l2"`` or ``"max"``.

    Returns:
        The calibration error, a float in [0, 1].
    """
    owner = "expected_calibration_error"
    n_bins, binning = _check_common(n_bins, binning, owner)
    norm = check_choice(norm, "norm", owner, _NORMS)
    p, y = _validate(probs, labels, owner)
    counts, conf_sums, correct_counts = _top_label_stats(p, y, n_bins, binning)[:3]
    return _error_from_stats(counts, conf_sums, correct_counts, norm)


def maximum_calibration_error(
    probs, labels, *, n_bins: int = 15, binning: str = "equal_width"
) -> float:
    r"""Maximum calibration error (Naeini et al. 2015): the largest gap over non-empty bins,

    .. math::

        \mathrm{MCE} = \max_{b:\, n_b > 0} \big|\mathrm{acc}_b - \mathrm{conf}_b\big|,

    with the same bins as :func:`expected_calibration_error` (whose ``norm="max"`` it is).

    Args:
        probs: ``(N, C)`` class probabilities.
        labels: ``(N,)`` integer labels.
        n_bins: number of bins (default 15).
        binning: ``"equal_width"`` (default) or ``"equal_mass"``.
    """
    return expected_calibration_error(probs, labels, n_bins=n_bins, binning=binning, norm="max")


def classwise_calibration_error(
    probs, labels, *, n_bins: int = 15, binning: str = "equal_width", norm: str = "l1"
) -> float:
    r"""Class-wise calibration error (Nixon et al. 2019, "SCE" for ``norm='l1'``).

    For every class :math:`k` the probabilities :math:`p_{ik}` of *all* samples are binned (same
    rules as the top-label ECE, applied to :math:`p_{ik}` instead of the maximum; 0.0 goes to the
    first bin), and the bin "accuracy" is the fraction of samples whose label is :math:`k`:

    .. math::

        \mathrm{CE}_k = \sum_b \frac{n_{bk}}{N}\,\Big|\frac{1}{n_{bk}}\sum_{i \in b} [y_i = k]
        - \frac{1}{n_{bk}}\sum_{i \in b} p_{ik}\Big|, \qquad
        \mathrm{SCE} = \frac{1}{C}\sum_{k=1}^{C} \mathrm{CE}_k .

    ``norm="l2"`` / ``"max"`` change :math:`\mathrm{CE}_k` as in the top-label case and the
    result is still the mean over classes. Equal-mass bins sort each class's probabilities,
    ties broken by whether the label is that class.

    Args:
        probs: ``(N, C)`` class probabilities.
        labels: ``(N,)`` integer labels.
        n_bins: bins per class (default 15).
        binning: ``"equal_width"`` (default) or ``"equal_mass"``.
        norm: ``"l1"`` (default), ``"l2"`` or ``"max"``.
    """
    owner = "classwise_calibration_error"
    n_bins, binning = _check_common(n_bins, binning, owner)
    norm = check_choice(norm, "norm", owner, _NORMS)
    p, y = _validate(probs, labels, owner)
    n_classes = p.shape[1]
    check_n_bins(n_bins, owner, num_classes=n_classes)
    errors = np.empty(n_classes)
    if binning == "equal_width":
        counts, sums, hits = _classwise_equal_width_stats(p, y, n_bins)
        for k in range(n_classes):
            errors[k] = _error_from_stats(counts[k], sums[k], hits[k], norm)
    else:
        for k in range(n_classes):
            pk = p[:, k].astype(np.float64)
            counts, sums, hits = _equal_mass_stats(pk, y == k, n_bins)[:3]
            errors[k] = _error_from_stats(counts, sums, hits, norm)
    return float(np.mean(errors))


class ConfidenceSplit(NamedTuple):
    """ECE split into its over-confident and under-confident parts (they add up to the L1
    ECE)."""

    overconfidence: float
    underconfidence: float


def over_under_confidence(
    probs, labels, *, n_bins: int = 15, binning: str = "equal_width"
) -> ConfidenceSplit:
    r"""The L1 ECE split into bins where the model is over- and under-confident:

    .. math::

        \mathrm{OE} = \sum_b \frac{n_b}{N} \max(\mathrm{conf}_b - \mathrm{acc}_b, 0), \qquad
        \mathrm{UE} = \sum_b \frac{n_b}{N} \max(\mathrm{acc}_b - \mathrm{conf}_b, 0),

    so that :math:`\mathrm{OE} + \mathrm{UE} = \mathrm{ECE}_1` (same bins as
    :func:`expected_calibration_error`; Thulasidasan et al. 2019 call OE the over-confidence
    error).

    Returns:
        ``ConfidenceSplit(overconfidence, underconfidence)``.
    """
    table = reliability_table(probs, labels, n_bins=n_bins, binning=binning)
    over, under = _split_from_stats(table.counts, table.confidence_sums, table.correct_counts)
    return ConfidenceSplit(over, under)


def brier_score(probs, labels) -> float:
    r"""Multiclass Brier score (Brier 1950), summed over classes and averaged over samples:

    .. math::

        \mathrm{BS} = \frac{1}{N} \sum_{i=1}^{N} \sum_{k=1}^{C} (p_{ik} - [y_i = k])^2
        \in [0, 2].

    (Some libraries divide by :math:`C` as well; we do not.)

    Args:
        probs: ``(N, C)`` class probabilities.
        labels: ``(N,)`` integer labels.
    """
    p, y = _validate(probs, labels, "brier_score")
    return _brier_sum(p, y) / p.shape[0]


def _brier_sum(p: np.ndarray, y: np.ndarray) -> float:
    total = 0.0
    for rows in _row_chunks(*p.shape):
        d = p[rows].astype(np.float64)  # (n_rows, C)
        d[np.arange(d.shape[0]), y[rows]] -= 1.0
        total += float(np.einsum("ij,ij->", d, d))
    return total


def _nll_sum(p: np.ndarray, y: np.ndarray) -> float:
    p_true = p[np.arange(p.shape[0]), y].astype(np.float64)  # (N,)
    with np.errstate(divide="ignore"):
        return 0.0 - float(np.sum(np.log(p_true)))  # 0.0 - 0.0 is +0.0, not -0.0


def nll(probs, labels) -> float:
    r"""Mean negative log-likelihood of the labels, in nats:

    .. math::

        \mathrm{NLL} = -\frac{1}{N} \sum_{i=1}^{N} \log p_{i, y_i}.

    It is ``inf`` when some :math:`p_{i, y_i} = 0` (nothing is clipped). For models whose
    softmax underflows, compute it from the logits with :func:`nll_from_logits`.

    Args:
        probs: ``(N, C)`` class probabilities.
        labels: ``(N,)`` integer labels.
    """
    p, y = _validate(probs, labels, "nll")
    return _nll_sum(p, y) / p.shape[0]


def nll_from_logits(logits, labels) -> float:
    r"""Mean negative log-likelihood (cross-entropy) of the labels under
    :math:`\mathrm{softmax}(z_i)`, computed stably in float64:

    .. math::

        \mathrm{NLL} = \frac{1}{N} \sum_{i=1}^{N} \Big(\log \sum_k e^{z_{ik}} - z_{i, y_i}\Big).

    Args:
        logits: ``(N, C)`` finite real logits.
        labels: ``(N,)`` integer labels in ``[0, C)``.
    """
    z = check_real(logits, "logits", ndim=2, what="a 2-D array of shape (N, C)")
    y = check_labels(labels, z.shape[0], z.shape[1], "labels", other="logits")
    total = 0.0
    for rows in _row_chunks(*z.shape):
        block = z[rows]  # (n_rows, C)
        m = block.max(axis=1)
        lse = m + np.log(np.sum(np.exp(block - m[:, None]), axis=1))
        total += float(np.sum(lse - block[np.arange(block.shape[0]), y[rows]]))
    return total / z.shape[0]


def accuracy(probs, labels) -> float:
    r"""Top-1 accuracy :math:`\frac{1}{N}\sum_i [\arg\max_k p_{ik} = y_i]` (ties to the lowest
    class index).

    Args:
        probs: ``(N, C)`` class probabilities.
        labels: ``(N,)`` integer labels.
    """
    p, y = _validate(probs, labels, "accuracy")
    n_correct = sum(int(np.count_nonzero(ok)) for _, ok in _top_label_correct(p, y))
    return n_correct / p.shape[0]


def calibration_metrics(probs, labels, *, n_bins: int = 15) -> dict[str, float]:
    """All equal-width calibration metrics at once (validating and ranking the data once).

    Returns a dict with keys ``n`` (number of samples), ``accuracy``, ``nll``, ``brier``,
    ``ece`` (L1), ``ece_l2``, ``mce``, ``classwise_ece`` (L1), ``overconfidence`` and
    ``underconfidence``: the values of :func:`accuracy`, :func:`nll`, :func:`brier_score`,
    :func:`expected_calibration_error` (``norm='l1'``, ``'l2'``),
    :func:`maximum_calibration_error`, :func:`classwise_calibration_error` and
    :func:`over_under_confidence` with ``n_bins`` equal-width bins.
    :class:`~evaluation.metrics.streaming.CalibrationAccumulator` returns the same dict.
    """
    n_bins = check_n_bins(n_bins, "calibration_metrics")
    p, y = _validate(probs, labels, "calibration_metrics")
    check_n_bins(n_bins, "calibration_metrics", num_classes=p.shape[1])
    counts, conf_sums, correct_counts = _top_label_stats(p, y, n_bins, "equal_width")[:3]
    cw = _classwise_equal_width_stats(p, y, n_bins)
    return _metrics_from_sums(
        n=p.shape[0],
        n_correct=int(correct_counts.sum()),
        nll_sum=_nll_sum(p, y),
        brier_sum=_brier_sum(p, y),
        counts=counts,
        conf_sums=conf_sums,
        correct_counts=correct_counts,
        classwise=cw,
    )


def _metrics_from_sums(
    *, n, n_correct, nll_sum, brier_sum, counts, conf_sums, correct_counts, classwise
) -> dict[str, float]:
    over, under = _split_from_stats(counts, conf_sums, correct_counts)
    cw_counts, cw_sums, cw_hits = classwise
    n_classes = cw_counts.shape[0]
    cw = np.mean(
        [_error_from_stats(cw_counts[k], cw_sums[k], cw_hits[k], "l1") for k in range(n_classes)]
    )
    return {
        "n": int(n),
        "accuracy": n_correct / n,
        "nll": nll_sum / n,
        "brier": brier_sum / n,
        "ece": _error_from_stats(counts, conf_sums, correct_counts, "l1"),
        "ece_l2": _error_from_stats(counts, conf_sums, correct_counts, "l2"),
        "mce": _error_from_stats(counts, conf_sums, correct_counts, "max"),
        "classwise_ece": float(cw),
        "overconfidence": over,
        "underconfidence": under,
    }
