r"""Selective prediction: the risk–coverage curve, its area (AURC) and misclassification
detection.

A selective classifier answers only when its confidence is high enough. Sorting the ``N``
samples by decreasing ``confidences`` and answering the top :math:`k`, the coverage is
:math:`k/N` and the selective risk is the mean loss of the answered samples (for the 0/1 loss,
``losses = (predictions != labels)``, the error rate).

**Ties.** Samples with equal confidence are accepted or rejected together, so the curve has one
point per distinct confidence. For the AURC, which averages the risk over every coverage
:math:`k/N`, the losses inside a group of tied confidences are spread evenly over the group: the
expectation over all orderings of the tied samples. Without ties this is the usual
``mean(cumsum(sorted_losses) / arange(1, N + 1))``.

References:
    Geifman & El-Yaniv, "Selective Classification for Deep Neural Networks", NeurIPS 2017.
    Geifman, Uziel & El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep Neural
    Classifiers", ICLR 2019 (AURC). Hendrycks & Gimpel, "A Baseline for Detecting Misclassified
    and Out-of-Distribution Examples in Neural Networks", ICLR 2017.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dunno.validation import check_correct, check_real, check_same_length

from .ood import _Ranked

__all__ = ["RiskCoverageCurve", "aurc", "misclassification_auroc", "risk_coverage_curve"]


class RiskCoverageCurve(NamedTuple):
    """Points of a risk–coverage curve, one per distinct confidence, by increasing coverage.

    Attributes:
        coverage: ``(T,)`` fraction of samples with confidence ``>= thresholds[i]``.
        risk: ``(T,)`` mean loss of those samples.
        thresholds: ``(T,)`` the distinct confidences, decreasing.
    """

    coverage: np.ndarray
    risk: np.ndarray
    thresholds: np.ndarray


def _sorted_groups(confidences, losses):
    conf = check_real(confidences, "confidences", what="a 1-D array of shape (N,)")
    loss = check_real(losses, "losses", what="a 1-D array of shape (N,)")
    check_same_length(loss.shape[0], conf.shape[0], "losses", "confidences")
    order = np.argsort(-conf, kind="stable")  # decreasing confidence
    conf_sorted = conf[order]
    loss_sorted = loss[order]
    n = conf.shape[0]
    change = np.flatnonzero(conf_sorted[1:] != conf_sorted[:-1]) + 1
    ends = np.append(change, n)  # exclusive end of each tie group, (T,)
    cum = np.cumsum(loss_sorted)
    return conf_sorted, ends, cum[ends - 1], n


def risk_coverage_curve(confidences, losses) -> RiskCoverageCurve:
    r"""Risk–coverage curve (Geifman & El-Yaniv 2017).

    For each distinct confidence :math:`t` (decreasing), with :math:`A_t = \{i: c_i \ge t\}`:

    .. math::

        \mathrm{coverage}(t) = \frac{|A_t|}{N}, \qquad
        \mathrm{risk}(t) = \frac{1}{|A_t|} \sum_{i \in A_t} \ell_i .

    Args:
        confidences: ``(N,)`` confidence of each prediction (higher = answer first), e.g. the
            maximum softmax probability.
        losses: ``(N,)`` loss of each prediction, e.g. ``predictions != labels`` (0/1 loss).

    Returns:
        :class:`RiskCoverageCurve` ``(coverage, risk, thresholds)``.
    """
    conf_sorted, ends, cum_at_ends, n = _sorted_groups(confidences, losses)
    return RiskCoverageCurve(ends / n, cum_at_ends / ends, conf_sorted[ends - 1])


def aurc(confidences, losses) -> float:
    r"""Area under the risk–coverage curve (Geifman et al. 2019): the selective risk averaged
    over the coverages :math:`k/N`, :math:`k = 1, \dots, N`,

    .. math::

        \mathrm{AURC} = \frac{1}{N} \sum_{k=1}^{N} \frac{1}{k}\, \mathbb{E}\Big[\sum_{j \le k}
        \ell_{(j)}\Big],

    where :math:`\ell_{(j)}` is the loss of the :math:`j`-th most confident sample and the
    expectation is over the orderings of tied confidences (within a tie group of size :math:`m`
    with total loss :math:`L`, the first :math:`r` members carry :math:`rL/m`). Lower is better;
    for the 0/1 loss it lies in [0, 1].

    Args:
        confidences: ``(N,)`` confidences (higher = answer first).
        losses: ``(N,)`` per-sample losses.
    """
    _, ends, cum_at_ends, n = _sorted_groups(confidences, losses)
    starts = np.concatenate(([0], ends[:-1]))
    sizes = ends - starts
    loss_before = np.concatenate(([0.0], cum_at_ends[:-1]))
    group_mean = (cum_at_ends - loss_before) / sizes  # mean loss inside each tie group
    k = np.arange(1, n + 1, dtype=np.float64)  # (N,)
    group_of = np.repeat(np.arange(ends.shape[0]), sizes)  # tie group of position k-1
    expected_cum = loss_before[group_of] + (k - starts[group_of]) * group_mean[group_of]
    return float(np.mean(expected_cum / k))


def misclassification_auroc(confidences, correct) -> float:
    r"""AUROC of confidence for telling correct from wrong predictions (Hendrycks & Gimpel
    2017):

    .. math::

        P(c_\text{correct} > c_\text{wrong}) + \tfrac12 P(c_\text{correct} = c_\text{wrong}),

    exact under ties; equal to scikit-learn's ``roc_auc_score(correct, confidences)`` and to the
    AUROC of ``-confidences`` for detecting errors (the same number).

    Args:
        confidences: ``(N,)`` confidences (higher = more likely correct).
        correct: ``(N,)`` booleans (or 0/1), whether each prediction is right; both values
            must occur.
    """
    conf = check_real(confidences, "confidences", what="a 1-D array of shape (N,)")
    ok = check_correct(correct, conf.shape[0], "correct", "confidences")
    n_ok = int(np.count_nonzero(ok))
    if n_ok == 0 or n_ok == ok.shape[0]:
        state = "correct" if n_ok else "wrong"
        raise ValueError(
            "The 'correct' argument must contain both correct and wrong predictions for an "
            f"AUROC; all {ok.shape[0]} are {state}."
        )
    # Wrong predictions play the role of "in", correct ones of "out" (higher = positive).
    return _Ranked(conf[~ok], conf[ok]).auroc()
