"""Sample-quality metrics: known values, the scipy sqrtm formula, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from evaluation.metrics import (
    best_mapping_accuracy,
    classifier_score,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    mode_coverage,
    precision_recall,
    ring_modes,
)


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The reference formula (as pytorch-fid / TTUR): sqrtm of the non-symmetric product."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ----------------------------------------------------------------------------- Fréchet
def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 6))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_scipy_sqrtm_formula(seed):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(8, 8))
    a = rng.normal(size=(300, 8)) @ mix
    b = rng.normal(size=(250, 8)) @ (mix + 0.3 * rng.normal(size=(8, 8))) + 0.5
    assert frechet_distance(a, b) == pytest.approx(_scipy_fid(a, b), rel=1e-8, abs=1e-8)


def test_frechet_distance_of_gaussians_in_closed_form():
    # N(0, I) vs N(m, 4I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d
    d, m = 3, np.array([1.0, 2.0, 0.0])
    value = frechet_distance_from_statistics(np.zeros(d), np.eye(d), m, 4 * np.eye(d))
    assert value == pytest.approx(5.0 + d)


def test_frechet_distance_takes_tensors_and_statistics_agree():
    x = torch.randn(100, 4, dtype=torch.float32)
    y = torch.randn(120, 4, dtype=torch.float32) + 1
    direct = frechet_distance(x, y)
    assert direct == pytest.approx(
        frechet_distance_from_statistics(*feature_statistics(x), *feature_statistics(y)))
    assert direct > 3.0  # mean shift alone: |1|^2 * 4


# ----------------------------------------------------------------------------- classifier score
def test_classifier_score_of_uniform_one_hot_predictions_is_the_number_of_classes():
    probs = np.eye(10)[np.arange(200) % 10]  # every class equally often, one-hot
    assert classifier_score(probs) == pytest.approx(10.0)


def test_classifier_score_of_identical_predictions_is_one():
    row = np.array([0.7, 0.2, 0.1])
    assert classifier_score(np.tile(row, (50, 1))) == pytest.approx(1.0)
    assert classifier_score(np.tile(np.eye(3)[1], (50, 1))) == pytest.approx(1.0)


def test_classifier_score_by_hand():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    marginal = probs.mean(0)
    kl = (probs * np.log(probs / marginal)).sum(1).mean()
    assert classifier_score(probs) == pytest.approx(math.exp(kl))


# ----------------------------------------------------------------------------- precision / recall
def test_precision_recall_of_a_set_against_itself_is_one():
    x = np.random.default_rng(0).normal(size=(300, 5))
    pr = precision_recall(x, x, k=3)
    assert pr.precision == 1.0 and pr.recall == 1.0


def test_precision_recall_of_a_collapsed_generator():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 2))
    fake = real[real[:, 0] > 1.0]  # real points, but only from one corner (~16% of them)
    pr = precision_recall(real, fake, k=3)
    assert pr.precision == 1.0  # every fake sample lies on the real manifold
    assert pr.recall < 0.3  # but most real samples are far from any fake one


def test_precision_recall_of_disjoint_sets_is_zero():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(100, 3))
    pr = precision_recall(real, real + 100.0, k=3)
    assert pr == (0.0, 0.0)


# ----------------------------------------------------------------------------- ring / mapping
def test_mode_coverage_on_the_ring():
    modes = ring_modes(8, 2.0)
    rng = np.random.default_rng(0)
    good = modes[[0, 0, 1, 2, 3]] + 0.02 * rng.normal(size=(5, 2)) * 0.5
    far = np.array([[0.0, 0.0], [5.0, 5.0], [modes[4, 0] + 0.07, modes[4, 1]]])  # 0.07 > 3 std
    cov = mode_coverage(np.concatenate([good, far]), modes, 0.02)
    assert cov.modes_covered == 4
    assert cov.high_quality == pytest.approx(5 / 8)
    assert list(cov.counts) == [2, 1, 1, 1, 0, 0, 0, 0]
    assert mode_coverage(np.concatenate([good, far]), modes, 0.02, min_count=2).modes_covered == 1


def test_best_mapping_accuracy_finds_the_permutation():
    codes = np.repeat(np.arange(4), 10)
    perm = np.array([2, 0, 3, 1])
    labels = perm[codes].copy()
    assert best_mapping_accuracy(codes, labels) == 1.0
    labels[:5] = (labels[:5] + 1) % 4  # 5 of 40 wrong
    assert best_mapping_accuracy(codes, labels) == pytest.approx(35 / 40)
    # two codes mapped to the same class: only one of them can be matched
    assert best_mapping_accuracy(np.array([0, 1, 2, 3]), np.array([5, 5, 5, 5])) == 0.25


# ----------------------------------------------------------------------------- bad input
def test_bad_feature_sets():
    a, b = np.zeros((10, 3)), np.zeros((10, 4))
    with pytest.raises(ValueError, match="same number of features"):
        frechet_distance(a, b)
    with pytest.raises(ValueError, match="same number of features"):
        precision_recall(np.random.rand(10, 3), np.random.rand(10, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(np.ones((1, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(np.ones((1, 3)))
    nan = np.random.rand(10, 3)
    nan[4, 1] = np.nan
    with pytest.raises(ValueError, match="'features_fake' argument must be finite"):
        frechet_distance(np.random.rand(10, 3), nan)
    with pytest.raises(ValueError, match="must be finite"):
        precision_recall(nan, np.random.rand(10, 3))
    with pytest.raises(ValueError, match=r"shape \(N, F\)"):
        frechet_distance(np.ones(5), np.ones(5))


def test_classifier_score_rejects_non_probabilities():
    with pytest.raises(ValueError, match="rows summing to 1"):
        classifier_score(np.array([[0.5, 0.4], [0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        classifier_score(np.array([[1.5, -0.5], [0.5, 0.5]]))


def test_precision_recall_rejects_k_out_of_range():
    x = np.random.default_rng(0).normal(size=(50, 2))
    message = ("The 'k' parameter of precision_recall must be an int >= 1 and < the number of "
               "samples (50). Got 50 instead.")
    with pytest.raises(ValueError) as info:
        precision_recall(x, x, k=50)
    assert str(info.value) == message
    for k in (0, 2.0, True):
        with pytest.raises(ValueError, match="'k' parameter"):
            precision_recall(x, x, k=k)


def test_mode_coverage_and_mapping_reject_bad_input():
    with pytest.raises(ValueError, match="'std' parameter"):
        mode_coverage(np.zeros((3, 2)), ring_modes(), 0.0)
    with pytest.raises(ValueError, match="same number of features"):
        mode_coverage(np.zeros((3, 3)), ring_modes(), 0.02)
    with pytest.raises(ValueError, match="integer"):
        best_mapping_accuracy(np.array([0.5, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="same length"):
        best_mapping_accuracy(np.array([0, 1]), np.array([0, 1, 1]))
