"""The journey of the README's "Bring your own model and data": a plain ``nn.Sequential``
trained outside the project, then calibration, OOD detection and MC-Dropout from numpy
arrays, then the command line on a TorchScript file of that model and an ``.npz`` of the
user's data."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from evaluation.metrics import auroc, expected_calibration_error


@pytest.fixture(scope="module")
def journey():
    """Digits as flat float32 vectors, a disjoint train / val / test split, and a small MLP
    with dropout trained on the train part (plain PyTorch, nothing of the project)."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)  # (1797, 64) in [0, 1]
    order = np.random.default_rng(0).permutation(len(x))
    train, val, test = order[:1000], order[1000:1400], order[1400:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    for _ in range(60):  # full-batch Adam: a few seconds on one core
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    return model, x, y, train, val, test


def test_calibration_ood_and_mc_dropout_from_numpy(journey):
    from uncertainty.calibration import CalibratedClassifier
    from uncertainty.ood import make_detector, run_ood
    from uncertainty.predictive import MCDropout

    model, x, y, train, val, test = journey
    noise = np.random.default_rng(1).random((300, 64), dtype=np.float32)

    calibrated = CalibratedClassifier(model, "temperature").fit(x[val], y[val])
    probs = calibrated.predict_proba(x[test])
    assert isinstance(probs, np.ndarray) and probs.shape == (len(test), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == y[test]).mean() > 0.9
    with torch.no_grad():
        raw = torch.softmax(model(torch.from_numpy(x[test])), 1).numpy()
    # temperature scaling keeps every prediction (argmax) and does not worsen NLL on val
    assert (raw.argmax(1) == probs.argmax(1)).all()
    ece_after = expected_calibration_error(probs.astype(np.float64), y[test])
    assert 0.0 <= ece_after < 0.1

    energy = make_detector("energy", model).fit(x[train])
    s_in, s_out = energy.score(x[test]), energy.score(noise)
    assert isinstance(s_in, np.ndarray) and s_in.shape == (len(test),)
    assert auroc(s_in, s_out) > 0.9  # higher score = more OOD

    knn = make_detector("knn", model, layer="1").fit(x[train])  # features: the ReLU output
    assert auroc(knn.score(x[test]), knn.score(noise)) > 0.9

    table = run_ood(model, in_data=(x[train], x[test]), out_sets={"noise": noise},
                    detectors="msp,energy,knn", layer="1")
    by_detector = {row["detector"]: row for row in table.rows if row["ood_set"] == "noise"}
    assert set(by_detector) >= {"msp", "energy"}
    assert by_detector["energy"]["auroc"] == pytest.approx(auroc(s_in, s_out), abs=1e-9)

    pred = MCDropout(model, num_samples=30).predict(x[test], seed=0)
    again = MCDropout(model, num_samples=30).predict(x[test], seed=0)
    np.testing.assert_array_equal(np.asarray(pred.probs), np.asarray(again.probs))
    mi = np.asarray(pred.mutual_information)
    assert mi.shape == (len(test),) and (mi >= -1e-6).all() and mi.max() > 0


def test_the_cli_on_a_torchscript_model_and_an_npz(journey, tmp_path, capsys):
    from dunno.cli import main

    model, x, y, *_ = journey
    scripted = tmp_path / "model.ts"
    with warnings.catch_warnings():  # the user's own export; torch deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(model, torch.from_numpy(x[:2])), str(scripted))
    data = tmp_path / "mine.npz"
    np.savez(data, x=x, y=y)

    assert main(["calibrate", "--checkpoint", str(scripted), "--data", str(data),
                 "--method", "temperature", "--out", str(tmp_path / "cal"),
                 "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert report["after"]["temperature"]["accuracy"] > 0.9
    assert report["calibration_size"] + report["test_size"] < len(x)  # held-out splits

    assert main(["ood", "--checkpoint", str(scripted), "--in", str(data),
                 "--out", "gaussian-noise", "--detectors", "msp,energy",
                 "--report-dir", str(tmp_path / "ood"), "--device", "cpu"]) == 0
    rows = json.loads((tmp_path / "ood" / "ood.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    energy = [r for r in rows if r["detector"] == "energy" and r["ood_set"] == "gaussian-noise"]
    assert energy and energy[0]["auroc"] > 0.9
    capsys.readouterr()
