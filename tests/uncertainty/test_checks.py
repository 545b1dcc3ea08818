"""The validation helpers that calibration and predictive methods share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uncertainty._checks import as_labels, as_tensor, check_choice, check_float, check_int


def test_as_labels_accepts_lists_arrays_and_whole_floats():
    for labels in ([2, 0, 1], np.array([2, 0, 1]), torch.tensor([2.0, 0.0, 1.0])):
        y = as_labels(labels, 3, 3)
        assert y.dtype == torch.int64 and y.tolist() == [2, 0, 1]
    assert as_labels([], 0).shape == (0,)


@pytest.mark.parametrize("labels, n, classes, rows_of, match", [
    ([0, 1], 3, 2, "logits", "Got 3 rows in logits and 2 in labels"),
    ([0, 3], 2, 3, "x", r"class indices in \[0, 2\] for 3 classes. Got values in \[0, 3\]"),
    ([0, -1], 2, None, "x", r"class indices in \[0, \.\.\.\)\. Got values in \[-1, 0\]"),
    ([0.5, 1.0], 2, 2, "x", "integer class indices. Got non-integer values"),
    ([True, False], 2, 2, "x", "integer class indices. Got dtype torch.bool"),
    ([[0, 1]], 1, 2, "x", r"1-D of shape \(N,\)"),
])
def test_as_labels_names_what_is_wrong(labels, n, classes, rows_of, match):
    with pytest.raises(ValueError, match=match):
        as_labels(labels, n, classes, rows_of=rows_of)


def test_as_tensor_reads_lists_through_numpy_and_rejects_other_types():
    assert as_tensor([1, 2], "x").dtype == torch.int64
    assert as_tensor([1, 2], "x", list_dtype=np.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="'x' argument must be a torch.Tensor or numpy array. "
                                         "Got dict"):
        as_tensor({}, "x")
    with pytest.raises(ValueError, match="'x' argument could not be read"):
        as_tensor([[1, 2], [3]], "x")


def test_parameter_checks_quote_the_owner_by_class_or_name():
    with pytest.raises(ValueError, match="The 'k' parameter of Thing must be an int >= 1. Got 0"):
        check_int("Thing", "k", 0, 1)
    with pytest.raises(ValueError, match=r"'p' parameter of object must be a float in \(0, 1\)"):
        check_float(object(), "p", 1.0, low=0.0, high=1.0, low_open=True, high_open=True)
    assert check_float("T", "p", 0.5, low=0.0, high=1.0, low_open=True, high_open=True) == 0.5
    with pytest.raises(ValueError, match="must be one of 0, 1. Got True"):
        check_choice("T", "c", True, (0, 1))
    assert check_choice("T", "c", 1, (0, 1)) == 1
