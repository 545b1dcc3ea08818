"""OOD metrics: the convention on a hand-worked example, exactness against scikit-learn with
ties, and brute-force checks of FPR@95TPR and detection error; selective prediction."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import precision_recall_curve as sk_precision_recall_curve
from sklearn.metrics import roc_curve as sk_roc_curve

from evaluation.metrics import (
    aupr_in,
    aupr_out,
    aurc,
    auroc,
    detection_error,
    fpr_at_tpr,
    misclassification_auroc,
    ood_metrics,
    precision_recall_curve,
    risk_coverage_curve,
    roc_curve,
)

# Hand-worked example (higher score = more OOD):
#   in  = [1, 2, 2, 3, 4]   out = [2, 3, 5]
IN = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
OUT = np.array([2.0, 3.0, 5.0])


def test_hand_worked_example():
    # AUROC: sum over OOD scores of #in < s + 0.5 #in == s: (1 + 1) + (3 + 0.5) + 5 = 10.5
    assert auroc(IN, OUT) == 10.5 / 15
    # AUPR-Out (OOD positive, by score): thresholds 5, 3, 2 -> precision 1, 2/4, 3/7,
    # each with recall step 1/3.
    assert aupr_out(IN, OUT) == pytest.approx((1 + 0.5 + 3 / 7) / 3, rel=1e-15)
    # AUPR-In (in positive, by -score): thresholds 1, 2, 3, 4 -> precision 1, 3/4, 4/6, 5/7
    # with recall steps 1/5, 2/5, 1/5, 1/5.
    assert aupr_in(IN, OUT) == pytest.approx(float(Fraction(163, 210)), rel=1e-15)
    # FPR@95TPR: k = ceil(0.95 * 5) = 5 -> threshold 4; OOD accepted (<= 4): {2, 3}
    assert fpr_at_tpr(IN, OUT) == 2 / 3
    assert fpr_at_tpr(IN, OUT, tpr=0.6) == 1 / 3  # k = 3 -> threshold 2 -> accepts {2}
    assert fpr_at_tpr(IN, OUT, tpr=0.2) == 0.0  # threshold 1
    # Detection error: t = -inf: .5; 1: .4; 2: .2 + 1/6; 3: .1 + 1/3; 4: 0 + 1/3
    assert detection_error(IN, OUT) == pytest.approx(1 / 3, rel=1e-15)
    m = ood_metrics(IN, OUT)
    assert m == {
        "auroc": auroc(IN, OUT),
        "aupr_in": aupr_in(IN, OUT),
        "aupr_out": aupr_out(IN, OUT),
        "fpr_at_95_tpr": fpr_at_tpr(IN, OUT),
        "detection_error": detection_error(IN, OUT),
        "n_in": 5,
        "n_out": 3,
    }


def test_sign_convention_higher_score_is_more_ood():
    assert auroc([0.0, 0.1], [0.9, 1.0]) == 1.0
    assert auroc([0.9, 1.0], [0.0, 0.1]) == 0.0
    assert aupr_in([0.0, 0.1], [0.9, 1.0]) == 1.0
    assert aupr_out([0.0, 0.1], [0.9, 1.0]) == 1.0
    assert fpr_at_tpr([0.0, 0.1], [0.9, 1.0]) == 0.0
    assert detection_error([0.0, 0.1], [0.9, 1.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5  # all tied


def test_fpr_threshold_uses_exact_ceil():
    scores_in = np.arange(100.0)  # k = ceil(0.95 * 100) = 95 exactly -> threshold 94
    scores_out = np.array([94.0, 94.5, 95.0])
    assert fpr_at_tpr(scores_in, scores_out) == 1 / 3
    assert fpr_at_tpr(np.arange(10.0), [0.5, 2.5], tpr=0.1) == 0.0  # k = 1: threshold 0
    assert fpr_at_tpr(np.arange(10.0), [0.5, 2.5], tpr=1.0) == 1.0


def _random_tied(seed):
    rng = np.random.default_rng(seed)
    n_in, n_out = rng.integers(1, 300, size=2)
    levels = rng.integers(2, 30)
    s_in = rng.integers(0, levels, n_in).astype(np.float64)
    s_out = (rng.integers(0, levels, n_out) + rng.integers(0, 4)).astype(np.float64)
    return s_in, s_out


@pytest.mark.parametrize("seed", range(12))
def test_matches_sklearn_with_ties(seed):
    s_in, s_out = _random_tied(seed)
    y = np.r_[np.zeros(s_in.size), np.ones(s_out.size)]
    s = np.r_[s_in, s_out]
    assert auroc(s_in, s_out) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr_out(s_in, s_out) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert aupr_in(s_in, s_out) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    fpr, tpr, thr = roc_curve(s_in, s_out)
    sk = sk_roc_curve(y, s, drop_intermediate=False)
    for ours, theirs in zip((fpr, tpr, thr), sk, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)
    trapezoid = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert trapezoid == pytest.approx(auroc(s_in, s_out), abs=1e-12)
    for positive, (yy, ss, sign) in {"out": (y, s, 1), "in": (1 - y, -s, -1)}.items():
        p, r, t = precision_recall_curve(s_in, s_out, positive=positive)
        sp, sr, st = sk_precision_recall_curve(yy, ss, drop_intermediate=False)
        np.testing.assert_allclose(p, sp, atol=1e-15)
        np.testing.assert_allclose(r, sr, atol=1e-15)
        np.testing.assert_allclose(t, sign * st, atol=0)


@pytest.mark.parametrize("seed", range(6))
def test_fpr_and_detection_error_by_brute_force(seed):
    s_in, s_out = _random_tied(seed)
    for tpr in (0.95, 0.9, 0.5):
        k = math.ceil(Fraction(str(tpr)) * s_in.size)
        t = np.sort(s_in)[k - 1]
        assert fpr_at_tpr(s_in, s_out, tpr=tpr) == np.mean(s_out <= t)
    thresholds = np.r_[-np.inf, np.unique(np.r_[s_in, s_out]), np.inf]
    brute = min(0.5 * (1 - np.mean(s_in <= t)) + 0.5 * np.mean(s_out <= t) for t in thresholds)
    assert detection_error(s_in, s_out) == pytest.approx(brute, abs=1e-15)


def test_auroc_exact_on_continuous_scores_and_torch_input():
    rng = np.random.default_rng(0)
    s_in = rng.normal(size=5000)
    s_out = rng.normal(0.7, size=3000)
    # exact Mann-Whitney count by brute force in integers (chunked outer comparison)
    twice_u = sum(int(2 * np.sum(c[:, None] > s_in) + np.sum(c[:, None] == s_in))
                  for c in np.array_split(s_out, 10))
    assert auroc(s_in, s_out) == float(Fraction(twice_u, 2 * 5000 * 3000))
    t_in, t_out = torch.from_numpy(s_in).float(), torch.from_numpy(s_out).float()
    assert auroc(t_in, t_out) == auroc(t_in.numpy().astype(np.float64), t_out.numpy())


def test_single_samples():
    assert auroc([0.0], [1.0]) == 1.0
    assert ood_metrics([0.0], [0.0])["auroc"] == 0.5


# ------------------------------------------------------------------------- selective prediction


def test_risk_coverage_hand_worked():
    curve = risk_coverage_curve([0.9, 0.8, 0.8, 0.5], [0, 1, 0, 1])
    np.testing.assert_array_equal(curve.thresholds, [0.9, 0.8, 0.5])
    np.testing.assert_array_equal(curve.coverage, [0.25, 0.75, 1.0])
    np.testing.assert_allclose(curve.risk, [0.0, 1 / 3, 0.5], rtol=1e-15)
    # no ties: risks at k = 1..4 are 0, 1/2, 1/3, 1/2
    assert aurc([0.9, 0.8, 0.7, 0.5], [0, 1, 0, 1]) == pytest.approx(
        (0 + 1 / 2 + 1 / 3 + 1 / 2) / 4, rel=1e-15)


def _plain_aurc(losses_in_order):
    losses = np.asarray(losses_in_order, dtype=np.float64)
    return float(np.mean(np.cumsum(losses) / np.arange(1, losses.size + 1)))


def test_aurc_with_ties_is_the_mean_over_tie_orderings():
    conf = np.array([0.9, 0.7, 0.7, 0.7, 0.4, 0.4])
    losses = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 2.5])
    groups = [[0], [1, 2, 3], [4, 5]]
    values = [
        _plain_aurc(losses[list(itertools.chain(*orders))])
        for orders in itertools.product(*(itertools.permutations(g) for g in groups))
    ]
    assert aurc(conf, losses) == pytest.approx(np.mean(values), rel=1e-14)
    # permuting the input changes nothing
    perm = np.array([3, 5, 0, 2, 4, 1])
    assert aurc(conf[perm], losses[perm]) == pytest.approx(aurc(conf, losses), rel=1e-15)


def test_aurc_oracle_and_worst_case():
    losses = np.array([0, 0, 0, 1, 1], dtype=float)
    # perfect ranking: risks 0, 0, 0, 1/4, 2/5
    assert aurc(-losses, losses) == pytest.approx((0.25 + 0.4) / 5, rel=1e-15)
    assert aurc(losses, losses) == pytest.approx(_plain_aurc([1, 1, 0, 0, 0]), rel=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_misclassification_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, 8, 400) / 8.0
    correct = rng.random(400) < 0.3 + conf * 0.6
    assert misclassification_auroc(conf, correct) == pytest.approx(
        roc_auc_score(correct, conf), abs=1e-12)
    assert misclassification_auroc(conf, correct.astype(int)) == misclassification_auroc(
        conf, correct)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_cpu_values():
    from evaluation.metrics import calibration_metrics

    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(size=1000), rng.normal(1.0, size=500)
    assert ood_metrics(torch.from_numpy(s_in).cuda(), torch.from_numpy(s_out).cuda()) == (
        ood_metrics(s_in, s_out))
    probs = torch.softmax(torch.randn(800, 5, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 5, (800,))
    assert calibration_metrics(probs.cuda(), labels.cuda()) == calibration_metrics(probs, labels)


def test_auroc_standard_error_hanley_mcneil():
    from evaluation.metrics.ood import auroc_standard_error

    # at A = 1/2 it is the exact null variance of Mann-Whitney's U / (n_in n_out)
    for n_in, n_out in ((5000, 5000), (7, 3), (1, 1)):
        assert auroc_standard_error(0.5, n_in, n_out) == pytest.approx(
            ((n_in + n_out + 1) / (12 * n_in * n_out)) ** 0.5, rel=1e-12)
    assert auroc_standard_error(1.0, 10, 20) == 0.0 == auroc_standard_error(0.0, 10, 20)
    # hand-worked at A = 0.75, 5000 + 5000: Q1 = 0.6, Q2 = 0.642857...
    var = (0.75 * 0.25 + 4999 * (0.6 - 0.5625) + 4999 * (2 * 0.5625 / 1.75 - 0.5625)) / 25e6
    assert auroc_standard_error(0.75, 5000, 5000) == pytest.approx(var ** 0.5, rel=1e-12)
    # a simulation of binormal scores agrees to within its own noise
    rng = np.random.default_rng(0)
    aurocs = [auroc(rng.normal(0, 1, 200), rng.normal(1, 1, 300)) for _ in range(400)]
    assert np.std(aurocs) == pytest.approx(auroc_standard_error(np.mean(aurocs), 200, 300),
                                           rel=0.15)
    with pytest.raises(ValueError, match="'value' argument of auroc_standard_error"):
        auroc_standard_error(1.5, 10, 10)
    with pytest.raises(ValueError, match="'n_out' argument of auroc_standard_error"):
        auroc_standard_error(0.9, 10, 0)
