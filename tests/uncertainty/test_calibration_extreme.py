"""Calibrators on extreme logits (|logit| up to 1e4, float32 and float64, one class with all
the mass): correct results against a reference, or a clear error; never NaN state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uncertainty.calibration import (
    BetaCalibration,
    HistogramBinning,
    IsotonicCalibration,
    MatrixScaling,
    PlattScaling,
    TemperatureScaling,
    VectorScaling,
    make_calibrator,
)

METHODS = ["temperature", "vector", "matrix", "histogram", "isotonic", "platt", "beta"]
DTYPES = [torch.float32, torch.float64]


def _finite_state(cal) -> bool:
    for value in cal.state_dict().values():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool | int | str):
                continue
            if not bool(torch.isfinite(torch.as_tensor(v)).all()):
                return False
    return True


def _data(kind: str, c: int, n: int = 200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    noise = torch.randn(n, c, generator=g, dtype=torch.float64)
    if kind == "separable":  # the true class holds all the mass
        z = noise * 100
        z[torch.arange(n), y] = 1e4
    elif kind == "one-class":  # class 0 holds all the mass, whatever the label
        z = noise * 100
        z[:, 0] = 1e4
    elif kind == "huge-noise":  # |logit| ~ 1e4, labels independent of them
        z = noise * 1e4
    else:
        raise AssertionError(kind)
    return z, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["separable", "one-class", "huge-noise"])
@pytest.mark.parametrize("method", METHODS)
def test_extreme_logits_give_finite_state_and_probabilities(method, kind, dtype):
    c = 2 if method in ("platt", "beta") else 4
    z, y = _data(kind, c)
    z = z.to(dtype)
    params = {"max_iter": 60} if method in ("vector", "matrix") else {}  # keep the test fast
    cal = make_calibrator(method, **params).fit(z, y)
    assert _finite_state(cal)
    p = cal.predict_proba(z)
    assert p.dtype == dtype
    assert bool(torch.isfinite(p).all())
    assert torch.allclose(p.double().sum(1), torch.ones(len(z), dtype=torch.float64),
                          atol=1e-3 if dtype == torch.float32 else 1e-9)
    if kind == "separable":  # every method keeps a perfect ranking perfect
        assert bool((p.argmax(1) == y).all())


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-2)])
def test_temperature_is_shift_invariant_and_scale_equivariant_on_extreme_logits(dtype, rtol):
    g = torch.Generator().manual_seed(1)
    n, c = 500, 5
    y = torch.randint(0, c, (n,), generator=g)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    z[torch.arange(n), y] += 2.0
    t_ref = TemperatureScaling().fit(z, y).temperature_
    assert 0.1 < t_ref < 10
    shift = torch.randn(n, 1, generator=g, dtype=torch.float64).sign() * 1e4  # per row
    t_shift = TemperatureScaling().fit((z + shift).to(dtype), y).temperature_
    assert math.isclose(t_shift, t_ref, rel_tol=rtol)
    t_scaled = TemperatureScaling().fit((z * 1e3).to(dtype), y).temperature_  # |z| ~ 1e4
    assert math.isclose(t_scaled, 1e3 * t_ref, rel_tol=max(rtol, 1e-6))


def test_temperature_on_uninformative_extreme_logits_stops_at_its_bound():
    z, y = _data("one-class", 3)
    ts = TemperatureScaling().fit(z, y)
    assert ts.at_bound_ and ts.temperature_ == ts.bounds[1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_platt_on_separable_extreme_logits_is_finite_and_ranks_correctly(dtype):
    g = torch.Generator().manual_seed(2)
    n = 300
    y = torch.randint(0, 2, (n,), generator=g)
    s = (2.0 * y - 1) * (5e3 + 5e3 * torch.rand(n, generator=g, dtype=torch.float64))
    z = torch.stack([torch.zeros(n, dtype=torch.float64), s], 1).to(dtype)  # |s| up to 1e4
    platt = PlattScaling().fit(z, y)
    assert math.isfinite(platt.slope_) and math.isfinite(platt.intercept_)
    assert platt.slope_ > 0
    p1 = platt.predict_proba(z)[:, 1].double()
    order = torch.argsort(s.double())
    assert bool((p1[order].diff() >= 0).all())  # monotone in the log-odds
    assert bool(((p1 > 0.5) == (y == 1)).all())
    # Platt's smoothed targets keep the fit finite: probabilities stay off 0 and 1
    assert 0 < float(p1.min()) and float(p1.max()) < 1


@pytest.mark.parametrize("cls", [VectorScaling, MatrixScaling])
def test_vector_and_matrix_scaling_are_scale_equivariant_up_to_extreme_logits(cls):
    """On logits scaled by 1e3 the fitted maps scale down by 1e3: the calibrated
    probabilities equal those fitted on the unscaled logits."""
    g = torch.Generator().manual_seed(3)
    n, c = 200, 3
    y = torch.randint(0, c, (n,), generator=g)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    z[torch.arange(n), y] += 3
    p_ref = cls(max_iter=150).fit(z, y).predict_proba(z)
    p_big = cls(max_iter=150).fit(z * 1e3, y).predict_proba(z * 1e3)
    assert torch.allclose(p_big, p_ref, atol=2e-3)


def test_beta_on_separable_extreme_logits_is_monotone():
    z, y = _data("separable", 2)
    beta = BetaCalibration().fit(z, y)
    assert beta.a_ >= 0 and beta.b_ >= 0
    s = z[:, 1] - z[:, 0]
    p1 = beta.predict_proba(z)[:, 1]
    order = torch.argsort(s)
    assert bool((p1[order].diff() >= -1e-12).all())


@pytest.mark.parametrize("cls", [HistogramBinning, IsotonicCalibration])
def test_binning_on_one_class_extreme_logits_predicts_the_label_frequencies(cls):
    z, y = _data("one-class", 3, n=3000)
    p = cls().fit(z, y).predict_proba(z)
    freq = torch.bincount(y, minlength=3).double() / len(y)
    assert torch.allclose(p.mean(0), freq, atol=1e-3)


def test_a_fit_ending_in_non_finite_state_is_refused():
    class Broken(TemperatureScaling):
        name = "broken-temperature"

        def _fit(self, logits, labels):
            super()._fit(logits, labels)
            self.temperature_ = float("nan")

    z, y = _data("huge-noise", 3)
    cal = Broken()
    with pytest.raises(ValueError, match=r"Broken ended in a non-finite state "
                                         r"\(temperature_=nan\).*not fitted"):
        cal.fit(z, y)
    assert "temperature_" not in cal.__dict__


def test_float16_extreme_logits_are_calibrated_in_float64():
    z, y = _data("separable", 3)
    z16 = z.clamp(-6e4, 6e4).to(torch.float16)
    p = TemperatureScaling().fit(z16, y).predict_proba(z16)
    assert p.dtype == torch.float16 and bool(torch.isfinite(p).all())
    assert np.array_equal(p.argmax(1).numpy(), y.numpy())


@pytest.mark.parametrize("cls", [PlattScaling, BetaCalibration])
@pytest.mark.parametrize("magnitude", [1e4, 1e30, 1e300])
def test_binary_maps_stay_finite_and_monotone_up_to_float64s_range(cls, magnitude):
    """The logistic fits scale their inputs: |log-odds| of 1e300 stay finite (they used to end
    in NaN state), and a perfect ranking stays perfect."""
    s = torch.linspace(-1.0, 1.0, 41, dtype=torch.float64) * magnitude
    z = torch.stack([torch.zeros_like(s), s], 1)  # (41, 2)
    y = (s > 0).long()
    cal = cls().fit(z, y)
    assert _finite_state(cal)
    p1 = cal.predict_proba(z)[:, 1]
    assert bool(torch.isfinite(p1).all()) and bool((p1.diff() >= -1e-12).all())
    assert bool(((p1 > 0.5) == (y == 1))[s != 0].all())


def test_beta_on_one_wrong_example_is_finite():
    z = torch.tensor([[1e4, -1e4], [1e4, -1e4]], dtype=torch.float64)
    cal = BetaCalibration().fit(z, torch.tensor([1, 0]))  # one of the two confidently wrong
    assert _finite_state(cal) and bool(torch.isfinite(cal.predict_proba(z)).all())
