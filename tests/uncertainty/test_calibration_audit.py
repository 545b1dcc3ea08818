"""Calibration on a user's own path: solver flags that must not claim convergence, and
inputs a model cannot take refused with a message naming the dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from uncertainty.calibration import CalibratedClassifier, TemperatureScaling, temperature_nll


def _logits(n: int = 500, c: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, c, (n,), generator=g)
    keep = torch.rand(n, generator=g) < 0.7
    return z, torch.where(keep, z.argmax(1), y)


def _scipy_temperature(z, y) -> float:
    res = minimize_scalar(lambda log_t: temperature_nll(z, y, float(np.exp(log_t))),
                          bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(res.x))


@pytest.mark.parametrize("max_iter", [1, 2, 3])
def test_lbfgs_out_of_budget_is_not_reported_as_converged(max_iter):
    """L-BFGS stops when it runs out of function evaluations (1.25 x max_iter) before
    max_iter iterations; that stop is not convergence (it was reported as converged)."""
    z, y = _logits()
    t_star = _scipy_temperature(z, y)
    ts = TemperatureScaling(solver="lbfgs", max_iter=max_iter).fit(z, y)
    assert abs(ts.temperature_ - t_star) > 1e-3  # the budget really stopped it short
    assert ts.converged_ is False


def test_lbfgs_with_its_default_budget_converges_to_scipys_optimum():
    z, y = _logits()
    t_star = _scipy_temperature(z, y)
    ts = TemperatureScaling(solver="lbfgs").fit(z, y)
    assert ts.converged_ is True and not ts.at_bound_
    assert ts.temperature_ == pytest.approx(t_star, rel=1e-4)
    newton = TemperatureScaling().fit(z, y)
    assert newton.converged_ and newton.temperature_ == pytest.approx(t_star, rel=1e-6)


def _image_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_integer_images_are_refused_naming_the_dtypes(dtype):
    """uint8 images used to end in torch's 'Input type (unsigned char) and bias type (float)
    should be the same' RuntimeError."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 1, 8, 8)).astype(dtype)
    y = rng.integers(0, 4, size=40)
    clf = CalibratedClassifier(_image_model())
    with pytest.raises(ValueError, match=rf"dtype torch\.{np.dtype(dtype).name} but the "
                                         r"model's weights are torch\.float32.*/ 255"):
        clf.fit(x, y)


def test_integer_images_scaled_to_floats_calibrate_like_the_float_images():
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 256, size=(200, 1, 8, 8)).astype(np.uint8)
    y = rng.integers(0, 4, size=200)
    model = _image_model()
    x = x8.astype(np.float32) / 255
    clf = CalibratedClassifier(model).fit(x, y)
    with torch.no_grad():
        z = model(torch.from_numpy(x)).double()
    ref = TemperatureScaling().fit(z, torch.from_numpy(y))
    assert clf.calibrator_.temperature_ == pytest.approx(ref.temperature_, rel=1e-5)


def test_histogram_eps_above_one_over_c_is_refused():
    from uncertainty.calibration import HistogramBinning

    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(200, 10, generator=g), torch.randint(0, 10, (200,), generator=g)
    HistogramBinning(eps=0.1).fit(z, y)  # 1/C exactly is allowed
    with pytest.raises(ValueError, match=r"'eps'.*\(0, 0\.1\] for C = 10.*0\.3"):
        HistogramBinning(eps=0.3).fit(z, y)
    HistogramBinning(eps=0.3).fit(z[:, :3], y % 3)  # 0.3 <= 1/3 for three classes


def test_calibration_result_best_takes_each_metric_direction():
    from uncertainty.calibration.compare import CalibrationResult

    def metrics(acc, ece):
        return {"accuracy": acc, "ece": ece, "adaptive_ece": ece, "mce": ece, "nll": ece,
                "brier": ece}

    result = CalibrationResult("d", 3, "val", 10, 10, 0, metrics(0.80, 0.10),
                               {"a": metrics(0.70, 0.02), "b": metrics(0.85, 0.05)}, {}, {},
                               {}, {}, torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    assert result.best("accuracy") == "b"  # higher is better
    assert result.best("ece") == "a" and result.best("nll") == "a"  # lower is better
    with pytest.raises(ValueError, match=r"'metric'.*'accuracy'.*Got 'auroc'"):
        result.best("auroc")


@pytest.mark.parametrize(("method", "attr", "value", "expected"), [
    ("temperature", "temperature_", torch.tensor([1.0, 2.0, 3.0]), "a finite float"),
    ("temperature", "converged_", 1, "a bool"),
    ("vector", "scale_", torch.ones(4), r"a floating tensor of shape \(3,\)"),
    ("matrix", "weight_", torch.ones(3), r"a floating tensor of shape \(3, 3\)"),
    ("histogram", "bin_values_", torch.ones(3, 7), r"a floating tensor of shape \(3, 15\)"),
    ("isotonic", "x_thresholds_", [torch.ones(2)], "a list of 3 1-D floating tensors"),
])
def test_a_calibrator_file_with_a_state_of_another_shape_is_refused(tmp_path, method, attr,
                                                                     value, expected):
    from dunno.checkpoints import atomic_save, safe_load
    from dunno.errors import CheckpointError
    from uncertainty.calibration import load_calibrator, make_calibrator, save_calibrator

    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(300, 3, generator=g), torch.randint(0, 3, (300,), generator=g)
    path = save_calibrator(make_calibrator(method).fit(z, y), tmp_path / "cal.pt")
    torch.testing.assert_close(load_calibrator(path).transform(z),
                               make_calibrator(method).fit(z, y).transform(z))
    payload = safe_load(path)
    payload["state"][attr] = value
    atomic_save(payload, path)
    with pytest.raises(CheckpointError, match=rf"cal\.pt.*{attr} = .*for 3 classes it must "
                       rf"be {expected}"):
        load_calibrator(path)


def test_a_calibrator_file_with_damaged_fields_names_the_file(tmp_path):
    from dunno.checkpoints import atomic_save, safe_load
    from dunno.errors import CheckpointError
    from uncertainty.calibration import load_calibrator, make_calibrator, save_calibrator

    z, y = torch.randn(60, 3), torch.arange(60) % 3
    path = save_calibrator(make_calibrator("temperature").fit(z, y), tmp_path / "cal.pt")
    good = safe_load(path)
    for change, message in [({"params": "{not json"}, r"cal\.pt"),
                            ({"params": '{"nbins": 3}'}, r"cal\.pt.*nbins"),
                            ({"version": True}, r"version True"),
                            ({"state": None}, r"cal\.pt.*state must be a dict")]:
        atomic_save({**good, **change}, path)
        with pytest.raises(CheckpointError, match=message):
            load_calibrator(path)
    broken = dict(good)
    del broken["method"]
    atomic_save(broken, path)
    with pytest.raises(CheckpointError, match=r"cal\.pt' is damaged: it has no 'method'"):
        load_calibrator(path)


@pytest.mark.parametrize("method", ["temperature", "vector", "matrix", "histogram", "isotonic"])
def test_a_calibration_set_of_one_class_is_refused(method):
    from uncertainty.calibration import make_calibrator

    z = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"every one of the 40 calibration labels is class 2"):
        make_calibrator(method).fit(z, torch.full((40,), 2))
    make_calibrator(method).fit(z, torch.tensor([2] * 39 + [0]))  # two classes: fitted
