"""Bad input gives clear errors that name the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation import metrics as M

GOOD_PROBS = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
GOOD_LABELS = np.array([0, 1, 1])

CLASSIFICATION = [
    M.expected_calibration_error,
    M.maximum_calibration_error,
    M.classwise_calibration_error,
    M.reliability_table,
    M.over_under_confidence,
    M.brier_score,
    M.nll,
    M.accuracy,
    M.calibration_metrics,
]


@pytest.mark.parametrize("fn", CLASSIFICATION, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "probs,labels,match",
    [
        (GOOD_PROBS, np.array([0, 1]), r"'labels' argument must have the same length as "
                                       r"'probs' \(3\); got 2"),
        (np.array([[0.7, 0.3], [np.nan, 0.5], [0.5, 0.5]]), GOOD_LABELS,
         r"'probs' argument must be finite; found nan at \(1, 0\)"),
        (np.array([[0.7, 0.3], [np.inf, 0.5], [0.5, 0.5]]), GOOD_LABELS,
         "'probs' argument must be finite; found inf"),
        (np.array([[1.2, -0.2], [0.2, 0.8], [0.5, 0.5]]), GOOD_LABELS,
         r"'probs' argument must hold probabilities in \[0, 1\]; found 1.2 at \(0, 0\)"),
        (np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.3]]), GOOD_LABELS,
         r"'probs' argument must have rows summing to 1 \(tolerance 0.0001\); row 2 sums to "
         r"0.8\."),
        (GOOD_PROBS, np.array([0, 2, 1]),
         r"'labels' argument must hold class indices in \[0, 2\); got 2 at index 1"),
        (GOOD_PROBS, np.array([0, -1, 1]), r"class indices in \[0, 2\); got -1 at index 1"),
        (GOOD_PROBS, np.array([0.0, 1.0, 1.0]),
         "'labels' argument must hold integer class indices; got dtype float64"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "'probs' argument must not be empty"),
        (np.array([0.5, 0.5]), GOOD_LABELS, r"'probs' argument must be a 2-D array of shape "
                                            r"\(N, C\); got shape \(2,\)"),
        (np.ones((3, 1)), GOOD_LABELS, "at least 2 columns"),
        (np.array([["a", "b"]]), GOOD_LABELS, "must hold real numbers"),
    ],
)
def test_classification_inputs(fn, probs, labels, match):
    with pytest.raises(ValueError, match=match):
        fn(probs, labels)


def test_probability_tolerance_is_1e_4_and_looser_for_half_precision():
    ok = np.array([[0.70004, 0.3]])  # off by 4e-5
    assert M.accuracy(ok, [0]) == 1.0
    with pytest.raises(ValueError, match="row 0 sums to 1.0003"):
        M.accuracy(np.array([[0.7003, 0.3]]), [0])
    half = torch.tensor([[0.7003, 0.3]], dtype=torch.float16)
    assert M.accuracy(half, torch.tensor([0])) == 1.0
    with pytest.raises(ValueError, match=r"tolerance 0.01\)"):
        M.accuracy(torch.tensor([[0.8, 0.3]], dtype=torch.bfloat16), torch.tensor([0]))


def test_parameter_errors():
    with pytest.raises(ValueError, match="The 'n_bins' parameter of expected_calibration_error "
                                         "must be an int in \\[1, 1000000\\]. Got 0 instead."):
        M.expected_calibration_error(GOOD_PROBS, GOOD_LABELS, n_bins=0)
    with pytest.raises(ValueError, match="'n_bins' parameter .* Got 2.5 instead"):
        M.expected_calibration_error(GOOD_PROBS, GOOD_LABELS, n_bins=2.5)
    with pytest.raises(ValueError, match="'norm' parameter .* must be one of 'l1', 'l2', 'max'"):
        M.expected_calibration_error(GOOD_PROBS, GOOD_LABELS, norm="L1")
    with pytest.raises(ValueError, match="'binning' parameter .* Got 'adaptive' instead"):
        M.classwise_calibration_error(GOOD_PROBS, GOOD_LABELS, binning="adaptive")
    with pytest.raises(ValueError, match=r"'tpr' parameter of fpr_at_tpr must be a float in "
                                         r"\(0, 1\)"):
        M.fpr_at_tpr([0.0], [1.0], tpr=95)
    with pytest.raises(ValueError, match="'level' parameter of gaussian_interval"):
        M.gaussian_interval([0.0], [1.0], level=1.0)
    with pytest.raises(ValueError, match="'num_dims' parameter of bits_per_dim"):
        M.bits_per_dim([-1.0], 0)
    with pytest.raises(ValueError, match="'bin_width' parameter of bits_per_dim"):
        M.bits_per_dim([-1.0], 3, bin_width=0.0)


OOD = [M.auroc, M.aupr_in, M.aupr_out, M.fpr_at_tpr, M.detection_error, M.ood_metrics,
       M.roc_curve, M.precision_recall_curve]


@pytest.mark.parametrize("fn", OOD, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "scores_in,scores_out,match",
    [
        ([], [1.0], "'scores_in' argument must not be empty"),
        ([1.0], [], "'scores_out' argument must not be empty"),
        ([1.0, np.nan], [1.0], "'scores_in' argument must be finite; found nan at index 1"),
        ([1.0], [np.inf], "'scores_out' argument must be finite; found inf at index 0"),
        ([1.0], [-np.inf], "'scores_out' argument must be finite; found -inf"),
        ([[1.0, 2.0]], [1.0], r"'scores_in' argument must be a 1-D array of shape \(N,\); "
                              r"got shape \(1, 2\)"),
    ],
)
def test_ood_inputs(fn, scores_in, scores_out, match):
    # "A single class present" for an OOD AUROC is an empty in- or out-set.
    with pytest.raises(ValueError, match=match):
        fn(scores_in, scores_out)


def test_not_an_array():
    with pytest.raises(TypeError, match="'scores_in' argument must be a numpy array, a torch "
                                        "tensor or a sequence of numbers; got dict"):
        M.auroc({"a": 1}, [1.0])
    with pytest.raises(ValueError, match="'scores_in' argument must be real"):
        M.auroc(torch.tensor([1 + 1j]), [1.0])


def test_selective_inputs():
    with pytest.raises(ValueError, match="both correct and wrong predictions .* all 3 are "
                                         "correct"):
        M.misclassification_auroc([0.1, 0.2, 0.3], [True, True, True])
    with pytest.raises(ValueError, match="all 2 are wrong"):
        M.misclassification_auroc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="'correct' argument must be boolean .* values other "
                                         "than 0 and 1"):
        M.misclassification_auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="'losses' argument must have the same length as "
                                         r"'confidences' \(2\); got 3"):
        M.aurc([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match="'confidences' argument must be finite"):
        M.risk_coverage_curve([np.nan, 0.2], [0, 1])
    with pytest.raises(ValueError, match="'confidences' argument must not be empty"):
        M.aurc([], [])


def test_regression_inputs():
    with pytest.raises(ValueError, match="'variance' argument must be > 0; found 0.0"):
        M.gaussian_nll([0.0, 1.0], [1.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"'mean' argument must have the same shape as "
                                         r"'targets' \(3,\); got \(2,\)"):
        M.crps_gaussian([0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="'targets' argument must be finite; found nan"):
        M.rmse([0.0], [np.nan])
    with pytest.raises(ValueError, match="'weights' argument must have rows summing to 1"):
        M.gaussian_mixture_nll([[0.5, 0.4]], [[0.0, 1.0]], [[1.0, 1.0]], [0.0])
    with pytest.raises(ValueError, match="'lower' argument must be <= 'upper'"):
        M.interval_coverage([1.0], [0.0], [0.5])
    with pytest.raises(ValueError, match=r"'levels' argument must lie in \[0, 1\]"):
        M.regression_calibration_curve([0.0], [1.0], [0.0], levels=[0.5, 1.5])


def test_likelihood_inputs():
    with pytest.raises(ValueError, match="'log_probs' argument must be finite or -inf; found "
                                         "nan at index 1"):
        M.nll_nats([0.0, np.nan])
    with pytest.raises(ValueError, match="'log_probs' argument must be finite or -inf; found inf"):
        M.bits_per_dim([np.inf], 3)
    with pytest.raises(ValueError, match="column 0 is all -inf"):
        M.effective_sample_size(np.full((3, 1), -np.inf))
    with pytest.raises(ValueError, match="'axis' parameter of log_mean_exp"):
        M.log_mean_exp([1.0, 2.0], axis=1)
    with pytest.raises(ValueError, match=r"'log_weights' argument must be a 2-D array of shape "
                                         r"\(K, N\)"):
        M.importance_sampled_log_likelihood([1.0, 2.0])
