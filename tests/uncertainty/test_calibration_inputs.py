"""What the calibrators accept: real logits in every dtype pass, probabilities in any form are
refused (tests/test_bad_inputs.py holds the refusals); the model fingerprint; the size limits."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from dunno.validation import (
    MAX_BIN_CELLS,
    MAX_BINS,
    MAX_INFERRED_CLASSES,
    MAX_NUM_SAMPLES,
    check_inferred_classes,
    check_n_bins,
    check_num_samples,
)
from uncertainty.calibration import CalibratedClassifier, TemperatureScaling, model_fingerprint
from uncertainty.calibration._checks import probability_tolerance


@pytest.mark.parametrize("dtype,c,expected", [
    (torch.float64, 10, 1e-4), (torch.float32, 10, 1e-4),
    (torch.float16, 10, 2 * 2.0**-10 * 10), (torch.bfloat16, 3, 2 * 2.0**-7 * 3),
    (torch.int64, 5, 1e-4)])
def test_probability_tolerance_depends_on_dtype_and_classes(dtype, c, expected):
    assert math.isclose(probability_tolerance(dtype, c), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["logits", "nonnegative", "unit-interval", "rounded-logits"])
def test_real_logits_are_accepted_in_every_dtype(dtype, kind):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (200,), generator=g)
    z = torch.randn(200, 3, generator=g) * 3
    if kind == "nonnegative":
        z = z - z.min()
    elif kind == "unit-interval":  # entries in [0, 1], rows far from summing to 1
        z = torch.rand(200, 3, generator=g)
    elif kind == "rounded-logits":  # on a 0.01 grid, but not in [0, 1]
        z = (z * 100).round() / 100
    ts = TemperatureScaling().fit(z.to(dtype), y)
    assert math.isfinite(ts.temperature_)


def test_probabilities_pass_with_check_input_false():
    p = torch.softmax(torch.randn(50, 3), 1).half()
    y = torch.randint(0, 3, (50,))
    with pytest.raises(ValueError, match="float16"):
        TemperatureScaling().fit(p, y)
    assert TemperatureScaling().fit(p, y, check_input=False).predict_proba(
        p, check_input=False).shape == (50, 3)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_fingerprint_is_the_same_for_copies_and_changes_with_weights_or_architecture():
    net = _net()
    fp = model_fingerprint(net)
    assert fp.startswith("Sequential:arch=") and ":weights=" in fp
    assert model_fingerprint(copy.deepcopy(net)) == fp == model_fingerprint(_net())
    assert model_fingerprint(_net(seed=1)).split(":weights=")[0] == fp.split(":weights=")[0]
    assert model_fingerprint(_net(seed=1)) != fp
    wider = nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 3))
    assert model_fingerprint(wider).split(":weights=")[0] != fp.split(":weights=")[0]
    with torch.no_grad():
        net[0].bias.add_(1.0)  # an in-place update is seen despite the cache
    assert model_fingerprint(net) != fp


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_fingerprint_of_a_torchscript_model_matches_across_save_and_load(tmp_path):
    net = torch.jit.script(_net().eval())
    torch.jit.save(net, tmp_path / "net.pt")
    loaded = torch.jit.load(tmp_path / "net.pt")
    assert model_fingerprint(loaded) == model_fingerprint(net)


def test_calibrator_round_trip_keeps_the_fingerprint_and_its_predictions(tmp_path):
    net = _net().eval()
    x, y = torch.randn(80, 4), torch.randint(0, 3, (80,))
    clf = CalibratedClassifier(net).fit([(x, y)])
    clf.save(tmp_path / "cal.pt")
    again = CalibratedClassifier.load(tmp_path / "cal.pt", _net().eval())
    assert again.calibrator_.model_fingerprint_ == clf.calibrator_.model_fingerprint_
    assert torch.equal(again.predict_proba(x), clf.predict_proba(x))
    # a calibrator fitted on bare logits records no model and applies to any
    bare = TemperatureScaling().fit(torch.randn(80, 3), y)
    assert getattr(bare, "model_fingerprint_", None) is None


def test_size_limits_accept_up_to_and_refuse_beyond():
    assert check_n_bins(MAX_BINS, "f") == MAX_BINS
    with pytest.raises(ValueError, match=r"'n_bins' parameter of f must be an int in \[1, "):
        check_n_bins(MAX_BINS + 1, "f")
    assert check_n_bins(100, "f", num_classes=MAX_BIN_CELLS // 100) == 100
    with pytest.raises(ValueError, match="cells"):
        check_n_bins(100, "f", num_classes=MAX_BIN_CELLS // 100 + 1)
    assert check_inferred_classes(MAX_INFERRED_CLASSES - 1, 3) == MAX_INFERRED_CLASSES
    assert check_inferred_classes(2 * MAX_INFERRED_CLASSES, 3 * MAX_INFERRED_CLASSES) == (
        2 * MAX_INFERRED_CLASSES + 1)
    with pytest.raises(ValueError, match="index 100000, which would make 100001 classes for 3"):
        check_inferred_classes(MAX_INFERRED_CLASSES, 3)
    assert check_num_samples(MAX_NUM_SAMPLES, "g") == MAX_NUM_SAMPLES
    with pytest.raises(ValueError, match="'num_samples'"):
        check_num_samples(MAX_NUM_SAMPLES + 1, "g")


def test_the_probability_test_gives_the_same_answer_on_tensors_and_arrays():
    """CUDA inputs take the torch branch of the test, CPU inputs the numpy one."""
    from uncertainty.calibration._checks import _probability_kind

    g = torch.Generator().manual_seed(4)
    z = torch.randn(100, 4, generator=g, dtype=torch.float64)
    p = torch.softmax(z, 1)
    inputs = {"logits": z, "probs": p, "rounded": (p * 100).round() / 100,
              "percent": p * 100, "half": p.half().double()}
    for name, x in inputs.items():
        for dtype in (torch.float64, torch.float16):
            on_tensor = _probability_kind(x, dtype)
            assert on_tensor == _probability_kind(x.numpy(), dtype), name
            assert (on_tensor is None) == (name == "logits"), name


def test_a_model_that_cannot_take_the_inputs_is_refused_by_name():
    """Arrays of the wrong width from Python: a ValueError naming both shapes, not torch's
    matrix-product error."""
    import numpy as np
    from torch import nn

    from uncertainty.calibration import CalibratedClassifier

    model = nn.Sequential(nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"takes 8 input features.*shape \(5,\)"):
        CalibratedClassifier(model).fit(np.zeros((30, 5), np.float32), np.arange(30) % 3)
