"""Inputs that used to pass silently (or fail with an error naming no argument) in the
metrics and the array checks they share; each test pins the value or the message."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from dunno.validation import as_labels, as_tensor
from evaluation import metrics as M
from evaluation.metrics.ood import auroc_standard_error

IN = np.array([0.0, 1.0, 2.0, 3.0])
OUT = np.array([1.0, 2.5, 4.0])


# ------------------------------------------------------------------------------------ OOD
@pytest.mark.parametrize("tpr", [True, np.bool_(True), np.array([0.5, 0.9]), "1.0"])
def test_fpr_at_tpr_refuses_bools_and_arrays(tpr):
    # True compared equal to 1.0 and was read as tpr = 1.0; an array raised numpy's
    # "truth value of an array is ambiguous"
    with pytest.raises(ValueError, match="The 'tpr' parameter of fpr_at_tpr must be a float"):
        M.fpr_at_tpr(IN, OUT, tpr=tpr)


def test_fpr_at_tpr_values_at_one_and_below():
    # tpr = 1: threshold = max(IN) = 3, OUT <= 3 is {1.0, 2.5}
    for one in (1, 1.0, np.float64(1.0), np.int64(1)):
        assert M.fpr_at_tpr(IN, OUT, tpr=one) == 2 / 3
    # tpr = 0.5: k = 2, threshold 1.0, OUT <= 1 is {1.0}
    assert M.fpr_at_tpr(IN, OUT, tpr=0.5) == 1 / 3


@pytest.mark.parametrize("value", ["0.5", True, np.array([0.5, 0.6]), None])
def test_auroc_standard_error_refuses_non_numbers(value):
    # "0.5" and True were converted by float(); an array gave a TypeError naming nothing
    with pytest.raises(ValueError, match="The 'value' argument of auroc_standard_error must be "
                                         "an AUROC in \\[0, 1\\]"):
        auroc_standard_error(value, 10, 10)


def test_auroc_standard_error_accepts_numpy_scalars():
    exact = math.sqrt((10 + 10 + 1) / (12 * 10 * 10))  # the null variance at A = 1/2
    assert auroc_standard_error(np.float32(0.5), 10, 10) == pytest.approx(exact, rel=1e-12)
    assert auroc_standard_error(np.float64(0.5), np.int64(10), 10) == pytest.approx(exact,
                                                                                   rel=1e-12)


# ------------------------------------------------------------------------------ likelihood
@pytest.mark.parametrize("axis", [True, False, np.bool_(True)])
def test_log_mean_exp_refuses_bool_axis(axis):
    # True passed the Integral check and failed inside numpy with "an integer is required"
    with pytest.raises(ValueError, match="The 'axis' parameter of log_mean_exp must be an int"):
        M.log_mean_exp(np.zeros((2, 3)), axis=axis)


def test_log_mean_exp_numpy_int_axis():
    v = np.log(np.array([[1.0, 3.0], [2.0, 6.0]]))
    np.testing.assert_allclose(M.log_mean_exp(v, axis=np.int64(1)), np.log([2.0, 4.0]),
                               rtol=1e-14)
    np.testing.assert_allclose(M.log_mean_exp(v, axis=-2), np.log([1.5, 4.5]), rtol=1e-14)


def test_nll_of_perfect_predictions_is_plus_zero():
    # -sum(log 1) was -0.0, printed as "-0.0" in result tables
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    for value in (M.nll(probs, [0, 1]), M.calibration_metrics(probs, [0, 1])["nll"],
                  M.nll_nats([0.0, 0.0])):
        assert value == 0.0 and math.copysign(1.0, value) == 1.0
    assert M.nll(np.array([[0.5, 0.5]]), [1]) == pytest.approx(math.log(2.0), rel=1e-15)
    assert M.nll_nats([-1.0, -2.0]) == 1.5


# -------------------------------------------------------------------------------- samples
@pytest.mark.parametrize("radius", [float("nan"), float("inf"), 0.0, -1.0, "2"])
def test_ring_modes_refuses_bad_radius(radius):
    # a NaN radius used to give a (K, 2) array of NaN modes
    with pytest.raises(ValueError, match="The 'radius' parameter of ring_modes must be a float "
                                         "in \\(0, inf\\)"):
        M.ring_modes(8, radius)


def test_ring_modes_values():
    modes = M.ring_modes(4, 3)
    np.testing.assert_allclose(modes, [[3, 0], [0, 3], [-3, 0], [0, -3]], atol=1e-15)
    assert modes.dtype == np.float64


# ----------------------------------------------------------------------------- regression
def test_mixture_weight_errors_say_what_was_given():
    w = np.array([[0.3, 0.7], [0.5, 0.5]])
    mu = np.zeros((2, 2))
    var = np.ones((2, 2))
    y = np.zeros(2)
    logits = np.log(w)  # logits passed for weights
    for fn in (M.gaussian_mixture_nll, M.crps_mixture):
        with pytest.raises(ValueError, match=r"'weights' argument must hold mixture weights in "
                                             r"\[0, 1\] .*found -1.20397\d* at \(0, 0\)"):
            fn(logits, mu, var, y)
    bad_var = var.copy()
    bad_var[1, 0] = -2.0
    with pytest.raises(ValueError, match="'variances' argument must be > 0; found -2.0 at flat "
                                         "index 2"):
        M.gaussian_mixture_nll(w, mu, bad_var, y)
    # the valid call: both components N(0, 1), so the NLL is that of N(0, 1) at 0
    assert M.gaussian_mixture_nll(w, mu, var, y) == pytest.approx(0.5 * math.log(2 * math.pi),
                                                                  rel=1e-14)


def test_regression_calibration_levels_error_says_what_was_given():
    with pytest.raises(ValueError, match=r"'levels' argument must lie in \[0, 1\]; found 1.5 "
                                         r"at index 1"):
        M.regression_calibration_curve([0.0, 0.0], [1.0, 1.0], [0.1, 3.0], levels=[0.5, 1.5])
    curve = M.regression_calibration_curve([0.0, 0.0], [1.0, 1.0], [0.1, 3.0],
                                           levels=[0.5, 0.99, 1.0])
    # |z| = 0.1 needs level erf(0.1/sqrt 2) = 0.0797, |z| = 3 needs 0.9973
    np.testing.assert_array_equal(curve.observed, [0.5, 0.5, 1.0])


# ---------------------------------------------------------------------- validation.tensors
def test_as_tensor_reads_reversed_and_read_only_arrays():
    # torch.from_numpy raised "At least one stride ... is negative" naming no argument
    np.testing.assert_array_equal(as_labels(np.arange(3)[::-1], 3).numpy(), [2, 1, 0])
    frozen = np.array([1.0, 2.0])
    frozen.flags.writeable = False
    t = as_tensor(frozen, "x")
    assert t.tolist() == [1.0, 2.0]
    t[0] = 5.0  # a copy: the caller's read-only array is untouched
    assert frozen[0] == 1.0


def test_as_tensor_names_the_argument_for_unsupported_dtypes():
    for value in (np.array(["a", "b"]), np.array([None, 1])):
        with pytest.raises(ValueError, match="The 'labels' argument must hold numbers"):
            as_labels(value, 2)


@pytest.mark.parametrize("big", [1e20, -1e19, 2.0**53])
def test_as_labels_refuses_float_labels_beyond_int64(big):
    # 1e20 was cast to int64 (undefined, -2**63 here) and reported as "values in
    # [-9223372036854775808, 1]"
    labels = np.array([0.0, 1.0, big])
    given = re.escape(f"[{min(0.0, big):g}, {max(1.0, big):g}]")
    with pytest.raises(ValueError, match=f"'labels' argument must hold class indices .*Got "
                                         f"values in {given}"):
        as_labels(labels, 3)
    assert as_labels(torch.tensor([0.0, 1.0, 2.0]), 3, 3).tolist() == [0, 1, 2]


def test_frechet_statistics_refuse_asymmetric_or_indefinite_covariances():
    from evaluation.metrics import frechet_distance, frechet_distance_from_statistics
    from evaluation.metrics.samples import feature_statistics

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(150, 4)) + 0.5
    mu_a, s_a = feature_statistics(a)
    mu_b, s_b = feature_statistics(b)
    assert frechet_distance_from_statistics(mu_a, s_a, mu_b, s_b) == pytest.approx(
        frechet_distance(a, b), rel=1e-12)
    skew = s_b.copy()
    skew[0, 1] += 0.3
    with pytest.raises(ValueError, match=r"'sigma_fake'.*symmetric.*0\.3"):
        frechet_distance_from_statistics(mu_a, s_a, mu_b, skew)
    indefinite = s_a - 2.0 * np.eye(4)  # eigenvalues ~1 - 2 < 0
    with pytest.raises(ValueError, match=r"'sigma_real'.*positive semi-definite.*-0?\.?\d"):
        frechet_distance_from_statistics(mu_a, indefinite, mu_b, s_b)
    # round-off-sized asymmetry is still accepted
    tiny = s_b + 1e-12 * rng.normal(size=(4, 4))
    assert frechet_distance_from_statistics(mu_a, s_a, mu_b, tiny) == pytest.approx(
        frechet_distance(a, b), rel=1e-9)
