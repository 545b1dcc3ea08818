"""The OOD benchmark runner (evaluation.benchmarks.ood): table, files, shared passes, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dunno import nets
from dunno.checkpoints import save_checkpoint
from dunno.data import ArrayDataset, DatasetInfo, load_dataset
from evaluation.benchmarks.ood import (
    METRICS,
    compare_shared_vs_naive,
    main,
    parse_detector_params,
    run_ood,
)

IN = "digits:classes=0-4"
OUT = "digits:classes=5-9,gaussian-noise"
CHEAP = "msp,energy,mahalanobis,knn,featurenorm"


pytestmark = pytest.mark.one_thread


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nets.create("lenet5", 1, 5, input_size=8).eval()


def test_run_ood_table_and_files(model, tmp_path):
    table = run_ood(model, IN, OUT, CHEAP, detector_params={"knn": {"k": 5}}, out=tmp_path,
                    batch_size=100)
    assert table.out_sets == ["digits:classes=5-9", "gaussian-noise"]
    assert table.detectors == CHEAP.split(",")
    assert len(table.rows) == 10
    for row in table.rows:
        assert all(0.0 <= row[m] <= 1.0 for m in METRICS)
        assert row["n_in"] == table.n_test and row["n_out"] > 0
    assert table.n_test == len(load_dataset(IN, "test"))
    assert 0.0 <= table.accuracy <= 1.0
    means = table.mean_by_detector()
    assert means["msp"]["auroc"] == pytest.approx(
        np.mean([r["auroc"] for r in table.rows if r["detector"] == "msp"]))
    long = table.table_rows()
    assert len(long) == 15 and long[2] == {"detector": "msp", "ood_set": "mean", **means["msp"]}
    pivot = table.pivot("auroc")
    assert pivot[0]["mean"] == pytest.approx(100 * means["msp"]["auroc"])
    assert "| detector | ood_set | auroc |" in table.to_markdown()
    assert "gaussian-noise" in table.to_markdown("fpr95")
    assert set(table.best("auroc")) == set(table.out_sets)
    # one shared pass per dataset, nothing else ran the model
    assert len(table.timings["forward"]) == 4 and table.own_passes == []
    assert table.timings["total"] >= table.timings["shared_forward_total"]

    names = {p.name for p in tmp_path.iterdir()}
    assert {"ood.json", "ood.csv", "auroc.csv", "roc_digits-classes-5-9.png",
            "roc_gaussian-noise.png", "hist_knn_gaussian-noise.png"} <= names
    saved = json.loads((tmp_path / "ood.json").read_text())
    assert saved["accuracy"] == table.accuracy and len(saved["rows"]) == 10
    assert saved["timings"]["total"] == pytest.approx(table.timings["total"])
    header = (tmp_path / "ood.csv").read_text().splitlines()[0]
    assert header == "detector,ood_set,auroc,aupr_in,aupr_out,fpr95,detection_error,n_in,n_out"


def test_shared_passes_give_the_naive_scores(model):
    timing = compare_shared_vs_naive(model, IN, "gaussian-noise", "energy,ddu,knn,odin",
                                     detector_params={"knn": {"k": 5}}, batch_size=100)
    assert timing["max_abs_score_difference"] < 1e-5
    assert set(timing["naive_per_detector"]) == {"energy", "ddu", "knn", "odin"}
    assert timing["table"].own_passes == ["odin"]
    assert timing["shared_seconds"] > 0 and timing["naive_seconds"] > 0


def test_held_out_classes_and_user_arrays(model, tmp_path):
    test = load_dataset("digits:classes=5-9", "test")
    np.savez(tmp_path / "mine.npz", x=test.x.numpy()[:20])
    table = run_ood(model, IN, [str(tmp_path / "mine.npz"), test], "msp")
    assert [r["n_out"] for r in table.rows] == [20, len(test)]


def test_bad_ood_sets(model, tmp_path):
    np.savez(tmp_path / "big.npz", x=np.zeros((5, 1, 10, 10), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(1, 10, 10\).*shape \(1, 8, 8\)"):
        run_ood(model, IN, str(tmp_path / "big.npz"), "msp")
    info = DatasetInfo("nothing", "image", (1, 8, 8))
    empty = ArrayDataset(torch.zeros(0, 1, 8, 8), None, info)
    with pytest.raises(ValueError, match="'nothing' is empty"):
        run_ood(model, IN, [empty], "msp")
    with pytest.raises(ValueError, match="names nothing"):
        run_ood(model, IN, "", "msp")
    with pytest.raises(ValueError, match="Unknown OOD detector 'nope'"):
        run_ood(model, IN, "gaussian-noise", "msp,nope")
    with pytest.raises(ValueError, match="'fit_split'"):
        run_ood(model, IN, "gaussian-noise", "msp", fit_split="test")
    with pytest.raises(ValueError, match="not run"):
        run_ood(model, IN, "gaussian-noise", "msp", detector_params={"knn": {"k": 3}})


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        return self.out(self.body(x))


def test_feature_detectors_on_a_model_without_features():
    model = Plain().eval()
    with pytest.raises(ValueError, match=r"\['ddu'\] need penultimate features.*Plain.*msp"):
        run_ood(model, IN, "gaussian-noise", "msp,ddu")
    table = run_ood(model, IN, "gaussian-noise", "msp,ddu", layer="body")
    assert len(table.rows) == 2
    # "all" runs what the model allows: no feature detectors without features or a layer
    from evaluation.benchmarks.ood import _detector_names

    names = _detector_names("all", model=model)
    assert "msp" in names and "odin" in names
    assert not {"mahalanobis", "ddu", "knn", "featurenorm", "combined"} & set(names)
    assert "ddu" in _detector_names("all", model=model, layer="body")


def test_cli_main_and_params(model, tmp_path):
    ckpt = save_checkpoint(tmp_path / "model.pt", model, arch="nets", config=model.config)
    report = tmp_path / "report"
    rc = main(["--checkpoint", str(ckpt), "--in", IN, "--out", "digits:classes=5-9",
               "--detectors", "msp,knn", "--param", "knn.k=3", "--report-dir", str(report),
               "--device", "cpu", "--no-histograms", "--timing"])
    assert rc == 0
    assert (report / "ood.json").exists() and (report / "timing.json").exists()
    assert not list(report.glob("hist_*"))
    assert json.loads((report / "ood.json").read_text())["params"]["knn"]["k"] == 3
    assert parse_detector_params(["knn.k=10", "odin.epsilons=[0, 0.01]", "rapp.mode=sap"]) == {
        "knn": {"k": 10}, "odin": {"epsilons": (0, 0.01)}, "rapp": {"mode": "sap"}}
    with pytest.raises(ValueError, match="DETECTOR.NAME=VALUE"):
        parse_detector_params(["k=10"])


def test_multi_layer_features_through_the_runner_and_cli(model, tmp_path):
    from uncertainty.ood import DDU, extract_outputs

    table = run_ood(model, IN, "gaussian-noise", "ddu,msp", layer=["conv2", "fc2"])
    assert list(table.params["ddu"]["layer"]) == ["conv2", "fc2"]
    # the same scores as DDU fitted by hand on the pooled, concatenated features
    fit = load_dataset(IN, "train")
    test = load_dataset(IN, "test")
    feats = extract_outputs(model, fit, layer=("conv2", "fc2"))
    assert feats.features.shape[1] == model.conv2.out_channels + model.fc2.out_features
    det = DDU(model).fit_outputs(feats)
    expected = det.score_outputs(extract_outputs(model, test, layer=("conv2", "fc2")))
    torch.testing.assert_close(table.scores["ddu"]["in"], expected.cpu())
    # per-detector layers cannot differ from the shared pass's
    with pytest.raises(ValueError, match=r"share one forward pass.*\{'ddu': 'fc2'\}"):
        run_ood(model, IN, "gaussian-noise", "ddu,knn", detector_params={"ddu": {"layer": "fc2"}})
    with pytest.raises(ValueError, match="'layer' parameter of run_ood must be None"):
        run_ood(model, IN, "gaussian-noise", "ddu", layer=[])
    ckpt = save_checkpoint(tmp_path / "model.pt", model, arch="nets", config=model.config)
    rc = main(["--checkpoint", str(ckpt), "--in", IN, "--out", "gaussian-noise", "--detectors",
               "ddu", "--layer", "conv2, fc2", "--report-dir", str(tmp_path / "r"),
               "--device", "cpu", "--no-histograms"])
    assert rc == 0
    assert json.loads((tmp_path / "r" / "ood.json").read_text())["params"]["ddu"]["layer"] == [
        "conv2", "fc2"]


@pytest.mark.parametrize("text, expected", [
    ("fc2", "fc2"), ("conv2, fc2", ("conv2", "fc2")), ('["fc2"]', ("fc2",)),
    ('["conv2", "fc2"]', ("conv2", "fc2")),
    ("stages.1@2,stages.2", ("stages.1@2", "stages.2")), ("stages.2@3", "stages.2@3"),
])
def test_layer_flag(text, expected):
    from evaluation.benchmarks.ood import _parse_layer

    assert _parse_layer(text) == expected


@pytest.mark.parametrize("text", ["conv2,", "[", "[]", "[1]", '["fc2", ""]', "stages.1@0",
                                  "stages.1@x,stages.2", "@2", "fc2,fc2"])
def test_bad_layer_flag(text):
    import argparse

    from evaluation.benchmarks.ood import _parse_layer

    with pytest.raises(argparse.ArgumentTypeError, match="--layer"):
        _parse_layer(text)


def test_anchor_rows_compare_with_the_peers():
    from evaluation.benchmarks.ood import OODTable
    from evaluation.benchmarks.ood_table import ANCHORS, anchor_rows

    def table(in_data, aurocs):
        rows = [{"detector": d, "ood_set": o, "auroc": a, "aupr_in": a, "aupr_out": a,
                 "fpr95": 0.0, "detection_error": 0.0, "n_in": 1, "n_out": 1}
                for (i, o) in ANCHORS if i == in_data for d, a in aurocs.items()]
        return OODTable(in_data, [], list(aurocs), rows, 0.9, "train", 1, 1, {}, [], {})

    rows = anchor_rows({"mnist": table("mnist", {"energy": 0.9975, "msp": 0.5}),
                        "fashion-mnist": table("fashion-mnist", {"energy": 0.99})})
    assert [r["in -> out"] for r in rows] == [f"{i} -> {o}" for i, o in ANCHORS]
    assert rows[0]["peer best"] == "99.74 (Energy)" and rows[0]["target 1"] == "met"
    assert rows[0]["our best"] == "99.75 (energy)" and rows[0]["msp"] == pytest.approx(50)
    assert rows[1]["target 1"] == "missed"  # 99.75 < 100.0 (MaxLogit)
    assert rows[2]["peer best"] == "99.61 (class-wise GMM)" and rows[2]["target 1"] == "missed"


@pytest.mark.data
def test_ddu_resnet_table_reuses_checkpoints_and_reports_both_feature_choices(data_dir, tmp_path):
    from evaluation.benchmarks.ood_table import DDU_FEATURES, DDU_RESNET, _ddu_resnet, _markdown

    torch.manual_seed(0)
    model = nets.create("resnet", 1, 10, input_size=28, **{**DDU_RESNET, "width": 2}).eval()
    ckpt = tmp_path / "resnet8-sn-sbn-fashion-mnist-e1-seed0" / "model.pt"
    save_checkpoint(ckpt, model, arch="nets", config=model.config)
    report = _ddu_resnet(tmp_path, seeds=(0,), epochs=1, device="cpu", root=data_dir, quiet=True,
                         fit_size=2000)
    assert report["runs"][0]["training"] == {"reused": str(ckpt)}
    assert [row["features"] for row in report["summary"]] == list(DDU_FEATURES)
    for label, row in zip(DDU_FEATURES, report["summary"], strict=True):
        (ddu_mnist,) = [r["auroc"] for r in report["runs"][0]["tables"][label]["rows"]
                        if r["detector"] == "ddu" and r["ood_set"] == "mnist"]
        assert row["mean"] == row["min"] == pytest.approx(100 * ddu_mnist)
    text = _markdown({"seed": 0, "minutes": 1.0, "ddu_resnet": report}, {})
    assert "features stages.1+stages.2" in text and "Fashion-MNIST -> MNIST, per seed" in text


# --------------------------------------------------------------------------- density models
DENSITY = "likelihood,likelihood-ratio,complexity,typicality"


@pytest.fixture(scope="module")
def nade():
    """A small NADE of the binarised digits 0-4, trained for a few epochs."""
    from generative import train_density

    model, _ = train_density("nade", IN, epochs=3, batch_size=50, lr=1e-2, test=False,
                             options={"hidden": 16}, seed=0, quiet=True)
    return model.eval()


def test_density_only_run_scores_prepared_inputs(nade):
    from evaluation.benchmarks.ood import density_inputs

    table = run_ood(None, IN, OUT, "all", density=nade,
                    detector_params={"likelihood-ratio": {"epochs": 1},
                                     "typicality": {"bootstraps": 100}})
    assert table.detectors == DENSITY.split(",") and table.accuracy is None
    assert len(table.rows) == 8 and all(0 <= r["auroc"] <= 1 for r in table.rows)
    test = density_inputs(load_dataset(IN, "test"), nade, "test")
    assert set(test.x.unique().tolist()) == {0.0, 1.0}  # the fixed binarisation
    with torch.no_grad():
        bpd = -nade.log_prob(test.x).double() / (64 * np.log(2))
    torch.testing.assert_close(table.scores["likelihood"]["in"], bpd)
    # the likelihood ratio trained a background model of NADE's architecture in fit
    assert table.params["likelihood-ratio"]["fit_background"] is True
    # a binary model of digits tells held-out digits from noise
    noise = {r["detector"]: r["auroc"] for r in table.rows if r["ood_set"] == "gaussian-noise"}
    assert noise["likelihood"] > 0.9


def test_classifier_and_density_detectors_share_one_table(model, nade, tmp_path):
    table = run_ood(model, IN, "gaussian-noise", "msp,likelihood,typicality", density=nade,
                    out=tmp_path, histograms=False)
    assert table.detectors == ["msp", "likelihood", "typicality"]
    assert table.accuracy is not None and set(table.timings["density"]) == {
        f"{IN} (train)", f"{IN} (test)", "gaussian-noise"}
    assert json.loads((tmp_path / "ood.json").read_text())["detectors"] == table.detectors
    # "all" with both models names every detector; with one model, only its detectors
    from evaluation.benchmarks.ood import _detector_names
    from uncertainty.ood import DETECTORS

    everything = _detector_names("all", classifier=True, density=True, model=model)
    assert everything == [n for n in DETECTORS if n not in ("mc-dropout",
                                                            "ensemble-disagreement")]
    assert _detector_names("all", classifier=False, density=True) == DENSITY.split(",")
    assert "likelihood" not in _detector_names("all", model=model)
    # the epistemic detectors join "all" for models they apply to
    from dunno.ensemble import EnsembleClassifier

    dropout_net = nets.create("lenet5", 1, 5, input_size=8, dropout=0.5)
    assert "mc-dropout" in _detector_names("all", model=dropout_net)
    ensemble = EnsembleClassifier([model, model])
    assert "ensemble-disagreement" in _detector_names("all", model=ensemble)


def test_density_cli_with_a_background_checkpoint(nade, tmp_path):
    path = save_checkpoint(tmp_path / "nade.pt", nade, arch=nade.arch, config=nade.config)
    rc = main(["--density", str(path), "--background", str(path), "--in", IN, "--out",
               "gaussian-noise", "--detectors", "likelihood-ratio", "--report-dir",
               str(tmp_path / "r"), "--no-histograms", "--timing"])
    assert rc == 0
    rows = json.loads((tmp_path / "r" / "ood.json").read_text())["rows"]
    assert rows[0]["auroc"] == pytest.approx(0.5)  # a model against itself: all scores 0
    timing = json.loads((tmp_path / "r" / "timing.json").read_text())
    assert timing["max_abs_score_difference"] < 1e-9


def test_density_runner_errors(model, nade):
    with pytest.raises(ValueError, match="needs a classifier.*or both"):
        run_ood(None, IN, OUT)
    with pytest.raises(ValueError, match="scores through a density model"):
        run_ood(model, IN, OUT, "likelihood")
    with pytest.raises(ValueError, match="scores through a classifier"):
        run_ood(None, IN, OUT, "msp", density=nade)
    with pytest.raises(ValueError, match="--density"):
        main(["--in", IN, "--out", "gaussian-noise"])
