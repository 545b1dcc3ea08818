"""The one validation module: parameter checks and array-input checks."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from dunno.validation import (
    as_labels,
    as_tensor,
    check_betas,
    check_bool,
    check_choice,
    check_correct,
    check_float,
    check_hidden,
    check_image_shape,
    check_int,
    check_int_sequence,
    check_labels,
    check_probability_level,
    check_probs,
    check_real,
    check_same_length,
    check_scores,
    check_seed,
    check_shape,
    owner_name,
    to_numpy,
)


class Thing:
    """An owner object: messages quote its class name."""


def _refuses(func, value, *args, expected: str, name: str = "p", owner: str = "Thing", **kw):
    """``func`` raises a ValueError that names the parameter, the owner, what was expected
    and the value it got, in the one message template."""
    message = (f"The '{name}' parameter of {owner} must be {expected}. "
               f"Got {value!r} instead.")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        func(value, *args, **kw)


# ----------------------------------------------------------------------------- owner
def test_owner_is_a_string_a_class_or_an_object_of_that_class():
    assert owner_name("expected_calibration_error") == "expected_calibration_error"
    assert owner_name(Thing) == "Thing"
    assert owner_name(Thing()) == "Thing"
    with pytest.raises(ValueError, match="The 'k' parameter of Thing must be an int >= 1. Got 0"):
        check_int(0, "k", Thing(), low=1)
    with pytest.raises(ValueError, match="The 'k' parameter of VAE.log_prob must be"):
        check_int(0, "k", "VAE.log_prob", low=1)


# ----------------------------------------------------------------------------- check_int
@pytest.mark.parametrize("value", [3, np.int64(3), np.int8(3), np.uint16(3)])
def test_check_int_accepts_python_and_numpy_ints_and_returns_an_int(value):
    got = check_int(value, "p", "Thing", low=1, high=5)
    assert got == 3 and type(got) is int


def test_check_int_bounds_are_inclusive_and_optional():
    assert check_int(1, "p", "Thing", low=1) == 1
    assert check_int(5, "p", "Thing", high=5) == 5
    assert check_int(-10**30, "p", "Thing") == -10**30
    _refuses(check_int, 0, "p", "Thing", low=1, expected="an int >= 1")
    _refuses(check_int, 6, "p", "Thing", high=5, expected="an int <= 5")
    _refuses(check_int, 6, "p", "Thing", low=1, high=5, expected="an int in [1, 5]")
    _refuses(check_int, 0, "p", "Thing", low=1, high=5, expected="an int in [1, 5]")


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, 2.5, np.float64(2.0),
                                   "2", None, float("nan"), float("inf"), [2]])
def test_check_int_refuses_bools_floats_and_other_types(value):
    _refuses(check_int, value, "p", "Thing", low=0, expected="an int >= 0")


def test_check_int_allow_none():
    assert check_int(None, "p", "Thing", low=1, allow_none=True) is None
    _refuses(check_int, 0, "p", "Thing", low=1, allow_none=True, expected="None or an int >= 1")
    _refuses(check_int, None, "p", "Thing", low=1, expected="an int >= 1")


def test_check_seed_is_an_int_at_least_zero():
    assert check_seed(0, "Thing") == 0
    assert check_seed(np.int32(7), Thing()) == 7
    _refuses(check_seed, -1, "Thing", name="seed", expected="an int >= 0")
    _refuses(check_seed, True, "Thing", name="seed", expected="an int >= 0")
    with pytest.raises(ValueError, match="The 'data_seed' parameter of Thing"):
        check_seed(-1, "Thing", name="data_seed")


# ----------------------------------------------------------------------------- check_float
@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), np.float64(0.5), np.int64(1)])
def test_check_float_accepts_reals_and_numpy_scalars_and_returns_a_float(value):
    got = check_float(value, "p", "Thing", low=0.0, high=1.0)
    assert got == float(value) and type(got) is float


@pytest.mark.parametrize("value", [True, False, np.bool_(False), "0.5", None, [0.5], 1j,
                                   torch.tensor([0.5])])
def test_check_float_refuses_bools_and_non_numbers(value):
    _refuses(check_float, value, "p", "Thing", low=0.0, high=1.0, expected="a float in [0, 1]")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_check_float_refuses_nan_and_inf_even_without_bounds(value):
    _refuses(check_float, value, "p", "Thing", expected="a finite float")
    _refuses(check_float, value, "p", "Thing", low=0.0, expected="a float in [0, inf)")


def test_check_float_open_and_closed_ends():
    assert check_float(0.0, "p", "Thing", low=0.0) == 0.0
    assert check_float(1.0, "p", "Thing", high=1.0) == 1.0
    assert check_float(1e-300, "p", "Thing", low=0.0, low_open=True) == 1e-300
    _refuses(check_float, 0.0, "p", "Thing", low=0.0, low_open=True, expected="a float in (0, inf)")
    _refuses(check_float, 1.0, "p", "Thing", low=0.0, high=1.0, high_open=True,
             expected="a float in [0, 1)")
    _refuses(check_float, -0.5, "p", "Thing", low=0.0, high=0.5, low_open=True,
             expected="a float in (0, 0.5]")
    _refuses(check_float, 2.0, "p", "Thing", high=1.0, expected="a float in (-inf, 1]")
    _refuses(check_float, 1e-7, "p", "Thing", low=1e-6, expected="a float in [1e-06, inf)")


def test_check_float_allow_none():
    assert check_float(None, "p", "Thing", low=0.0, allow_none=True) is None
    _refuses(check_float, -1.0, "p", "Thing", low=0.0, low_open=True, allow_none=True,
             expected="None or a float in (0, inf)")


def test_check_probability_level_is_open_unless_closed():
    assert check_probability_level(0.95, "tpr", "fpr_at_tpr") == 0.95
    assert check_probability_level(np.float32(0.5), "tpr", "fpr_at_tpr") == 0.5
    for value in (0.0, 1.0, 1.5, float("nan"), True):
        _refuses(check_probability_level, value, "tpr", "fpr_at_tpr", name="tpr",
                 owner="fpr_at_tpr", expected="a float in (0, 1)")
    assert check_probability_level(0.0, "q", "Thing", closed=True) == 0.0
    assert check_probability_level(1.0, "q", "Thing", closed=True) == 1.0
    _refuses(check_probability_level, 1.5, "q", "Thing", closed=True, name="q",
             expected="a float in [0, 1]")


# ----------------------------------------------------------------------------- bool / choice
@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_check_bool_accepts_bools(value):
    got = check_bool(value, "p", "Thing")
    assert got == bool(value) and type(got) is bool


@pytest.mark.parametrize("value", [0, 1, 1.0, "true", None, np.int64(1)])
def test_check_bool_refuses_everything_else(value):
    _refuses(check_bool, value, "p", "Thing", expected="a bool")


def test_check_choice_matches_equal_values_but_never_a_bool_for_a_number():
    assert check_choice("l2", "norm", "Thing", ("l1", "l2")) == "l2"
    assert check_choice(np.str_("l1"), "norm", "Thing", ("l1", "l2")) == "l1"
    assert check_choice(1, "c", "Thing", (0, 1)) == 1
    assert check_choice(np.int64(1), "c", "Thing", (0, 1)) == 1
    assert check_choice(True, "v", "Thing", ("auto", True, False)) is True
    assert check_choice("auto", "v", "Thing", ("auto", True, False)) == "auto"
    _refuses(check_choice, True, "c", "Thing", (0, 1), name="c", expected="one of 0, 1")
    _refuses(check_choice, 1, "v", "Thing", ("auto", True, False), name="v",
             expected="one of 'auto', True, False")
    _refuses(check_choice, "L2", "norm", "Thing", ("l1", "l2"), name="norm",
             expected="one of 'l1', 'l2'")
    _refuses(check_choice, ["l1"], "norm", "Thing", ("l1", "l2"), name="norm",
             expected="one of 'l1', 'l2'")
    _refuses(check_choice, None, "norm", "Thing", ("l1",), name="norm", expected="one of 'l1'")


def test_check_choice_survives_values_that_do_not_compare():
    _refuses(check_choice, np.array([1, 2]), "c", "Thing", (1, 2), name="c",
             expected="one of 1, 2")


# ----------------------------------------------------------------------------- int tuples
def test_check_int_sequence():
    assert check_int_sequence([1, 2], "w", "Thing") == (1, 2)
    assert check_int_sequence((np.int64(3),), "w", "Thing") == (3,)
    assert check_int_sequence(np.array([4, 5]), "w", "Thing") == (4, 5)
    assert check_int_sequence(torch.Size([1, 28]), "w", "Thing") == (1, 28)
    assert check_int_sequence([0, 2], "w", "Thing", low=0) == (0, 2)
    assert check_int_sequence([], "w", "Thing", allow_empty=True) == ()
    assert check_int_sequence(7, "w", "Thing", allow_int=True) == (7,)
    assert check_int_sequence([1, 2], "w", "Thing", length=2) == (1, 2)
    expected = "a non-empty sequence of ints >= 1"
    for bad in ([], [0], [1, True], [1.0], 3, "12", None, np.zeros((1, 2), dtype=int)):
        _refuses(check_int_sequence, bad, "w", "Thing", name="w", expected=expected)
    _refuses(check_int_sequence, [1, 2, 3], "w", "Thing", length=2, name="w",
             expected="2 ints >= 1")
    _refuses(check_int_sequence, [-1], "w", "Thing", low=0, allow_empty=True, name="w",
             expected="a sequence of ints >= 0")
    _refuses(check_int_sequence, 0, "w", "Thing", allow_int=True, what="units", name="w",
             expected="an int >= 1 or a non-empty sequence of ints >= 1 (units)")


def test_check_hidden_reads_layer_widths():
    assert check_hidden(64, "Thing") == (64,)
    assert check_hidden([64, np.int64(32)], "Thing") == (64, 32)
    assert check_hidden((), "Thing", allow_empty=True) == ()
    _refuses(check_hidden, [], "Thing", name="hidden",
             expected="an int >= 1 or a non-empty sequence of ints >= 1 (layer widths)")
    _refuses(check_hidden, True, "Thing", name="hidden",
             expected="an int >= 1 or a non-empty sequence of ints >= 1 (layer widths)")
    _refuses(check_hidden, [8, 0], "Thing", "disc_hidden", name="disc_hidden",
             expected="an int >= 1 or a non-empty sequence of ints >= 1 (layer widths)")
    _refuses(check_hidden, [0], "Thing", allow_empty=True, name="hidden",
             expected="an int >= 1 or a sequence of ints >= 1 "
                      "(layer widths; empty: no hidden layer)")


def test_check_shape_and_image_shape():
    assert check_shape((2,), "data_shape", "GAN") == (2,)
    assert check_shape([1, 28, 28], "data_shape", "GAN") == (1, 28, 28)
    _refuses(check_shape, (), "data_shape", "GAN", name="data_shape", owner="GAN",
             expected="a non-empty sequence of ints >= 1 (e.g. (2,) or (1, 28, 28))")
    _refuses(check_shape, (2, 0), "data_shape", "GAN", name="data_shape", owner="GAN",
             expected="a non-empty sequence of ints >= 1 (e.g. (2,) or (1, 28, 28))")
    assert check_image_shape([3, 5, 7], "NADE", channels=(1, 3)) == (3, 5, 7)
    assert check_image_shape((2, 28, 28), "DCGAN", multiple=4) == (2, 28, 28)
    _refuses(check_image_shape, (2, 5, 7), "NADE", channels=(1, 3), name="image_shape",
             owner="NADE", expected="(C, H, W) with C in {1, 3} and H, W >= 1")
    _refuses(check_image_shape, (1, 30, 28), "DCGAN", multiple=4, name="image_shape",
             owner="DCGAN", expected="(C, H, W) with C >= 1 and H, W positive multiples of 4")
    for bad in ((1, 28), (1, 0, 28), (1, 28.0, 28), (True, 28, 28), "128"):
        _refuses(check_image_shape, bad, "NADE", name="image_shape", owner="NADE",
                 expected="(C, H, W) with C >= 1 and H, W >= 1")


def test_check_betas():
    assert check_betas((0.5, 0.999), "GAN") == (0.5, 0.999)
    assert check_betas([0, np.float32(0.5)], "GAN") == (0.0, 0.5)
    for bad in ((0.5, 1.0), (0.5,), (-0.1, 0.9), (True, 0.9), ("0.5", 0.9), 0.5,
                (float("nan"), 0.9)):
        _refuses(check_betas, bad, "GAN", name="betas", owner="GAN",
                 expected="two floats in [0, 1) (Adam's beta1, beta2)")


# ----------------------------------------------------------------------------- tensors
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
    t = torch.ones(2, requires_grad=True)
    assert not as_tensor(t, "x").requires_grad
    with pytest.raises(ValueError, match="'x' argument must be a torch.Tensor or numpy array. "
                                         "Got dict"):
        as_tensor({}, "x")
    with pytest.raises(ValueError, match="'x' argument could not be read"):
        as_tensor([[1, 2], [3]], "x")


# ----------------------------------------------------------------------------- numpy inputs
def test_to_numpy_reads_tensors_arrays_and_lists():
    assert to_numpy(torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "x").dtype == np.float32
    assert to_numpy([1, 2], "x").dtype.kind == "i"
    with pytest.raises(TypeError, match="'x' argument must be a numpy array"):
        to_numpy(object(), "x")
    with pytest.raises(ValueError, match="'x' argument must hold real numbers"):
        to_numpy(np.array(["a"]), "x")


def test_check_real_and_check_scores_refuse_nan_inf_empty_and_wrong_ndim():
    assert check_real([1, 2], "s").dtype == np.float64
    assert check_real([-math.inf, 0.0], "s", allow_neg_inf=True)[0] == -math.inf
    with pytest.raises(ValueError, match=r"'s' argument must be finite; found nan at index 1"):
        check_scores([0.0, float("nan")], "s")
    with pytest.raises(ValueError, match="'s' argument must be finite; found inf"):
        check_scores(np.array([np.inf]), "s")
    with pytest.raises(ValueError, match="'s' argument must not be empty"):
        check_scores([], "s")
    with pytest.raises(ValueError, match=r"'s' argument must be a 1-D array of shape \(N,\)"):
        check_scores([[1.0]], "s")


def test_check_probs_rows_must_sum_to_one():
    probs = check_probs(np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32))
    assert probs.dtype == np.float32
    with pytest.raises(ValueError, match=r"rows summing to 1 \(tolerance 0.0001\); row 1 sums "
                                         r"to 0.8"):
        check_probs([[0.5, 0.5], [0.4, 0.4]])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]; found 1.5 at \(0, 0\)"):
        check_probs([[1.5, -0.5]])
    with pytest.raises(ValueError, match="at least 2 columns"):
        check_probs([[1.0]])
    with pytest.raises(ValueError, match="must be finite"):
        check_probs([[float("nan"), 1.0]])


def test_check_labels_correct_and_same_length():
    assert check_labels([0, 2], 2, 3).dtype == np.int64
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\); got 3 at index 1"):
        check_labels([0, 3], 2, 3)
    with pytest.raises(ValueError, match="integer class indices; got dtype float64"):
        check_labels([0.0, 1.0], 2, 3)
    with pytest.raises(ValueError, match=r"'labels' argument must have the same length as "
                                         r"'probs' \(3\); got 2"):
        check_labels([0, 1], 3, 3)
    assert check_correct([1, 0], 2).dtype == bool
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        check_correct([2, 0], 2)
    check_same_length(4, 4, "a", "b")
    with pytest.raises(ValueError, match=r"'a' argument must have the same length as 'b' \(4\)"):
        check_same_length(3, 4, "a", "b")
