r"""Out-of-distribution (OOD) detection metrics.

**Convention (the one place it is written down).** Every detector outputs a score per sample
and **a higher score means "more OOD"**. Metrics take ``scores_in`` (shape ``(N_in,)``, scores of
in-distribution test samples) and ``scores_out`` (shape ``(N_out,)``, scores of OOD samples);
both must be non-empty and finite. A sample is *accepted* as in-distribution at threshold
:math:`t` when its score is :math:`\le t` and *flagged* as OOD when its score is :math:`> t`.

* **AUROC** treats OOD as the positive class:

  .. math::

      \mathrm{AUROC} = P(s_\text{out} > s_\text{in}) + \tfrac12 P(s_\text{out} = s_\text{in})
      = \frac{1}{N_\text{in} N_\text{out}} \sum_{i,j}
        \big([s^\text{out}_j > s^\text{in}_i] + \tfrac12 [s^\text{out}_j = s^\text{in}_i]\big),

  the Mann–Whitney U statistic, equal to scikit-learn's
  ``roc_auc_score([0]*N_in + [1]*N_out, concat(scores_in, scores_out))`` (and to the AUROC
  with in-distribution positive ranked by ``-score``: the number is the same).
* **AUPR-In**: in-distribution is the positive class, ranked by ``-score`` (lower score = more
  in-distribution). **AUPR-Out**: OOD is the positive class, ranked by ``score``. Both are
  *average precision* exactly as scikit-learn's ``average_precision_score``: the step-wise sum
  :math:`\sum_n (R_n - R_{n-1}) P_n` over the distinct score values (tied scores form one
  threshold), without interpolation.
* **FPR@95TPR** (:func:`fpr_at_tpr`): the true-positive rate is the fraction of
  *in-distribution* samples accepted. The threshold is the smallest :math:`t` with at least 95%
  of ``scores_in`` :math:`\le t`, i.e. :math:`t = s^\text{in}_{(k)}`, the :math:`k`-th smallest
  in-distribution score with :math:`k = \lceil 0.95\, N_\text{in} \rceil` (computed exactly, so
  ``N_in = 100`` gives ``k = 95``). The FPR is the fraction of OOD samples accepted,
  :math:`\#\{j: s^\text{out}_j \le t\} / N_\text{out}`. With ties at :math:`t` the accepted
  in-distribution fraction can exceed 95%.
* **Detection error** (Liang et al. 2018): the smallest misclassification probability over all
  thresholds when in- and out-of-distribution are equally likely,

  .. math::

      P_e = \min_{t \in \mathbb{R} \cup \{\pm\infty\}}
      \tfrac12 \big(1 - \mathrm{TPR}(t)\big) + \tfrac12\, \mathrm{FPR}(t),
      \quad \mathrm{TPR}(t) = \frac{\#\{s^\text{in} \le t\}}{N_\text{in}},\;
      \mathrm{FPR}(t) = \frac{\#\{s^\text{out} \le t\}}{N_\text{out}},

  so :math:`P_e \le 0.5` (the threshold :math:`-\infty` accepts nothing).

All metrics are exact under ties. They are computed from the two sorted score arrays with one
binary search of the distinct OOD scores into the in-distribution scores; the AUROC is an
integer count divided once, so it is correctly rounded.

References:
    Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
    Examples in Neural Networks", ICLR 2017. Liang, Li & Srikant, "Enhancing The Reliability of
    Out-of-distribution Image Detection in Neural Networks", ICLR 2018. Mann & Whitney, "On a
    test of whether one of two random variables is stochastically larger than the other", 1947.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

from dunno.validation import check_choice, check_probability_level, check_scores

__all__ = [
    "aupr_in",
    "aupr_out",
    "auroc",
    "auroc_standard_error",
    "detection_error",
    "fpr_at_tpr",
    "ood_metrics",
    "precision_recall_curve",
    "roc_curve",
]


def _ceil_fraction_times(level: float, n: int) -> int:
    """``ceil(level * n)`` in exact rational arithmetic on the decimal value of ``level``
    (so 0.95 * 100 is exactly 95, not the float product)."""
    return math.ceil(Fraction(repr(float(level))) * n)


class _Ranked:
    """Both score arrays sorted, with the tie structure and cross counts every metric needs."""

    def __init__(self, scores_in: np.ndarray, scores_out: np.ndarray):
        self.si = np.sort(scores_in)  # (N_in,)
        self.so = np.sort(scores_out)  # (N_out,)
        self.n_in = self.si.shape[0]
        self.n_out = self.so.shape[0]
        # Distinct OOD values u with their multiplicity and start index in so.
        self.out_starts = _group_starts(self.so)
        self.out_values = self.so[self.out_starts]
        self.out_counts = np.diff(np.append(self.out_starts, self.n_out))
        # L(u) = #in < u  (one binary search of the distinct OOD values)
        self.less = np.searchsorted(self.si, self.out_values, side="left")

    def less_equal(self) -> np.ndarray:
        """R(u) = #in <= u for each distinct OOD value u, without a second search."""
        si, less = self.si, self.less
        in_starts = _group_starts(si)
        group_end = np.zeros(self.n_in + 1, dtype=np.int64)
        group_end[in_starts] = np.append(in_starts[1:], self.n_in)
        probe = np.minimum(less, self.n_in - 1)
        tie = (less < self.n_in) & (si[probe] == self.out_values)
        return np.where(tie, group_end[less], less)

    def out_at_most_in_group(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every distinct in-distribution value v: its start and end index in si and
        #out <= v. (u <= v  <=>  #in < u <= #in < v, because v itself is an in-score.)"""
        in_starts = _group_starts(self.si)
        in_ends = np.append(in_starts[1:], self.n_in)
        per_less = np.bincount(self.less, weights=self.out_counts, minlength=self.n_in + 1)
        cum = np.cumsum(np.rint(per_less).astype(np.int64))  # cum[i] = #out with L(u) <= i
        return in_starts, in_ends, cum[in_starts]

    def auroc(self) -> float:
        twice_u = int(np.dot(self.out_counts, self.less + self.less_equal()))
        return twice_u / (2.0 * self.n_in * self.n_out)

    def aupr_out(self) -> float:
        # OOD positive, ranked by score: threshold at each distinct OOD value u (descending).
        tp = self.n_out - self.out_starts  # #out >= u
        fp = self.n_in - self.less  # #in >= u
        precision = tp / (tp + fp)
        return float(np.sum(self.out_counts / self.n_out * precision))

    def aupr_in(self) -> float:
        # In-distribution positive, ranked by -score: threshold at each distinct in value v.
        starts, ends, out_le = self.out_at_most_in_group()
        tp = ends  # #in <= v
        precision = tp / (tp + out_le)
        return float(np.sum((ends - starts) / self.n_in * precision))

    def fpr_at_tpr(self, tpr: float) -> float:
        k = _ceil_fraction_times(tpr, self.n_in)
        k = min(max(k, 1), self.n_in)
        threshold = self.si[k - 1]
        accepted = np.searchsorted(self.so, threshold, side="right")  # #out <= t
        return float(accepted) / self.n_out

    def detection_error(self) -> float:
        starts, ends, out_le = self.out_at_most_in_group()
        err = 0.5 * (1.0 - ends / self.n_in) + 0.5 * (out_le / self.n_out)
        return float(min(0.5, err.min()))


def _group_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in a sorted array."""
    if sorted_values.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    return np.concatenate(([0], change)).astype(np.int64)


def _ranked(scores_in, scores_out) -> _Ranked:
    return _Ranked(check_scores(scores_in, "scores_in"), check_scores(scores_out, "scores_out"))


def auroc(scores_in, scores_out) -> float:
    r"""Area under the ROC curve with OOD as the positive class (higher score = more OOD):

    .. math::

        \mathrm{AUROC} = P(s_\text{out} > s_\text{in}) + \tfrac12 P(s_\text{out} = s_\text{in}),

    exact under ties (Mann–Whitney U / :math:`N_\text{in} N_\text{out}`). See the module
    docstring for the convention.

    Args:
        scores_in: ``(N_in,)`` scores of in-distribution samples.
        scores_out: ``(N_out,)`` scores of OOD samples.
    """
    return _ranked(scores_in, scores_out).auroc()


def auroc_standard_error(value: float, n_in: int, n_out: int) -> float:
    r"""The standard error of an AUROC ``value`` measured on ``n_in`` in-distribution and
    ``n_out`` OOD samples, by Hanley & McNeil's approximation ("The meaning and use of the
    area under a receiver operating characteristic (ROC) curve", Radiology 1982), with OOD the
    positive class:

    .. math::

        \mathrm{SE}^2 = \frac{A(1 - A) + (N_\text{out} - 1)(Q_1 - A^2)
        + (N_\text{in} - 1)(Q_2 - A^2)}{N_\text{in} N_\text{out}},
        \qquad Q_1 = \frac{A}{2 - A},\; Q_2 = \frac{2A^2}{1 + A}.

    At :math:`A = 1/2` it is the exact null variance of the Mann–Whitney statistic,
    :math:`(N_\text{in} + N_\text{out} + 1) / (12 N_\text{in} N_\text{out})`; at
    :math:`A \in \{0, 1\}` it is 0.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"The 'value' argument of auroc_standard_error must be an AUROC in "
                         f"[0, 1]. Got {value!r} instead.")
    a = float(value)
    for name, n in (("n_in", n_in), ("n_out", n_out)):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"The '{name}' argument of auroc_standard_error must be an int >= "
                             f"1. Got {n!r} instead.")
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1.0 - a) + (n_out - 1) * (q1 - a * a) + (n_in - 1) * (q2 - a * a)) / (
        n_in * n_out)
    return math.sqrt(max(var, 0.0))


def aupr_in(scores_in, scores_out) -> float:
    r"""Average precision with **in-distribution as the positive class**, ranked by ``-score``:

    .. math::

        \mathrm{AP} = \sum_n (R_n - R_{n-1})\, P_n

    over the distinct thresholds, as scikit-learn's ``average_precision_score(y_in, -scores)``.

    Args:
        scores_in: ``(N_in,)`` scores of in-distribution samples.
        scores_out: ``(N_out,)`` scores of OOD samples.
    """
    return _ranked(scores_in, scores_out).aupr_in()


def aupr_out(scores_in, scores_out) -> float:
    r"""Average precision with **OOD as the positive class**, ranked by ``score``
    (scikit-learn's ``average_precision_score(y_out, scores)``); see :func:`aupr_in`.

    Args:
        scores_in: ``(N_in,)`` scores of in-distribution samples.
        scores_out: ``(N_out,)`` scores of OOD samples.
    """
    return _ranked(scores_in, scores_out).aupr_out()


def fpr_at_tpr(scores_in, scores_out, tpr: float = 0.95) -> float:
    r"""Fraction of OOD samples accepted at the threshold that accepts ``tpr`` of the
    in-distribution samples (FPR@95TPR for the default).

    The threshold is :math:`t = s^\text{in}_{(k)}`, the :math:`k`-th smallest in-distribution
    score, :math:`k = \lceil \mathrm{tpr} \cdot N_\text{in} \rceil` (exact rational arithmetic on
    the decimal value of ``tpr``): the smallest :math:`t` with at least ``tpr`` of ``scores_in``
    :math:`\le t`. The result is :math:`\#\{j: s^\text{out}_j \le t\} / N_\text{out}`.

    Args:
        scores_in: ``(N_in,)`` scores of in-distribution samples.
        scores_out: ``(N_out,)`` scores of OOD samples.
        tpr: target true-positive rate in (0, 1] (default 0.95).
    """
    owner = "fpr_at_tpr"
    if not (isinstance(tpr, numbers.Real) and not isinstance(tpr, bool | np.bool_)
            and tpr == 1.0):
        tpr = check_probability_level(tpr, "tpr", owner)
    return _ranked(scores_in, scores_out).fpr_at_tpr(tpr)


def detection_error(scores_in, scores_out) -> float:
    r"""Minimum detection error over thresholds (Liang et al. 2018):

    .. math::

        P_e = \min_t\; \tfrac12 (1 - \mathrm{TPR}(t)) + \tfrac12 \mathrm{FPR}(t),

    with :math:`\mathrm{TPR}(t)` the fraction of in-distribution and :math:`\mathrm{FPR}(t)` the
    fraction of OOD scores :math:`\le t`; :math:`t = -\infty` is allowed, so :math:`P_e \le 0.5`.

    Args:
        scores_in: ``(N_in,)`` scores of in-distribution samples.
        scores_out: ``(N_out,)`` scores of OOD samples.
    """
    return _ranked(scores_in, scores_out).detection_error()


def ood_metrics(scores_in, scores_out) -> dict[str, float]:
    """All OOD metrics at once, sorting the scores only once.

    Returns:
        A dict with keys ``auroc``, ``aupr_in``, ``aupr_out``, ``fpr_at_95_tpr``,
        ``detection_error`` (see the module docstring), ``n_in`` and ``n_out``.
        :class:`~evaluation.metrics.streaming.OODAccumulator` returns the same dict.
    """
    r = _ranked(scores_in, scores_out)
    return {
        "auroc": r.auroc(),
        "aupr_in": r.aupr_in(),
        "aupr_out": r.aupr_out(),
        "fpr_at_95_tpr": r.fpr_at_tpr(0.95),
        "detection_error": r.detection_error(),
        "n_in": int(r.n_in),
        "n_out": int(r.n_out),
    }


def roc_curve(scores_in, scores_out) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with OOD as the positive class (a sample is flagged when score >= threshold).

    Returns ``(fpr, tpr, thresholds)``, each of shape ``(T + 1,)`` for ``T`` distinct scores:
    ``thresholds`` are the distinct scores in decreasing order preceded by ``+inf``,
    ``fpr[i]`` the fraction of in-distribution and ``tpr[i]`` the fraction of OOD scores
    ``>= thresholds[i]``. This equals scikit-learn's
    ``roc_curve(y_out, scores, drop_intermediate=False)``; the trapezoidal area under it is
    :func:`auroc`.

    Args:
        scores_in: ``(N_in,)`` scores of in-distribution samples.
        scores_out: ``(N_out,)`` scores of OOD samples.
    """
    r = _ranked(scores_in, scores_out)
    thresholds = np.unique(np.concatenate([r.si, r.so]))[::-1]  # distinct, decreasing
    fp = r.n_in - np.searchsorted(r.si, thresholds, side="left")  # #in >= t
    tp = r.n_out - np.searchsorted(r.so, thresholds, side="left")  # #out >= t
    fpr = np.concatenate(([0.0], fp / r.n_in))
    tpr = np.concatenate(([0.0], tp / r.n_out))
    return fpr, tpr, np.concatenate(([np.inf], thresholds))


def precision_recall_curve(
    scores_in, scores_out, *, positive: str = "out"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision–recall curve for OOD (``positive="out"``, ranked by score: AUPR-Out) or
    in-distribution (``positive="in"``, ranked by ``-score``: AUPR-In) as the positive class.

    Returns ``(precision, recall, thresholds)`` laid out as scikit-learn's
    ``precision_recall_curve(..., drop_intermediate=False)``: one point per distinct score,
    ordered by increasing ranking score (so recall decreases), followed by the point
    ``(precision=1, recall=0)``; ``thresholds`` has one element fewer. Thresholds are in the
    units of the detector score: with ``positive="out"`` a sample is positive when
    ``score >= threshold``; with ``positive="in"`` when ``score <= threshold``.

    Args:
        scores_in: ``(N_in,)`` scores of in-distribution samples.
        scores_out: ``(N_out,)`` scores of OOD samples.
        positive: ``"out"`` (default) or ``"in"``.
    """
    positive = check_choice(positive, "positive", "precision_recall_curve", ("out", "in"))
    s_in = check_scores(scores_in, "scores_in")
    s_out = check_scores(scores_out, "scores_out")
    if positive == "out":
        pos, neg = np.sort(s_out), np.sort(s_in)
    else:
        pos, neg = np.sort(-s_in), np.sort(-s_out)
    ranking = np.unique(np.concatenate([pos, neg]))  # distinct, increasing
    tp = pos.shape[0] - np.searchsorted(pos, ranking, side="left")  # #pos >= r
    fp = neg.shape[0] - np.searchsorted(neg, ranking, side="left")
    precision = np.concatenate((tp / (tp + fp), [1.0]))
    recall = np.concatenate((tp / pos.shape[0], [0.0]))
    thresholds = ranking if positive == "out" else -ranking
    return precision, recall, thresholds
