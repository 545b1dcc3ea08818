"""Streaming accumulators give the one-shot answers on random batches, merge and round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.metrics import (
    CalibrationAccumulator,
    OODAccumulator,
    calibration_metrics,
    ood_metrics,
    reliability_table,
)


def _data(seed, n=3000, c=5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, rng.integers(0, c, n)


def _batches(n, rng):
    cuts = np.sort(rng.choice(np.arange(1, n), size=12, replace=False))
    bounds = np.r_[0, cuts, n]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _assert_same(streamed, one_shot):
    assert streamed.keys() == one_shot.keys()
    for key, value in one_shot.items():
        if isinstance(value, int):
            assert streamed[key] == value, key
        else:
            assert streamed[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibration_accumulator_equals_one_shot(seed):
    probs, labels = _data(seed)
    rng = np.random.default_rng(100 + seed)
    acc = CalibrationAccumulator(num_classes=5)
    for rows in _batches(len(labels), rng):
        # mix numpy arrays and torch tensors
        if rows.start % 2:
            acc.update(torch.from_numpy(probs[rows]), torch.from_numpy(labels[rows]))
        else:
            acc.update(probs[rows], labels[rows])
    _assert_same(acc.compute(), calibration_metrics(probs, labels))
    table, ref = acc.reliability_table(), reliability_table(probs, labels)
    np.testing.assert_array_equal(table.counts, ref.counts)
    np.testing.assert_array_equal(table.correct_counts, ref.correct_counts)
    np.testing.assert_allclose(table.confidence_sums, ref.confidence_sums, rtol=1e-13)


def test_calibration_accumulator_merge_and_state_dict():
    probs, labels = _data(3, c=3)
    a = CalibrationAccumulator(3, n_bins=10).update(probs[:1000], labels[:1000])
    b = CalibrationAccumulator(3, n_bins=10).update(probs[1000:], labels[1000:])
    merged = a.merge(b).compute()
    _assert_same(merged, calibration_metrics(probs, labels, n_bins=10))
    restored = CalibrationAccumulator(3, n_bins=10).load_state_dict(a.state_dict())
    assert restored.compute() == merged
    assert CalibrationAccumulator(3).n == 0
    assert repr(a) == "CalibrationAccumulator(num_classes=3, n_bins=10, n=3000)"
    assert a.reset().n == 0


def test_calibration_accumulator_errors():
    acc = CalibrationAccumulator(3)
    with pytest.raises(ValueError, match=r"compute\(\) needs data"):
        acc.compute()
    with pytest.raises(ValueError, match="must have 3 columns"):
        acc.update(np.full((2, 2), 0.5), [0, 1])
    with pytest.raises(ValueError, match="same num_classes and n_bins"):
        acc.merge(CalibrationAccumulator(3, n_bins=5))
    with pytest.raises(ValueError, match="'num_classes' parameter of CalibrationAccumulator"):
        CalibrationAccumulator(1)
    with pytest.raises(TypeError, match="Can only merge"):
        acc.merge(OODAccumulator())


def test_ood_accumulator_equals_one_shot_exactly():
    rng = np.random.default_rng(4)
    s_in = np.round(rng.normal(size=4000), 1)
    s_out = np.round(rng.normal(0.8, size=2500), 1)
    acc = OODAccumulator()
    for rows in _batches(4000, rng):
        acc.update(scores_in=s_in[rows])
    for rows in _batches(2500, rng):
        acc.update(scores_out=torch.from_numpy(s_out[rows]))
    assert acc.compute() == ood_metrics(s_in, s_out)
    other = OODAccumulator().update(scores_in=[0.0], scores_out=[5.0, 6.0])
    merged = OODAccumulator().load_state_dict(acc.state_dict()).merge(other)
    assert merged.n_in == 4001 and merged.n_out == 2502
    assert merged.compute() == ood_metrics(np.r_[s_in, 0.0], np.r_[s_out, 5.0, 6.0])
    assert repr(other) == "OODAccumulator(n_in=1, n_out=2)"


def test_ood_accumulator_errors():
    acc = OODAccumulator().update(scores_in=[1.0, 2.0])
    with pytest.raises(ValueError, match="needs both in-distribution and OOD scores"):
        acc.compute()
    with pytest.raises(ValueError, match="needs 'scores_in', 'scores_out' or both"):
        acc.update()
    with pytest.raises(ValueError, match="'scores_out' argument must be finite"):
        acc.update(scores_out=[np.nan])
