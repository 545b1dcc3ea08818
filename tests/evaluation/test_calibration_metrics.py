"""Calibration metrics: hand-worked values, the binning edge rules, and cross-checks against a
direct NumPy re-implementation, scikit-learn and torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from evaluation.metrics import (
    ConfidenceSplit,
    accuracy,
    brier_score,
    calibration_metrics,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    nll,
    nll_from_logits,
    over_under_confidence,
    reliability_table,
)
from evaluation.metrics._binning import _bin_index


def _binary(confidences, correct):
    """Two-class probs whose top label is class 0 with the given confidence (>= 0.5) and
    labels that make the prediction right or wrong."""
    conf = np.asarray(confidences, dtype=np.float64)
    probs = np.stack([conf, 1.0 - conf], axis=1)
    labels = np.where(np.asarray(correct, dtype=bool), 0, 1)
    return probs, labels


# ----------------------------------------------------------------------------- reference


def _ref_bins(values, n_bins):
    """Masks of the (lo, hi] bins, written out literally."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    masks = []
    for b in range(n_bins):
        m = (values > edges[b]) & (values <= edges[b + 1])
        if b == 0:
            m |= values == 0.0
        masks.append(m)
    return masks


def _ref_error(values, hits, masks, norm):
    n = values.shape[0]
    gaps = [(m.sum() / n, abs(hits[m].mean() - values[m].mean())) for m in masks if m.any()]
    if norm == "l1":
        return sum(w * g for w, g in gaps)
    if norm == "l2":
        return math.sqrt(sum(w * g * g for w, g in gaps))
    return max(g for _, g in gaps)


def _ref_equal_mass_masks(values, hits, n_bins):
    order = np.lexsort((hits, values))
    masks = []
    for chunk in np.array_split(order, n_bins):
        m = np.zeros(values.shape[0], dtype=bool)
        m[chunk] = True
        masks.append(m)
    return masks


def _ref_ece(probs, labels, n_bins, binning, norm):
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1)
    hits = (p.argmax(axis=1) == labels).astype(np.float64)
    if binning == "equal_width":
        masks = _ref_bins(conf, n_bins)
    else:
        masks = _ref_equal_mass_masks(conf, hits, n_bins)
    return _ref_error(conf, hits, masks, norm)


def _ref_classwise(probs, labels, n_bins, binning, norm):
    p = np.asarray(probs, dtype=np.float64)
    errors = []
    for k in range(p.shape[1]):
        v, h = p[:, k], (labels == k).astype(np.float64)
        masks = _ref_bins(v, n_bins) if binning == "equal_width" else _ref_equal_mass_masks(
            v, h, n_bins)
        errors.append(_ref_error(v, h, masks, norm))
    return float(np.mean(errors))


def _random_case(seed, n=2000, c=7, temperature=2.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * temperature
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, c, n)
    return probs.astype(dtype), labels


# ----------------------------------------------------------------------------- hand-worked


def test_perfectly_calibrated_bins_give_zero():
    # 4 samples at confidence 0.75 with 3 right; 8 samples at 0.625 with 5 right.
    probs, labels = _binary([0.75] * 4 + [0.625] * 8, [1, 1, 1, 0] + [1] * 5 + [0] * 3)
    assert expected_calibration_error(probs, labels) == 0.0
    assert maximum_calibration_error(probs, labels) == 0.0
    assert expected_calibration_error(probs, labels, norm="l2") == 0.0
    assert over_under_confidence(probs, labels) == ConfidenceSplit(0.0, 0.0)


def test_all_wrong_at_confidence_one_gives_one():
    probs = np.tile([1.0, 0.0, 0.0], (10, 1))
    labels = np.ones(10, dtype=np.int64)
    assert expected_calibration_error(probs, labels) == 1.0
    assert maximum_calibration_error(probs, labels) == 1.0
    assert over_under_confidence(probs, labels) == ConfidenceSplit(1.0, 0.0)
    table = reliability_table(probs, labels)
    assert table.n_bins == 15  # no extra bin for 1.0
    assert table.counts[-1] == 10 and table.counts[:-1].sum() == 0


def test_hand_worked_ece_with_edge_confidences():
    # n_bins=4: edges 0, .25, .5, .75, 1 (exact in binary). 0.5 belongs to (0.25, 0.5],
    # 0.75 to (0.5, 0.75], 1.0 to (0.75, 1].
    probs, labels = _binary([0.5, 0.75, 0.75, 1.0], [1, 0, 1, 1])
    table = reliability_table(probs, labels, n_bins=4)
    np.testing.assert_array_equal(table.counts, [0, 1, 2, 1])
    np.testing.assert_array_equal(table.correct_counts, [0, 1, 1, 1])
    np.testing.assert_allclose(table.mean_confidence[1:], [0.5, 0.75, 1.0])
    assert np.isnan(table.mean_confidence[0]) and np.isnan(table.accuracy[0])
    # gaps: 0.5 (weight 1/4, under-confident), 0.25 (weight 2/4, over-confident), 0
    assert expected_calibration_error(probs, labels, n_bins=4) == 0.25
    assert math.isclose(
        expected_calibration_error(probs, labels, n_bins=4, norm="l2"),
        math.sqrt(0.25 * 0.25 + 0.5 * 0.0625),
        rel_tol=1e-15,
    )
    assert maximum_calibration_error(probs, labels, n_bins=4) == 0.5
    assert over_under_confidence(probs, labels, n_bins=4) == ConfidenceSplit(0.125, 0.125)


def test_interior_edge_goes_to_lower_bin_and_zero_to_first():
    edges = np.linspace(0.0, 1.0, 16)
    values = np.concatenate([edges, np.nextafter(edges, 2.0)[:-1], np.nextafter(edges, -1.0)[1:]])
    expected = np.maximum(np.searchsorted(edges, values, side="left") - 1, 0)
    np.testing.assert_array_equal(_bin_index(values, edges), expected)
    assert _bin_index(np.array([0.0]), edges)[0] == 0
    assert _bin_index(np.array([1.0]), edges)[0] == 14
    assert _bin_index(np.array([edges[3]]), edges)[0] == 2  # (e2, e3]
    assert _bin_index(np.array([np.nextafter(edges[3], 1.0)]), edges)[0] == 3


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 10, 15, 20, 100, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bin_index_matches_searchsorted_next_to_every_edge(n_bins, dtype):
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    e = edges.astype(dtype)
    values = np.concatenate([
        e, np.nextafter(e, dtype(2.0)), np.nextafter(e, dtype(-1.0)),
        np.linspace(0.0, 1.0, 5001).astype(dtype),
    ])
    values = values[(values >= 0) & (values <= 1)]
    expected = np.maximum(np.searchsorted(edges, values.astype(np.float64), side="left") - 1, 0)
    np.testing.assert_array_equal(_bin_index(values, edges), expected)


def test_equal_mass_hand_worked_and_tie_break():
    probs, labels = _binary([0.6, 0.7, 0.8, 0.9], [1, 0, 1, 1])
    # groups {0.6, 0.7}: acc 0.5, conf 0.65; {0.8, 0.9}: acc 1, conf 0.85
    ece = expected_calibration_error(probs, labels, n_bins=2, binning="equal_mass")
    assert math.isclose(ece, 0.15, rel_tol=1e-12)
    # Ties: four samples at 0.6, two right. Sorted (conf, correct): wrong ones first.
    probs, labels = _binary([0.6] * 4, [1, 0, 1, 0])
    ece = expected_calibration_error(probs, labels, n_bins=2, binning="equal_mass")
    assert math.isclose(ece, 0.5 * 0.6 + 0.5 * 0.4, rel_tol=1e-12)
    # ... whatever the input order
    perm = [2, 0, 3, 1]
    assert expected_calibration_error(
        probs[perm], labels[perm], n_bins=2, binning="equal_mass"
    ) == ece
    table = reliability_table(probs, labels, n_bins=2, binning="equal_mass")
    np.testing.assert_array_equal(table.counts, [2, 2])
    np.testing.assert_array_equal(table.correct_counts, [0, 2])
    np.testing.assert_array_equal(table.lower, [0.6, 0.6])


def test_equal_mass_with_fewer_samples_than_bins():
    probs, labels = _binary([0.9, 0.6], [1, 0])
    table = reliability_table(probs, labels, n_bins=5, binning="equal_mass")
    np.testing.assert_array_equal(table.counts, [1, 1, 0, 0, 0])
    assert math.isclose(
        expected_calibration_error(probs, labels, n_bins=5, binning="equal_mass"),
        0.5 * 0.6 + 0.5 * 0.1, rel_tol=1e-12,
    )


def test_argmax_ties_go_to_the_lowest_class():
    probs = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert accuracy(probs, np.array([0, 1])) == 0.5
    uniform = np.full((6, 3), 1.0 / 3.0)
    labels = np.array([0, 1, 2, 0, 1, 2])
    assert accuracy(uniform, labels) == pytest.approx(1.0 / 3.0)
    assert accuracy(torch.tensor(uniform, dtype=torch.float32), torch.tensor(labels)) == (
        pytest.approx(1.0 / 3.0)
    )


def test_classwise_hand_worked():
    # C = 2, one-hot predictions: class 0 probs are {1, 1, 0}, class 1 probs {0, 0, 1}.
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1])
    # class 0: bin (14/15, 1] holds 2 samples, 1 labelled 0 -> gap 0.5, weight 2/3;
    #          first bin holds p = 0 with label 1 -> gap 0. CE_0 = 1/3. Same for class 1.
    assert math.isclose(classwise_calibration_error(probs, labels), 1.0 / 3.0, rel_tol=1e-15)


# ----------------------------------------------------------------------------- cross-checks


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_ece_matches_direct_numpy(seed, binning, norm):
    probs, labels = _random_case(seed)
    for n_bins in (15, 4):
        ours = expected_calibration_error(probs, labels, n_bins=n_bins, binning=binning,
                                          norm=norm)
        ref = _ref_ece(probs, labels, n_bins, binning, norm)
        assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15)
        ours = classwise_calibration_error(probs, labels, n_bins=n_bins, binning=binning,
                                           norm=norm)
        ref = _ref_classwise(probs, labels, n_bins, binning, norm)
        assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_ece_on_quantised_probabilities_hitting_edges():
    # Probabilities on a 1/60 grid land exactly on many 15-bin edges.
    rng = np.random.default_rng(3)
    counts = rng.multinomial(60, [0.5, 0.3, 0.2], size=3000)
    probs = counts / 60.0
    labels = rng.integers(0, 3, 3000)
    for norm in ("l1", "l2", "max"):
        assert expected_calibration_error(probs, labels, norm=norm) == pytest.approx(
            _ref_ece(probs, labels, 15, "equal_width", norm), rel=1e-12, abs=1e-15)
        assert classwise_calibration_error(probs, labels, norm=norm) == pytest.approx(
            _ref_classwise(probs, labels, 15, "equal_width", norm), rel=1e-12, abs=1e-15)


def test_float32_torch_and_numpy_inputs_agree():
    probs, labels = _random_case(5, dtype=np.float32)
    ref = _ref_ece(probs, labels, 15, "equal_width", "l1")  # float32 values, float64 maths
    assert expected_calibration_error(probs, labels) == pytest.approx(ref, rel=1e-12)
    t = torch.from_numpy(probs)
    assert expected_calibration_error(t, torch.from_numpy(labels)) == (
        expected_calibration_error(probs, labels))
    assert expected_calibration_error(t.to(torch.float64), labels) == pytest.approx(ref, rel=1e-12)
    assert expected_calibration_error(t.requires_grad_(), labels.tolist()) == (
        expected_calibration_error(probs, labels))
    # non-contiguous and read-only inputs take the NumPy path and agree
    wide = np.repeat(probs, 2, axis=1) / 2.0
    assert accuracy(wide[:, ::2] * 2.0, labels) == accuracy(probs, labels)
    frozen = probs.copy()
    frozen.setflags(write=False)
    assert expected_calibration_error(frozen, labels) == expected_calibration_error(probs, labels)


def test_brier_nll_accuracy_against_direct_formulas():
    probs, labels = _random_case(7)
    onehot = np.eye(probs.shape[1])[labels]
    assert brier_score(probs, labels) == pytest.approx(
        np.mean(np.sum((probs - onehot) ** 2, axis=1)), rel=1e-13)
    assert nll(probs, labels) == pytest.approx(
        -np.mean(np.log(probs[np.arange(len(labels)), labels])), rel=1e-13)
    assert nll(probs, labels) == pytest.approx(log_loss(labels, probs), rel=1e-12)
    assert accuracy(probs, labels) == accuracy_score(labels, probs.argmax(axis=1))
    # binary: the multiclass Brier score is twice scikit-learn's (which scores class 1 only)
    pb, yb = _random_case(8, c=2)
    assert brier_score(pb, yb) == pytest.approx(2 * brier_score_loss(yb, pb[:, 1]), rel=1e-13)


def test_nll_from_logits_matches_torch_cross_entropy():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(500, 6)) * 30.0  # large logits: softmax would underflow
    labels = rng.integers(0, 6, 500)
    expected = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(labels)).item()
    assert nll_from_logits(logits, labels) == pytest.approx(expected, rel=1e-12)
    assert nll_from_logits(torch.from_numpy(logits).float(), labels) == pytest.approx(
        expected, rel=1e-5)


def test_nll_is_inf_when_the_true_class_has_probability_zero():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert nll(probs, np.array([1, 0])) == math.inf
    assert nll_from_logits(np.array([[100.0, -100.0]]), np.array([1])) == pytest.approx(200.0)


def test_calibration_metrics_equal_the_individual_functions():
    probs, labels = _random_case(11, n=1500, c=4)
    m = calibration_metrics(probs, labels)
    assert m["n"] == 1500
    assert m["accuracy"] == accuracy(probs, labels)
    assert m["nll"] == pytest.approx(nll(probs, labels), rel=1e-14)
    assert m["brier"] == pytest.approx(brier_score(probs, labels), rel=1e-14)
    assert m["ece"] == expected_calibration_error(probs, labels)
    assert m["ece_l2"] == expected_calibration_error(probs, labels, norm="l2")
    assert m["mce"] == maximum_calibration_error(probs, labels)
    assert m["classwise_ece"] == pytest.approx(classwise_calibration_error(probs, labels),
                                               rel=1e-14)
    split = over_under_confidence(probs, labels)
    assert (m["overconfidence"], m["underconfidence"]) == tuple(split)
    assert split.overconfidence + split.underconfidence == pytest.approx(m["ece"], rel=1e-13)
    table = reliability_table(probs, labels)
    assert table.calibration_error() == m["ece"]
    assert table.n_samples == 1500
    np.testing.assert_allclose(table.gap, table.accuracy - table.mean_confidence)


def test_results_do_not_depend_on_the_chunk_size(monkeypatch):
    import evaluation.metrics._binning as binning

    probs, labels = _random_case(12, n=500, c=4)
    before = {b: calibration_metrics(probs, labels) | {
        "ece_binned": expected_calibration_error(probs, labels, binning=b)}
        for b in ("equal_width", "equal_mass")}
    logits = np.log(probs)
    nll_before = nll_from_logits(logits, labels)
    monkeypatch.setattr(binning, "_TOP_CHUNK_ROWS", 7)
    monkeypatch.setattr(binning, "_CHUNK_ELEMENTS", 12)
    for b, ref in before.items():
        after = calibration_metrics(probs, labels) | {
            "ece_binned": expected_calibration_error(probs, labels, binning=b)}
        for key, value in ref.items():
            assert after[key] == pytest.approx(value, rel=1e-13, abs=1e-15), key
    assert nll_from_logits(logits, labels) == pytest.approx(nll_before, rel=1e-13)
    assert accuracy(probs, labels) == before["equal_width"]["accuracy"]
