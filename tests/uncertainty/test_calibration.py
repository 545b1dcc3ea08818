"""uncertainty.calibration: known answers, limiting cases, the calibrator contract, bad input,
the CalibratedClassifier wrapper, the benchmark runner and the example."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dunno.errors import CheckpointError, NotFittedError
from uncertainty.calibration import (
    CALIBRATORS,
    BetaCalibration,
    CalibratedClassifier,
    HistogramBinning,
    IsotonicCalibration,
    MatrixScaling,
    PlattScaling,
    TemperatureScaling,
    VectorScaling,
    available_calibrators,
    load_calibrator,
    make_calibrator,
    save_calibrator,
    temperature_nll,
)
from uncertainty.calibration.temperature import _derivatives, _newton_terms

MULTICLASS = available_calibrators(num_classes=3)
BINARY = [name for name in CALIBRATORS if CALIBRATORS[name].binary_only]


pytestmark = pytest.mark.one_thread


def tempered(n: int, c: int, t_star: float, seed: int = 0, scale: float = 4.0):
    """Logits ``(n, c)`` and labels sampled from ``softmax(z / t_star)``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    y = torch.multinomial(torch.softmax(z / t_star, dim=1), 1, generator=g).squeeze(1)
    return z, y


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(-probs.double().clamp_min(1e-300).log().gather(1, labels[:, None]).mean())


def data_for(name: str, n: int = 600, seed: int = 0):
    return tempered(n, 2 if name in BINARY else 4, 2.0, seed=seed)


# ------------------------------------------------------------------ temperature scaling
def test_random_labels_drive_the_temperature_up():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4000, 2, generator=g) * 3  # confident logits ...
    y = torch.randint(0, 2, (4000,), generator=g)  # ... whose labels are coin flips
    ts = TemperatureScaling().fit(z, y)
    assert ts.temperature_ > 10
    assert ts.converged_


def test_the_upper_bound_is_reported_when_the_optimum_lies_beyond():
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([1, 0])  # always wrong: the NLL keeps falling as T grows
    ts = TemperatureScaling(bounds=(0.1, 50.0)).fit(z, y)
    assert ts.temperature_ == 50.0 and ts.at_bound_


@pytest.mark.parametrize("t_star", [0.5, 2.5])
def test_recovers_a_known_temperature(t_star):
    z, y = tempered(20_000, 10, t_star, seed=3)
    ts = TemperatureScaling().fit(z, y)
    assert abs(ts.temperature_ / t_star - 1) < 0.05
    assert ts.converged_ and not ts.at_bound_
    assert ts.n_iter_ <= 15


def test_newton_reaches_scipys_optimum_and_the_other_solvers_agree():
    z, y = tempered(3000, 10, 1.7, seed=4)
    ours = TemperatureScaling().fit(z, y).temperature_
    res = minimize_scalar(lambda t: temperature_nll(z, y, math.exp(t)),
                          bounds=(math.log(1e-2), math.log(1e4)), method="bounded",
                          options={"xatol": 1e-10})
    assert abs(ours - math.exp(res.x)) < 1e-5
    assert TemperatureScaling(solver="lbfgs").fit(z, y).temperature_ == pytest.approx(ours,
                                                                                     rel=1e-5)
    assert TemperatureScaling(solver="grid").fit(z, y).temperature_ == pytest.approx(ours,
                                                                                    rel=1e-3)


def test_newton_derivatives_match_autograd():
    z, y = tempered(500, 5, 1.3, seed=5)
    beta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(z * beta, y)
    (grad,) = torch.autograd.grad(loss, beta, create_graph=True)
    (hess,) = torch.autograd.grad(grad, beta)
    terms = _newton_terms(z, y)  # numpy arrays for CPU input
    as_tensors = tuple(torch.from_numpy(t) for t in terms[:2]) + terms[2:]  # the CUDA code path
    for g, h in (_derivatives(terms, 0.7), _derivatives(as_tensors, 0.7)):
        assert g == pytest.approx(float(grad.detach()), rel=1e-10)
        assert h == pytest.approx(float(hess), rel=1e-10)


def test_temperature_scaling_never_changes_the_argmax():
    z, y = tempered(2000, 7, 0.4, seed=6)
    ts = TemperatureScaling().fit(z, y)
    assert torch.equal(ts.predict_proba(z).argmax(1), z.argmax(1))
    torch.testing.assert_close(ts.transform(z), z / ts.temperature_)


@pytest.mark.parametrize("name", ["temperature", "vector", "matrix"])
def test_scaling_never_increases_the_calibration_nll(name):
    z, y = tempered(1000, 5, 2.0, seed=7)
    before = float(F.cross_entropy(z, y))
    after = nll(make_calibrator(name).fit(z, y).predict_proba(z), y)
    assert after <= before + 1e-12
    assert after < before - 0.05  # T* = 2 leaves plenty to gain


# ------------------------------------------------------------------ vector / matrix scaling
@pytest.mark.parametrize("cls", [VectorScaling, MatrixScaling])
def test_zero_steps_from_the_identity_init_is_the_identity(cls):
    z, y = tempered(300, 4, 2.0, seed=8)
    cal = cls(max_iter=0).fit(z, y)
    assert torch.equal(cal.transform(z), z)


def test_odir_shrinks_the_off_diagonal_weights():
    z, y = tempered(150, 6, 2.0, seed=9)  # small: plain matrix scaling overfits
    off = 1 - torch.eye(6, dtype=torch.float64)
    plain = MatrixScaling().fit(z, y)
    odir = MatrixScaling(off_diagonal_reg=100.0, intercept_reg=100.0).fit(z, y)
    assert (odir.weight_ * off).abs().max() < 0.3 * (plain.weight_ * off).abs().max()
    assert odir.bias_.abs().max() < plain.bias_.abs().max()


def test_vector_scaling_recovers_a_common_temperature():
    z, y = tempered(20_000, 5, 2.0, seed=10)
    vs = VectorScaling().fit(z, y)
    torch.testing.assert_close(vs.scale_, torch.full((5,), 0.5, dtype=torch.float64),
                               atol=0.05, rtol=0)


# ------------------------------------------------------------------ binning methods
def test_histogram_binning_on_a_hand_worked_example():
    # class-1 probabilities 0.1, 0.1, 0.9, 0.9 with labels 0, 1, 1, 1; two bins (0, .5], (.5, 1]
    p1 = torch.tensor([0.1, 0.1, 0.9, 0.9], dtype=torch.float64)
    z = torch.stack([torch.zeros(4, dtype=torch.float64), torch.logit(p1)], dim=1)
    y = torch.tensor([0, 1, 1, 1])
    hb = HistogramBinning(n_bins=2).fit(z, y)
    # class 1: bin values 1/2 and 1; class 0 (probs 0.9, 0.9, 0.1, 0.1): 1/2 and 0
    torch.testing.assert_close(hb.bin_values_, torch.tensor([[0.0, 0.5], [0.5, 1.0]],
                                                            dtype=torch.float64))
    probs = hb.predict_proba(z)
    # low-p1 rows: (1/2, 1/2); high-p1 rows: (eps, 1) renormalised
    torch.testing.assert_close(probs[0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert probs[2, 1] == pytest.approx(1 / (1 + 1e-6))


def test_histogram_quantile_bins_hold_equal_mass():
    z, y = tempered(3000, 3, 1.0, seed=11)
    hb = HistogramBinning(n_bins=10, strategy="quantile").fit(z, y)
    counts = hb.bin_counts_
    assert counts.sum(1).eq(3000).all()
    assert (counts - 300).abs().max() <= 1


def test_isotonic_rows_sum_to_one_and_follow_sklearn():
    z, y = tempered(2000, 5, 1.5, seed=12)
    iso = IsotonicCalibration().fit(z, y)
    z_test, _ = tempered(500, 5, 1.5, seed=13)
    probs = iso.predict_proba(z_test)
    torch.testing.assert_close(probs.sum(1), torch.ones(500, dtype=torch.float64))
    scores = torch.log_softmax(z, 1).numpy()
    test_scores = torch.log_softmax(z_test, 1).numpy()
    q = np.stack([
        IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
        .fit(scores[:, k], (y.numpy() == k).astype(float)).predict(test_scores[:, k])
        for k in range(5)
    ], axis=1)
    q = np.clip(q, 1e-6, 1)
    np.testing.assert_allclose(probs.numpy(), q / q.sum(1, keepdims=True), rtol=1e-10)


# ------------------------------------------------------------------ binary methods
def test_platt_recovers_a_known_sigmoid():
    g = torch.Generator().manual_seed(14)
    s = torch.randn(20_000, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(20_000, generator=g, dtype=torch.float64)
         < torch.sigmoid(0.5 * s - 1.0)).long()
    z = torch.stack([torch.zeros_like(s), s], dim=1)
    platt = PlattScaling(smooth_targets=False).fit(z, y)
    assert platt.slope_ == pytest.approx(0.5, abs=0.03)
    assert platt.intercept_ == pytest.approx(-1.0, abs=0.06)


def test_beta_calibration_keeps_a_calibrated_model_near_the_identity():
    g = torch.Generator().manual_seed(15)
    s = torch.randn(20_000, generator=g, dtype=torch.float64) * 2
    y = (torch.rand(20_000, generator=g, dtype=torch.float64) < torch.sigmoid(s)).long()
    z = torch.stack([torch.zeros_like(s), s], dim=1)
    beta = BetaCalibration().fit(z, y)
    assert (beta.a_, beta.b_, beta.c_) == pytest.approx((1.0, 1.0, 0.0), abs=0.07)
    assert beta.a_ >= 0 and beta.b_ >= 0


def test_binary_methods_reject_more_than_two_classes():
    z, y = tempered(50, 3, 1.0)
    for cls in (PlattScaling, BetaCalibration):
        with pytest.raises(ValueError, match="binary classifiers"):
            cls().fit(z, y)


# ------------------------------------------------------------------ the contract, every method
@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_contract(name):
    z, y = data_for(name)
    cal = make_calibrator(name)
    assert cal.fit(z, y) is cal
    assert cal.num_classes_ == z.shape[1]
    z32 = z[:100].float()
    probs = cal.predict_proba(z32)
    assert probs.shape == z32.shape and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(100))
    torch.testing.assert_close(torch.softmax(cal.transform(z), 1), cal.predict_proba(z))
    assert torch.equal(make_calibrator(name).fit(z, y).predict_proba(z), cal.predict_proba(z))
    # numpy in, numpy out (same numbers); pairs / datasets / loaders fit the same map
    probs_np = cal.predict_proba(z.numpy())
    assert isinstance(probs_np, np.ndarray) and probs_np.dtype == np.float64
    np.testing.assert_array_equal(probs_np, cal.predict_proba(z).numpy())
    assert isinstance(cal.transform(z.numpy()), np.ndarray)
    assert isinstance(cal.fit_transform(z.numpy(), y.numpy()), np.ndarray)
    for data in ((z.numpy(), y.numpy()), TensorDataset(z, y), DataLoader(TensorDataset(z, y),
                                                                          batch_size=64)):
        other = make_calibrator(name).fit(data)
        torch.testing.assert_close(other.predict_proba(z), cal.predict_proba(z))


@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_save_load_round_trip_gives_identical_probabilities(name, tmp_path):
    z, y = data_for(name)
    cal = make_calibrator(name).fit(z, y)
    save_calibrator(cal, tmp_path / "cal.pt")
    back = load_calibrator(tmp_path / "cal.pt")
    assert type(back) is type(cal) and back.get_params() == cal.get_params()
    assert torch.equal(back.predict_proba(z), cal.predict_proba(z))


@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_unfitted_use_raises_not_fitted(name):
    z, _ = data_for(name)
    cal = make_calibrator(name)
    for method in (cal.transform, cal.predict_proba):
        with pytest.raises(NotFittedError, match="fit"):
            method(z)


# ------------------------------------------------------------------ bad input
def test_probabilities_instead_of_logits_are_refused():
    z, y = tempered(200, 3, 1.0)
    probs = torch.softmax(z, 1)
    with pytest.raises(ValueError, match="looks like probabilities.*pass .*logits"):
        TemperatureScaling().fit(probs, y)
    ts = TemperatureScaling().fit(probs, y, check_input=False)
    with pytest.raises(ValueError, match="check_input=False"):
        ts.transform(probs)
    assert ts.transform(probs, check_input=False).shape == (200, 3)


@pytest.mark.parametrize(("logits", "labels", "match"), [
    (torch.zeros(3, 2) + torch.tensor([1.0, 2.0]), torch.tensor([0, 2, 1]), r"\[0, 1\].*\[0, 2\]"),
    (torch.ones(3, 2), torch.tensor([0, -1, 1]), r"class indices in \[0, 1\] for 2 classes"),
    (torch.ones(3, 1), torch.tensor([0, 0, 0]), "at least 2 classes"),
    (torch.ones(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
    (torch.tensor([[0.0, 1.0], [float("nan"), 1.0]]), torch.tensor([0, 1]), "NaN or infinite"),
    (torch.tensor([[0.0, 1.0], [float("inf"), 1.0]]), torch.tensor([0, 1]), "NaN or infinite"),
    (torch.ones(3), torch.tensor([0, 1, 0]), r"shape \(N, C\)"),
    (torch.ones(3, 2), torch.tensor([0, 1]), "Got 3 rows in logits and 2 in labels"),
    (torch.ones(3, 2), torch.tensor([0.0, 0.5, 1.0]), "integer class indices"),
])
def test_bad_data_raises_a_clear_value_error(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        TemperatureScaling().fit(logits, labels)


def test_transform_checks_the_number_of_classes():
    z, y = tempered(100, 3, 1.0)
    ts = TemperatureScaling().fit(z, y)
    with pytest.raises(ValueError, match="4 classes.*fitted on 3"):
        ts.transform(torch.zeros(2, 4))


@pytest.mark.parametrize(("cal", "message"), [
    (TemperatureScaling(max_iter=0),
     "The 'max_iter' parameter of TemperatureScaling must be an int >= 1. Got 0 instead."),
    (TemperatureScaling(solver="adam"), "The 'solver' parameter of TemperatureScaling must be"),
    (TemperatureScaling(bounds=(2.0, 1.0)), "The 'bounds' parameter of TemperatureScaling"),
    (MatrixScaling(off_diagonal_reg=-1.0), "The 'off_diagonal_reg' parameter of MatrixScaling"),
    (HistogramBinning(n_bins=True), "The 'n_bins' parameter of HistogramBinning must be an int"),
    (IsotonicCalibration(eps=0), "The 'eps' parameter of IsotonicCalibration"),
    (PlattScaling(smooth_targets="yes"), "The 'smooth_targets' parameter of PlattScaling"),
])
def test_parameter_errors_are_phrased_like_scikit_learn(cal, message):
    z, y = tempered(50, 2, 1.0)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cal.fit(z, y)


def test_registry_errors():
    with pytest.raises(ValueError, match="Unknown calibration method 'nope'"):
        make_calibrator("nope")
    with pytest.raises(ValueError, match="Unknown parameter"):
        make_calibrator("temperature", n_bins=3)
    assert available_calibrators(10) == ["temperature", "vector", "matrix", "histogram",
                                         "isotonic"]
    assert available_calibrators(2)[-2:] == ["platt", "beta"]


def test_loading_something_else_raises_a_checkpoint_error(tmp_path):
    torch.save({"format": "other"}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a dunno calibrator"):
        load_calibrator(tmp_path / "x.pt")


# ------------------------------------------------------------------ CalibratedClassifier
class CountingModel(nn.Module):
    """A fixed linear classifier that counts the examples it has seen."""

    def __init__(self, d: int = 6, c: int = 3):
        super().__init__()
        self.linear = nn.Linear(d, c)
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return 3 * self.linear(x)


def _labelled(model, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    with torch.no_grad():
        probs = torch.softmax(model.linear(x), 1)  # the true T is 3
    y = torch.multinomial(probs, 1, generator=g).squeeze(1)
    return x, y


def test_calibrated_classifier_caches_logits_and_predicts(tmp_path):
    torch.manual_seed(0)
    model = CountingModel()
    x, y = _labelled(model, 3000, seed=1)
    loader = [(x[i:i + 500], y[i:i + 500]) for i in range(0, 3000, 500)]
    clf = CalibratedClassifier(model, "temperature").fit(loader)
    assert model.seen == 3000  # one forward pass over the calibration set
    assert clf.calibrator_.temperature_ == pytest.approx(3.0, rel=0.1)
    clf.refit("isotonic")
    clf.refit("matrix", params={"off_diagonal_reg": 0.1})
    assert model.seen == 3000  # refitting reuses the cached logits
    clf.refit("temperature")

    x_test, _ = _labelled(model, 10, seed=2)
    with torch.no_grad():
        expected = torch.softmax(model(x_test) / clf.calibrator_.temperature_, 1)
    torch.testing.assert_close(clf.predict_proba(x_test), expected)
    assert torch.equal(clf.predict(x_test), expected.argmax(1))

    clf.save(tmp_path / "cal.pt")
    back = CalibratedClassifier.load(tmp_path / "cal.pt", model)
    assert torch.equal(back.predict_proba(x_test), clf.predict_proba(x_test))
    assert model.training  # put back in its own mode


def test_calibrated_classifier_from_numpy_gives_numpy(tmp_path):
    torch.manual_seed(0)
    model = CountingModel()
    x, y = _labelled(model, 2000, seed=1)
    x_np, y_np = x.double().numpy(), y.numpy()  # float64 numpy reaches the float32 model
    clf = CalibratedClassifier(model, "temperature").fit(x_np, y_np)
    assert clf.calibrator_.temperature_ == pytest.approx(3.0, rel=0.1)
    ref = CalibratedClassifier(model, "temperature").fit([(x, y)])
    assert clf.calibrator_.temperature_ == pytest.approx(ref.calibrator_.temperature_)
    for data in ((x_np, y_np), TensorDataset(x, y), DataLoader(TensorDataset(x, y),
                                                                batch_size=300)):
        other = CalibratedClassifier(model, "temperature").fit(data)
        assert other.calibrator_.temperature_ == pytest.approx(ref.calibrator_.temperature_)
    x_test, _ = _labelled(model, 10, seed=2)
    probs = clf.predict_proba(x_test.numpy())
    assert isinstance(probs, np.ndarray) and probs.shape == (10, 3)
    np.testing.assert_allclose(probs, clf.predict_proba(x_test).numpy(), rtol=1e-6)
    pred = clf.predict(x_test.numpy())
    assert isinstance(pred, np.ndarray) and pred.dtype == np.int64
    np.testing.assert_array_equal(pred, probs.argmax(1))
    assert isinstance(clf.predict_logits(x_test.numpy()), np.ndarray)
    assert isinstance(clf.logits(x_test.numpy()), np.ndarray)
    assert isinstance(clf.predict_proba(TensorDataset(x_test)), torch.Tensor)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_calibrated_classifier_refuses_non_finite_inputs(value):
    model = CountingModel()
    x = np.zeros((5, 6), dtype=np.float32)
    x[2, 4] = value
    with pytest.raises(ValueError, match=rf"The 'x' argument of CalibratedClassifier.fit must be "
                       rf"finite \(no NaN or inf\); found {value} at index \(2, 4\)"):
        CalibratedClassifier(model).fit(x, np.zeros(5, dtype=np.int64))
    clf = CalibratedClassifier(model).fit(*_labelled(model, 50, seed=0))
    with pytest.raises(ValueError, match="'x' argument of CalibratedClassifier.predict_proba must "
                       "be finite"):
        clf.predict_proba(x)
    assert model.seen == 50


def test_calibrated_classifier_errors():
    model = CountingModel()
    clf = CalibratedClassifier(model)
    with pytest.raises(NotFittedError):
        clf.predict_proba(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="The 'x' argument of CalibratedClassifier.fit is "
                       "empty: it yielded no examples"):
        clf.fit([])
    with pytest.raises(ValueError, match="The 'x' argument of CalibratedClassifier.fit has no "
                       "labels"):
        clf.fit(np.zeros((4, 6), dtype=np.float32))
    with pytest.raises(TypeError, match="The 'x' argument of CalibratedClassifier.predict_proba "
                       "must be a numpy array, a torch tensor"):
        clf.fit(torch.zeros(4, 6), torch.arange(4) % 2).predict_proba("x.png")
    with pytest.raises(ValueError, match="'model' parameter of CalibratedClassifier"):
        CalibratedClassifier("not a model").fit([])
    with pytest.raises(ValueError, match="'params' only with a method name"):
        CalibratedClassifier(model, TemperatureScaling(), params={"tol": 1.0}).fit([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["temperature", "matrix", "isotonic"])
def test_calibrated_classifier_on_cuda(name):
    model = CountingModel()
    x, y = _labelled(model, 1000, seed=3)
    cpu = CalibratedClassifier(model, name).fit([(x, y)])
    gpu = CalibratedClassifier(model.cuda(), name).fit([(x, y)])
    assert gpu.calibrator_.predict_proba(gpu.calibration_logits_.cuda()).is_cuda
    probs = gpu.predict_proba(x.cuda())
    assert probs.is_cuda
    torch.testing.assert_close(probs.cpu(), cpu.predict_proba(x), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ the runner and the example
@pytest.fixture(scope="module")
def overconfident_digits_model():
    """Softmax regression on digits, its logits then multiplied by 4 (over-confident)."""
    from dunno.data import load_dataset

    torch.manual_seed(0)
    train = load_dataset("digits", "train")
    x, y = train.x.flatten(1), train.y
    linear = nn.Linear(64, 10)
    opt = torch.optim.Adam(linear.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(linear(x), y).backward()
        opt.step()
    with torch.no_grad():
        linear.weight.mul_(4)
        linear.bias.mul_(4)
    return nn.Sequential(nn.Flatten(), linear)


def test_runner_on_digits_writes_the_table_json_and_figures(overconfident_digits_model,
                                                             tmp_path, capsys):
    import json

    from evaluation.benchmarks.calibration import write_calibration_report
    from uncertainty.calibration import run_calibration

    result = run_calibration(overconfident_digits_model, "digits", "all")
    files = write_calibration_report(result, tmp_path)
    assert files[0] == tmp_path / "calibration.json" and set(files) == set(tmp_path.iterdir())
    rows = {r["method"]: r for r in result.rows()}
    assert list(rows) == ["uncalibrated", "temperature", "vector", "matrix", "histogram",
                          "isotonic"]
    assert rows["temperature"]["accuracy"] == rows["uncalibrated"]["accuracy"]
    assert result.fitted["temperature"]["temperature_"] > 1.5  # it was made over-confident
    assert result.calibration_nll["temperature"] < result.calibration_nll["uncalibrated"]
    assert rows["temperature"]["nll"] < rows["uncalibrated"]["nll"]
    assert "fitted temperature T" in result.summary() and capsys.readouterr().out == ""
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["calibration_size"] == 180 and saved["test_size"] == 360
    assert saved["after"]["temperature"]["ece"] == pytest.approx(rows["temperature"]["ece"])
    assert saved["files"] == [str(p) for p in files]
    for name in rows:
        if name != "uncalibrated":
            assert (tmp_path / f"reliability_{name}.png").stat().st_size > 1000
            back = load_calibrator(tmp_path / f"calibrator_{name}.pt")
            assert back.num_classes_ == 10


def test_runner_subsets_and_rejects_bad_arguments(overconfident_digits_model):
    from uncertainty.calibration import run_calibration

    model = overconfident_digits_model
    small = run_calibration(model, "digits", "temperature,histogram", calibration_size=100,
                            seed=3)
    assert small.calibration_size == 100 and list(small.after) == ["temperature", "histogram"]
    again = run_calibration(model, "digits", ["temperature"], calibration_size=100, seed=3)
    assert again.after["temperature"] == small.after["temperature"]  # seeded
    with pytest.raises(ValueError, match="larger than the 'val' split"):
        run_calibration(model, "digits", calibration_size=5000)
    with pytest.raises(ValueError, match="Unknown calibration method 'nope'"):
        run_calibration(model, "digits", "nope")
    with pytest.raises(ValueError, match="binary classifiers"):
        run_calibration(model, "digits", "platt")
    with pytest.raises(ValueError, match="calibration_split"):
        run_calibration(model, "digits", calibration_split="test")


def test_example_runs_with_smoke(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "calibrate_classifier.py"
    spec = importlib.util.spec_from_file_location("example_calibrate_classifier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--smoke", "--out", str(tmp_path)])
    assert result["temperature"] > 0
    assert result["after"]["nll"] < result["before"]["nll"] + 0.05
    assert (tmp_path / "reliability_temperature.png").is_file()
    assert (tmp_path / "temperature.pt").is_file()


def test_speed_benchmark_runs(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_temperature.py"
    spec = importlib.util.spec_from_file_location("bench_temperature", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--n", "2000", "--repeat", "1"])
    ours = out["rows"][0]
    assert ours["method"] == "ours (newton)" and ours["|T - T_opt|"] < 1e-5
    assert "faster than scipy" in capsys.readouterr().out


def test_a_calibrator_must_implement_fit_and_transform():
    from uncertainty.calibration._base import Calibrator

    class OnlyFit(Calibrator):
        def _fit(self, logits, labels):
            pass

    with pytest.raises(TypeError, match="abstract.*_transform"):
        OnlyFit()


@pytest.mark.parametrize("name", available_calibrators())
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_logits_are_refused_by_every_calibrator(name, value):
    z, y = data_for(name)
    bad = z.numpy().copy()
    bad[9, 1] = value
    for data, labels in ((bad, y.numpy()), ((bad, y), None),
                         (DataLoader(TensorDataset(torch.from_numpy(bad), y), batch_size=50),
                          None)):
        with pytest.raises(ValueError, match="The 'logits' argument contains NaN or infinite "
                           r"values \(in 1 of 600 rows\)"):
            make_calibrator(name).fit(data, labels)
    cal = make_calibrator(name).fit(z, y)
    for method in (cal.predict_proba, cal.transform):
        with pytest.raises(ValueError, match="The 'logits' argument contains NaN or infinite"):
            method(bad)
