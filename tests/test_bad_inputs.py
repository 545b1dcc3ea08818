"""The bad-input suite: every case feeds one bad input to the Python API or the command line
and asserts the exception type (or the exit status) AND that the message names the argument
and the value. Refusing with a clear message is always better than a silent wrong number.

Python cases are ``(call, exception type, needles)``: ``call(ctx)`` must raise exactly that
type with every needle in its message. Command-line cases are ``(argv, needles)``:
``dunno.cli.main(argv)`` must return 2 with a one-line stderr holding every needle.
:data:`OUTCOMES` counts the cases by outcome (``test_the_suite_is_large_enough``).
"""

from __future__ import annotations

import collections
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import evaluation.metrics as M
from dunno.checkpoints import build_model, load_model, save_checkpoint
from dunno.cli import main
from dunno.data import load_dataset
from dunno.errors import CheckpointError, DataError, NotFittedError
from dunno.validation import as_labels
from uncertainty.calibration import (
    CalibratedClassifier,
    HistogramBinning,
    MatrixScaling,
    PlattScaling,
    TemperatureScaling,
    VectorScaling,
    load_calibrator,
    make_calibrator,
)
from uncertainty.ood import make_detector, run_ood
from uncertainty.ood.suite import build_detectors
from uncertainty.predictive import MCDropout

# ---------------------------------------------------------------------------------------- data
G = torch.Generator().manual_seed(0)
N, C = 60, 3
Y = torch.randint(0, C, (N,), generator=G)
Z = torch.randn(N, C, generator=G, dtype=torch.float64) * 2  # logits (N, C)
P = torch.softmax(Z, 1).float()  # probabilities (N, C)
X = torch.randn(N, 4, generator=G)  # inputs (N, 4)
P_NP = P.double().numpy()
Y_NP = Y.numpy()


def _plain() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, C)).eval()


def _dropout(p: float = 0.5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(p), nn.Linear(8, C)).eval()


def _with_nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[3, 1] = float("nan")
    return t


def _with_inf(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[5, 0] = float("inf")
    return t


def _row0(p: torch.Tensor) -> str:
    return f"{float(p[0, 0]):.4g}"


# ---------------------------------------------------------------------------------- context
@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> SimpleNamespace:
    """Models, a checkpoint, a saved calibrator and a few files shared by the cases."""
    root = tmp_path_factory.mktemp("bad_inputs")
    from dunno import nets

    net = nets.create("lenet5", num_classes=10, in_channels=1, input_size=8).eval()
    ckpt = save_checkpoint(root / "model.pt", net, arch="nets", config=net.config)
    plain = _plain()
    loader = [(X, Y)]
    clf = CalibratedClassifier(plain).fit(loader)
    calibrator = clf.save(root / "calibrator.pt")
    garbage = root / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    npz = root / "data.npz"
    np.savez(npz, x=np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32),
             y=np.arange(20) % 2)
    rng = np.random.default_rng(1)
    labels = np.arange(40) % 2
    labels[3] = 10**9
    np.savez(root / "huge_label.npz", x=rng.random((40, 1, 8, 8)).astype(np.float32), y=labels)
    x_nan = rng.random((40, 1, 8, 8)).astype(np.float32)
    x_nan[2, 0, 1, 1] = np.nan
    np.savez(root / "nan.npz", x=x_nan, y=np.arange(40) % 2)
    np.savez(root / "mixed.npz", x=x_nan[:, :, :4], y=np.arange(40) % 2, x_train=x_nan)
    (root / "a_file").write_text("not a directory")
    np.savez(root / "big_images.npz", x=rng.random((40, 1, 28, 28)).astype(np.float32),
             y=np.arange(40) % 2)
    torch.save(net.state_dict(), root / "state_dict.pt")
    run = root / "run"  # a finished one-epoch run, for --resume with another config
    assert main(["train", "classifier", "--data", "digits", "--epochs", "1", "--out", str(run),
                 "--quiet", "--device", "cpu"]) == 0
    return SimpleNamespace(root=root, ckpt=str(ckpt), plain=plain, clf=clf,
                           calibrator=str(calibrator), garbage=str(garbage), npz=str(npz),
                           net=net, run=str(run))


def _refit_plain_weights(c):
    other = _plain()
    with torch.no_grad():
        other[0].weight.add_(0.5)
    return CalibratedClassifier.load(c.calibrator, other)


def _predict_after_weights_changed(c):
    model = _plain()
    clf = CalibratedClassifier(model).fit([(X, Y)])
    with torch.no_grad():
        model[2].bias.add_(1.0)
    return clf.predict_proba(X)


BITS = (torch.rand(20, 16, generator=G) > 0.5).float()  # flat binary vectors (N, D)


def _nade_fit(**kwargs):
    def call(c):
        from generative import NADE

        return NADE(image_shape=(1, 4, 4), hidden=8).fit(BITS, **kwargs)

    return call


def _feature_detector(name: str):
    return lambda c: make_detector(name, c.plain)


def _knn_k_too_large(c):
    det = make_detector("knn", c.plain, k=1000, layer="1")
    return det.fit([(X, Y)])


# ---------------------------------------------------------------------------------- the cases
V = ValueError
CASES = [
    # --- calibration: probabilities passed as logits, in every dtype and form
    ("cal-probs-float32", lambda c: TemperatureScaling().fit(P, Y), V,
     ["'logits'", "probabilities", "float32", _row0(P)]),
    ("cal-probs-float16", lambda c: TemperatureScaling().fit(P.half(), Y), V,
     ["'logits'", "probabilities", "float16", _row0(P.half())]),
    ("cal-probs-bfloat16", lambda c: TemperatureScaling().fit(P.bfloat16(), Y), V,
     ["'logits'", "probabilities", "bfloat16"]),
    ("cal-probs-float64-numpy", lambda c: VectorScaling().fit(P_NP, Y_NP), V,
     ["'logits'", "probabilities", "float64", _row0(P)]),
    ("cal-probs-rounded-2", lambda c: TemperatureScaling().fit((P * 100).round() / 100, Y), V,
     ["'logits'", "rounded probabilities", "0.01"]),
    ("cal-probs-rounded-3", lambda c: MatrixScaling().fit((P * 1000).round() / 1000, Y), V,
     ["'logits'", "rounded probabilities", "0.001"]),
    ("cal-percentages", lambda c: TemperatureScaling().fit(P * 100, Y), V,
     ["'logits'", "percentages", "probs / 100", f"{float(P[0, 0] * 100):.4g}"]),
    ("cal-percentages-rounded", lambda c: TemperatureScaling().fit((P * 100).round(), Y), V,
     ["'logits'", "rounded percentages"]),
    ("cal-probs-transform", lambda c: TemperatureScaling().fit(Z, Y).transform(P), V,
     ["'logits'", "probabilities", "torch.log(probs)"]),
    ("cal-probs-histogram", lambda c: HistogramBinning().fit(P, Y), V,
     ["'logits'", "probabilities"]),
    # --- calibration: shapes, values, labels
    ("cal-nan-logits", lambda c: TemperatureScaling().fit(_with_nan(Z), Y), V,
     ["'logits'", "NaN"]),
    ("cal-inf-logits", lambda c: VectorScaling().fit(_with_inf(Z), Y), V,
     ["'logits'", "infinite"]),
    ("cal-1d-logits", lambda c: TemperatureScaling().fit(Z[:, 0], Y), V,
     ["'logits'", f"({N},)"]),
    ("cal-one-class", lambda c: TemperatureScaling().fit(Z[:, :1], Y), V,
     ["'logits'", "Got 1"]),
    ("cal-empty", lambda c: TemperatureScaling().fit(Z[:0], Y[:0]), V,
     ["'logits'", "TemperatureScaling.fit", "empty"]),
    ("cal-labels-out-of-range", lambda c: TemperatureScaling().fit(Z, Y + 5), V,
     ["'labels'", f"{int(Y.max()) + 5}"]),
    ("cal-labels-negative", lambda c: TemperatureScaling().fit(Z, Y - 1), V,
     ["'labels'", "-1"]),
    ("cal-labels-length", lambda c: TemperatureScaling().fit(Z, Y[:10]), V,
     ["'labels'", "10"]),
    ("cal-labels-float", lambda c: TemperatureScaling().fit(Z, Y.double() + 0.5), V,
     ["'labels'", "float64"]),
    ("cal-wrong-class-count", lambda c: TemperatureScaling().fit(Z, Y).transform(
        torch.randn(5, 4)), V, ["'logits'", "4 classes", "3"]),
    ("cal-platt-multiclass", lambda c: PlattScaling().fit(Z, Y), V, ["'logits'", "Got 3"]),
    ("cal-max-iter-0", lambda c: TemperatureScaling(max_iter=0).fit(Z, Y), V,
     ["'max_iter'", "Got 0"]),
    ("cal-bounds-reversed", lambda c: TemperatureScaling(bounds=(2.0, 1.0)).fit(Z, Y), V,
     ["'bounds'", "(2.0, 1.0)"]),
    ("cal-solver", lambda c: TemperatureScaling(solver="adam").fit(Z, Y), V,
     ["'solver'", "'adam'"]),
    ("cal-tol-negative", lambda c: VectorScaling(tol=-1.0).fit(Z, Y), V,
     ["'tol'", "-1.0"]),
    ("cal-intercept-reg", lambda c: VectorScaling(intercept_reg=-1).fit(Z, Y), V,
     ["'intercept_reg'", "-1"]),
    ("cal-histogram-n-bins-huge", lambda c: HistogramBinning(n_bins=10**9).fit(Z, Y), V,
     ["'n_bins'", "1000000000"]),
    ("cal-histogram-cells", lambda c: HistogramBinning(n_bins=10**6).fit(
        torch.randn(10, 200, dtype=torch.float64), torch.arange(10)), V,
     ["'n_bins'", "200 classes", "1000000"]),
    ("cal-unknown-param", lambda c: make_calibrator("temperature", foo=1), V,
     ["['foo']", "TemperatureScaling"]),
    ("cal-unfitted", lambda c: TemperatureScaling().predict_proba(Z), NotFittedError,
     ["TemperatureScaling", "fit"]),
    ("cal-other-model-on-load", _refit_plain_weights, V,
     ["'model'", "weights=", "calibrator.pt", "fitted for"]),
    ("cal-model-changed", _predict_after_weights_changed, V,
     ["'model'", "weights=", "fitted for"]),
    ("cal-model-not-module", lambda c: CalibratedClassifier("model.pt").fit([(X, Y)]), V,
     ["'model'", "str"]),
    ("cal-batch-size-0", lambda c: CalibratedClassifier(c.plain, batch_size=0).fit([(X, Y)]),
     V, ["'batch_size'", "Got 0"]),
    ("cal-load-garbage", lambda c: load_calibrator(c.garbage), CheckpointError,
     ["garbage.pt"]),
    ("cal-load-a-model", lambda c: load_calibrator(c.ckpt), CheckpointError,
     ["model.pt", "not a dunno calibrator"]),
    # --- OOD detectors: a named detector that cannot score the model is refused
    ("ood-mc-dropout-no-dropout", lambda c: make_detector("mc-dropout", c.plain), V,
     ["'model'", "Sequential", "no dropout layer"]),
    ("ood-mc-dropout-p0", lambda c: make_detector("mc-dropout", _dropout(0.0)), V,
     ["'model'", "Sequential", "p > 0"]),
    ("ood-mc-dropout-fit", lambda c: __import__("uncertainty.ood", fromlist=["MCDropoutMI"])
     .MCDropoutMI(c.plain).fit(X), V, ["'model'", "Sequential", "dropout"]),
    ("ood-ensemble-on-one-net", lambda c: make_detector("ensemble-disagreement", c.plain), V,
     ["'model'", "Sequential", "not an ensemble"]),
    *[(f"ood-{name}-without-features", _feature_detector(name), V,
       ["'layer'", "None", "Sequential", "features"])
      for name in ("knn", "mahalanobis", "ddu", "featurenorm")],
    ("ood-build-mc-dropout", lambda c: build_detectors(["mc-dropout"], c.plain), V,
     ["'model'", "dropout"]),
    ("ood-unknown-detector", lambda c: make_detector("nosuchdetector", c.plain), V,
     ["'nosuchdetector'"]),
    ("ood-unknown-param", lambda c: make_detector("energy", c.plain, foo=1), V,
     ["['foo']", "Energy"]),
    ("ood-knn-k-too-large", _knn_k_too_large, V, ["'k'", "1000"]),
    ("ood-knn-k-0", lambda c: make_detector("knn", c.plain, k=0, layer="1").fit([(X, Y)]), V,
     ["'k'", "Got 0"]),
    ("ood-energy-temperature-0", lambda c: make_detector("energy", c.plain, temperature=0)
     .score(X), V, ["'temperature'", "0"]),
    ("ood-mc-dropout-num-samples", lambda c: make_detector("mc-dropout", _dropout(),
                                                           num_samples=10**9).score(X), V,
     ["'num_samples'", "1000000000"]),
    ("ood-mc-dropout-mode", lambda c: make_detector("mc-dropout", _dropout(), mode="half")
     .score(X), V, ["'mode'", "'half'"]),
    ("ood-score-not-tensor", lambda c: make_detector("msp", c.plain).score("x"), TypeError,
     ["'x'", "MSP.score", "str"]),
    ("ood-score-empty", lambda c: make_detector("msp", c.plain).score(X[:0]), V,
     ["'x'", "empty", "(0, 4)"]),
    ("ood-score-before-fit", lambda c: make_detector("knn", c.plain, layer="1").score(X),
     NotFittedError, ["KNN", "fit"]),
    ("ood-run-unknown-detector", lambda c: run_ood(c.net, "digits", "gaussian-noise",
                                                   "msp,nosuchdetector"), V,
     ["'nosuchdetector'", "'detectors'"]),
    ("ood-layer-unknown", lambda c: make_detector("knn", c.plain, layer="nosuchlayer")
     .fit([(X, Y)]), V, ["'nosuchlayer'"]),
    # --- metrics: sizes refused before allocating, and bad arrays
    ("metric-ece-n-bins-huge", lambda c: M.expected_calibration_error(P, Y, n_bins=10**9), V,
     ["'n_bins'", "1000000000"]),
    ("metric-ece-n-bins-0", lambda c: M.expected_calibration_error(P, Y, n_bins=0), V,
     ["'n_bins'", "Got 0"]),
    ("metric-reliability-n-bins-huge", lambda c: M.reliability_table(P, Y, n_bins=10**7), V,
     ["'n_bins'", "10000000"]),
    ("metric-classwise-cells", lambda c: M.classwise_calibration_error(
        torch.full((4, 500), 1 / 500), torch.arange(4), n_bins=10**6), V,
     ["'n_bins'", "500 classes", "1000000"]),
    ("metric-calibration-metrics-n-bins", lambda c: M.calibration_metrics(P, Y, n_bins=-3), V,
     ["'n_bins'", "-3"]),
    ("metric-accumulator-cells", lambda c: M.CalibrationAccumulator(10**6, n_bins=1000), V,
     ["'n_bins'", "1000000 classes", "1000"]),
    ("metric-accumulator-classes", lambda c: M.CalibrationAccumulator(1), V,
     ["'num_classes'", "Got 1"]),
    ("metric-ece-binning", lambda c: M.expected_calibration_error(P, Y, binning="log"), V,
     ["'binning'", "'log'"]),
    ("metric-ece-norm", lambda c: M.expected_calibration_error(P, Y, norm="l3"), V,
     ["'norm'", "'l3'"]),
    ("metric-probs-row-sum", lambda c: M.nll(P * 0.5, Y), V, ["'probs'", "0.5"]),
    ("metric-probs-nan", lambda c: M.brier_score(_with_nan(P), Y), V, ["'probs'", "nan"]),
    ("metric-probs-negative", lambda c: M.nll(P - 0.5, Y), V, ["'probs'", "-"]),
    ("metric-labels-range", lambda c: M.accuracy(P, Y + 3), V,
     ["'labels'", f"{int((Y + 3).max())}"]),
    ("metric-labels-length", lambda c: M.brier_score(P, Y[:7]), V, ["'labels'", "7"]),
    ("metric-auroc-nan", lambda c: M.auroc(np.array([0.1, np.nan]), np.array([0.3, 0.4])), V,
     ["'scores_in'", "nan"]),
    ("metric-auroc-empty", lambda c: M.auroc(np.array([]), np.array([0.3])), V,
     ["'scores_in'", "(0,)"]),
    ("metric-fpr-level", lambda c: M.fpr_at_tpr(np.array([0.1, 0.2]), np.array([0.3]),
                                                tpr=1.5), V, ["'tpr'", "1.5"]),
    ("metric-best-mapping-huge-label", lambda c: M.best_mapping_accuracy(
        np.array([0, 1, 2]), np.array([0, 1, 10**9])), V, ["'labels'", "1000000000"]),
    # --- labels far larger than the data
    ("labels-inferred-huge", lambda c: as_labels(np.array([0, 1, 10**9]), 3), V,
     ["'labels'", "1000000000", "3 examples"]),
    ("labels-heteroscedastic-huge", lambda c: __import__(
        "uncertainty.predictive", fromlist=["HeteroscedasticClassifier"])
     .HeteroscedasticClassifier(epochs=1).fit(X.numpy(), np.r_[np.zeros(N - 1), 1e9]
                                              .astype(np.int64)), V,
     ["'labels'", "1000000000"]),
    # --- predictive
    ("mcd-no-dropout", lambda c: MCDropout(c.plain, 5).sample(X), V,
     ["model", "Sequential", "dropout"]),
    ("mcd-num-samples-huge", lambda c: MCDropout(_dropout(), 10**9).sample(X), V,
     ["'num_samples'", "1000000000"]),
    ("mcd-num-samples-0", lambda c: MCDropout(_dropout(), 0).sample(X), V,
     ["'num_samples'", "Got 0"]),
    ("mcd-mode", lambda c: MCDropout(_dropout(), 5, mode="half").sample(X), V,
     ["'mode'", "'half'"]),
    ("mcd-noise-variance", lambda c: MCDropout(_dropout(), 5, task="regression",
                                               noise_variance=-1.0).sample(X), V,
     ["'noise_variance'", "-1.0"]),
    ("mcd-model-not-module", lambda c: MCDropout("net", 5).sample(X), V, ["'model'", "str"]),
    ("regressor-unknown", lambda c: __import__("uncertainty.predictive", fromlist=["x"])
     .make_regressor("nosuchregressor"), V, ["'nosuchregressor'"]),
    # --- density models
    ("vae-particles-huge", lambda c: __import__("generative", fromlist=["VAE"]).VAE(
        particles=10**9), V, ["'particles'", "1000000000"]),
    ("vae-particles-0", lambda c: __import__("generative", fromlist=["VAE"]).VAE(particles=0),
     V, ["'particles'", "Got 0"]),
    ("vae-elbo-num-samples", lambda c: __import__("generative", fromlist=["VAE"]).VAE(
        image_shape=(1, 8, 8)).elbo(torch.rand(2, 1, 8, 8), num_samples=10**9), V,
     ["'num_samples'", "1000000000"]),
    ("nade-hidden-0", lambda c: __import__("generative", fromlist=["NADE"]).NADE(
        image_shape=(1, 4, 4), hidden=0), V, ["'hidden'", "0"]),
    *[(f"density-fit-{key}", _nade_fit(**{key: value}), V, [f"'{key}'", "NADE.fit", shown])
      for key, value, shown in (("epochs", 0, "Got 0"), ("batch_size", 0, "Got 0"),
                                ("lr", -1.0, "-1.0"), ("max_minutes", 0, "Got 0"))],
    ("density-fit-nan", lambda c: __import__("generative", fromlist=["NADE"]).NADE(
        image_shape=(1, 4, 4), hidden=8).fit(_with_nan(BITS), epochs=1), V,
     ["'x'", "NADE.fit", "nan", "(3, 1)"]),
    ("density-fit-not-binary", lambda c: __import__("generative", fromlist=["NADE"]).NADE(
        image_shape=(1, 4, 4), hidden=8).fit(torch.full((20, 16), 0.5), epochs=1), V,
     ["'x'", "0/1", "0.5"]),
    # --- data loading
    ("data-unknown-dataset", lambda c: load_dataset("nosuchset", "train"), DataError,
     ["'nosuchset'"]),
    ("data-unknown-split", lambda c: load_dataset("digits", "nosuchsplit"), DataError,
     ["'split'", "'nosuchsplit'"]),
    ("data-missing-file", lambda c: load_dataset(str(c.root / "missing.npz"), "train"),
     DataError, ["missing.npz", "does not exist"]),
    ("data-split-fraction", lambda c: load_dataset(f"{c.npz}:val=1.5", "train"), DataError,
     ["'val'", "data.npz", "1.5"]),
    ("data-split-fractions-sum", lambda c: load_dataset(f"{c.npz}:val=0.6:test=0.6", "train"),
     DataError, ["val=0.6", "test=0.6", "1.2", "data.npz"]),
    ("data-npz-huge-label", lambda c: load_dataset(str(c.root / "huge_label.npz"), "train"),
     DataError, ["'y'", "huge_label.npz", "1000000000"]),
    ("data-npz-nan", lambda c: load_dataset(str(c.root / "nan.npz"), "train"), DataError,
     ["'x'", "nan.npz", "NaN", "(2, 0, 1, 1)"]),
    ("data-npz-mixed-splits", lambda c: load_dataset(str(c.root / "mixed.npz"), "train"),
     DataError, ["mixed.npz", "'x'", "x_train"]),
    # --- NaN inputs reaching a detector
    ("ood-msp-nan-input", lambda c: make_detector("msp", c.plain).score(_with_nan(X)), V,
     ["'x'", "MSP.score", "NaN", "found nan"]),
    ("ood-knn-nan-input", lambda c: make_detector("knn", c.plain, k=2, layer="1").fit(
        [(X, Y)]).score(_with_nan(X)), V, ["'x'", "KNN.score", "NaN", "found nan"]),
    # --- NaN and mismatched arrays at every entry point (numpy in)
    ("cal-wrapper-nan-x", lambda c: CalibratedClassifier(c.plain).fit(_with_nan(X).numpy(),
                                                                      Y_NP), V,
     ["'x'", "CalibratedClassifier.fit", "nan", "(3, 1)"]),
    ("cal-wrapper-predict-nan", lambda c: c.clf.predict_proba(_with_nan(X).numpy()), V,
     ["'x'", "CalibratedClassifier.predict_proba", "nan", "(3, 1)"]),
    ("cal-wrapper-lengths", lambda c: CalibratedClassifier(c.plain).fit(X.numpy(), Y_NP[:5]),
     V, ["'x'", "'y'", str(N), "5"]),
    ("cal-wrapper-no-labels", lambda c: CalibratedClassifier(c.plain).fit(X.numpy()), V,
     ["'x'", "CalibratedClassifier.fit", "no labels"]),
    ("ood-odin-nan-input", lambda c: make_detector("odin", c.plain).score(_with_nan(X)), V,
     ["'x'", "ODIN.score", "nan", "(3, 1)"]),
    ("ood-rapp-nan-input", lambda c: make_detector("rapp").fit(X.numpy()).score(
        _with_nan(X).numpy()), V, ["'x'", "RaPP.score", "nan", "(3, 1)"]),
    ("ood-knn-fit-nan", lambda c: make_detector("knn", c.plain, k=2, layer="1").fit(
        (_with_nan(X).numpy(), Y_NP)), V, ["'x'", "KNN.fit", "nan", "(3, 1)"]),
    ("mcd-predict-nan", lambda c: MCDropout(_dropout(), 5).predict(_with_nan(X).numpy()), V,
     ["'x'", "MCDropout.predict", "nan", "(3, 1)"]),
    # --- model / data mismatch, checked before any pass over the data
    ("model-data-input-shape", lambda c: __import__("dunno.models", fromlist=["x"])
     .check_model_data(c.net, torch.rand(4, 1, 28, 28)), V, ["(1, 8, 8)", "(1, 28, 28)"]),
    ("model-data-classes", lambda c: __import__("dunno.models", fromlist=["x"])
     .check_model_data(c.net, torch.rand(4, 1, 8, 8), num_classes=5), V,
     ["10 logits", "5 classes"]),
    # --- checkpoints
    ("ckpt-missing", lambda c: load_model(c.root / "missing.pt"), CheckpointError,
     ["missing.pt", "does not exist"]),
    ("ckpt-garbage", lambda c: load_model(c.garbage), CheckpointError, ["garbage.pt"]),
    ("ckpt-calibrator-as-model", lambda c: load_model(c.calibrator), CheckpointError,
     ["calibrator.pt"]),
    ("ckpt-unknown-arch", lambda c: build_model("nosucharch", {}), CheckpointError,
     ["'nosucharch'"]),
]

CLI_CASES = [
    ("cli-calibrate-missing-checkpoint", lambda c: ["calibrate", "--checkpoint",
                                                    str(c.root / "missing.pt"), "--data",
                                                    "digits", "--out", str(c.root / "o1")],
     ["missing.pt", "does not exist"]),
    ("cli-calibrate-garbage-checkpoint", lambda c: ["calibrate", "--checkpoint", c.garbage,
                                                    "--data", "digits", "--out",
                                                    str(c.root / "o2")], ["garbage.pt"]),
    ("cli-calibrate-unknown-method", lambda c: ["calibrate", "--checkpoint", c.ckpt, "--data",
                                                "digits", "--method", "nosuchmethod",
                                                "--out", str(c.root / "o3")],
     ["'nosuchmethod'"]),
    ("cli-calibrate-unknown-dataset", lambda c: ["calibrate", "--checkpoint", c.ckpt,
                                                 "--data", "nosuchset", "--out",
                                                 str(c.root / "o4")], ["'nosuchset'"]),
    ("cli-ood-unknown-detector", lambda c: ["ood", "--checkpoint", c.ckpt, "--in", "digits",
                                            "--out", "gaussian-noise", "--detectors",
                                            "msp,nosuchdetector"], ["'nosuchdetector'"]),
    ("cli-ood-mc-dropout-without-dropout", lambda c: ["ood", "--checkpoint", c.ckpt, "--in",
                                                      "digits", "--out", "gaussian-noise",
                                                      "--detectors", "mc-dropout"],
     ["'model'", "dropout", "LeNet"]),
    ("cli-ood-ensemble-on-one-net", lambda c: ["ood", "--checkpoint", c.ckpt, "--in",
                                               "digits", "--out", "gaussian-noise",
                                               "--detectors", "ensemble-disagreement"],
     ["'model'", "not an ensemble"]),
    ("cli-ood-missing-checkpoint", lambda c: ["ood", "--checkpoint",
                                              str(c.root / "missing.pt"), "--in", "digits",
                                              "--out", "gaussian-noise"], ["missing.pt"]),
    ("cli-ood-unknown-out-set", lambda c: ["ood", "--checkpoint", c.ckpt, "--in", "digits",
                                           "--out", "nosuchset", "--detectors", "msp"],
     ["'nosuchset'"]),
    ("cli-ood-param-unknown", lambda c: ["ood", "--checkpoint", c.ckpt, "--in", "digits",
                                         "--out", "gaussian-noise", "--detectors", "energy",
                                         "--param", "energy.foo=1"], ["foo"]),
    ("cli-train-unknown-dataset", lambda c: ["train", "classifier", "--data", "nosuchset",
                                             "--out", str(c.root / "t1"), "--quiet"],
     ["'nosuchset'"]),
    ("cli-train-epochs-0", lambda c: ["train", "classifier", "--data", "digits", "--epochs",
                                      "0", "--out", str(c.root / "t2"), "--quiet"],
     ["epochs", "0"]),
    ("cli-train-missing-npz", lambda c: ["train", "classifier", "--data",
                                         str(c.root / "missing.npz"), "--out",
                                         str(c.root / "t3"), "--quiet"], ["missing.npz"]),
    ("cli-uci-threads-0", lambda c: ["uci", "--method", "mc-dropout", "--threads", "0"],
     ["threads", "0"]),
    ("cli-train-resume-other-config", lambda c: ["train", "classifier", "--data", "digits",
                                                 "--epochs", "1", "--lr", "0.5", "--out",
                                                 c.run, "--resume", "--quiet"],
     ["training_state.pt", "another run", "lr", "0.5"]),
    ("cli-train-npz-huge-label", lambda c: ["train", "classifier", "--data",
                                            str(c.root / "huge_label.npz"), "--out",
                                            str(c.root / "t4"), "--quiet"],
     ["huge_label.npz", "1000000000"]),
    ("cli-train-npz-bad-fraction", lambda c: ["train", "classifier", "--data",
                                              f"{c.npz}:val=1.5", "--out",
                                              str(c.root / "t5"), "--quiet"],
     ["'val'", "1.5"]),
    ("cli-ood-npz-nan", lambda c: ["ood", "--checkpoint", c.ckpt, "--in",
                                   str(c.root / "nan.npz"), "--out", "gaussian-noise",
                                   "--detectors", "msp"], ["nan.npz", "NaN"]),
    ("cli-calibrate-model-data-shape", lambda c: ["calibrate", "--checkpoint", c.ckpt,
                                                  "--data", str(c.root / "big_images.npz"),
                                                  "--out", str(c.root / "o6")],
     ["(1, 8, 8)", "(1, 28, 28)", "big_images.npz"]),
    ("cli-ood-model-data-classes", lambda c: ["ood", "--checkpoint", c.ckpt, "--in",
                                              "digits:classes=0-4", "--out", "gaussian-noise",
                                              "--detectors", "msp"],
     ["10 logits", "5 classes", "digits:classes=0-4"]),
    ("cli-calibrate-state-dict", lambda c: ["calibrate", "--checkpoint",
                                            str(c.root / "state_dict.pt"), "--data", "digits",
                                            "--out", str(c.root / "o7")],
     ["state_dict.pt", "not a dunno checkpoint", "--model"]),
    ("cli-calibrate-weights-without-model", lambda c: ["calibrate", "--weights",
                                                       str(c.root / "state_dict.pt"), "--data",
                                                       "digits", "--out", str(c.root / "o8")],
     ["--weights", "state_dict.pt", "--model"]),
    ("cli-calibrate-npz-mixed", lambda c: ["calibrate", "--checkpoint", c.ckpt, "--data",
                                           str(c.root / "mixed.npz"), "--out",
                                           str(c.root / "o5")], ["mixed.npz", "x_train"]),
]

#: Operating-system errors: exit status 1, one line naming the path.
CLI_OS_CASES = [
    ("cli-train-out-is-a-file", lambda c: ["train", "classifier", "--data", "digits",
                                           "--epochs", "1", "--out", str(c.root / "a_file"),
                                           "--quiet"], ["a_file", "is a file"]),
    ("cli-calibrate-out-is-a-file", lambda c: ["calibrate", "--checkpoint", c.ckpt, "--data",
                                               "digits", "--out", str(c.root / "a_file")],
     ["a_file", "is a file"]),
    ("cli-train-out-below-a-file", lambda c: ["train", "classifier", "--data", "digits",
                                              "--epochs", "1", "--out",
                                              str(c.root / "a_file" / "run"), "--quiet"],
     ["a_file"]),
]


#: Cases by outcome: exception type(s) of the Python cases, exit status of the CLI cases.
OUTCOMES = collections.Counter(
    [exc.__name__ for _, _, exc, _ in CASES] + ["exit 2"] * len(CLI_CASES)
    + ["exit 1"] * len(CLI_OS_CASES)
)


@pytest.mark.parametrize("call,exc,needles", [pytest.param(f, e, n, id=i)
                                               for i, f, e, n in CASES])
def test_python_api_refuses_bad_input(ctx, call, exc, needles):
    with pytest.raises(exc) as info:
        call(ctx)
    assert type(info.value) is exc  # exactly that type, not a subclass
    message = str(info.value)
    missing = [n for n in needles if n not in message]
    assert not missing, f"{missing} not in: {message}"


@pytest.mark.parametrize("argv,needles,status", [
    *[pytest.param(a, n, 2, id=i) for i, a, n in CLI_CASES],
    *[pytest.param(a, n, 1, id=i) for i, a, n in CLI_OS_CASES]])
def test_cli_refuses_bad_input_with_one_line(ctx, capsys, argv, needles, status):
    capsys.readouterr()
    args = argv(ctx)
    code = main(args + (["--device", "cpu"] if args[0] in ("calibrate", "ood", "train")
                        else []))
    err = capsys.readouterr().err
    assert code == status, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    missing = [n for n in needles if n not in err]
    assert not missing, f"{missing} not in: {err}"


def test_the_suite_is_large_enough():
    cases = [*CASES, *CLI_CASES, *CLI_OS_CASES]
    assert len(cases) >= 80, OUTCOMES
    assert len({case[0] for case in cases}) == len(cases)  # unique ids


def test_a_named_detector_never_scores_silently_but_all_skips_with_a_note(ctx, capsys):
    from uncertainty.ood.suite import resolve_detectors

    names = resolve_detectors("all", model=ctx.net)
    assert "mc-dropout" not in names and "ensemble-disagreement" not in names
    assert "msp" in names
    code = main(["ood", "--checkpoint", ctx.ckpt, "--in", "digits", "--out", "gaussian-noise",
                 "--detectors", "all", "--fit-size", "300", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0
    assert re.search(r"note: --detectors all skips .*mc-dropout", err)


def test_same_model_passes_the_fingerprint(ctx, tmp_path):
    clf = CalibratedClassifier.load(ctx.calibrator, ctx.plain)
    assert torch.allclose(clf.predict_proba(X), ctx.clf.predict_proba(X))
    same = _plain()  # same architecture and weights, another object
    assert torch.allclose(CalibratedClassifier.load(ctx.calibrator, same).predict_proba(X),
                          ctx.clf.predict_proba(X))


def test_outcome_counts_are_consistent():
    assert sum(OUTCOMES.values()) == len(CASES) + len(CLI_CASES) + len(CLI_OS_CASES)
    assert OUTCOMES["exit 2"] == len(CLI_CASES) and OUTCOMES["exit 1"] == len(CLI_OS_CASES)


if __name__ == "__main__":  # print the counts by outcome
    for outcome, count in sorted(OUTCOMES.items()):
        print(f"{outcome}: {count}")
    print(f"total: {sum(OUTCOMES.values())}")
