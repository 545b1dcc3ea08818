"""The reproduction and timing scripts of benchmarks/ (OOD anchor table, shared-vs-naive OOD
passes, backbone sweep, Diagonal BiLSTM throughput), loaded by path and run at tiny sizes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dunno import nets
from dunno.checkpoints import save_checkpoint

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
IN = "digits:classes=0-4"

pytestmark = pytest.mark.one_thread


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nets.create("lenet5", 1, 5, input_size=8).eval()


def test_shared_passes_give_the_naive_scores(model):
    bench = _load("bench_ood_shared")
    timing = bench.compare_shared_vs_naive(model, IN, "gaussian-noise", "energy,ddu,knn,odin",
                                           detector_params={"knn": {"k": 5}}, batch_size=100)
    assert timing["max_abs_score_difference"] < 1e-5
    assert set(timing["naive_per_detector"]) == {"energy", "ddu", "knn", "odin"}
    assert timing["table"].own_passes == ["odin"]
    assert timing["shared_seconds"] > 0 and timing["naive_seconds"] > 0


def test_bench_ood_shared_main_with_a_density_model(tmp_path, capsys):
    from generative import train_density

    nade, _ = train_density("nade", IN, epochs=2, batch_size=50, lr=1e-2, test=False,
                            options={"hidden": 8}, seed=0, quiet=True)
    path = save_checkpoint(tmp_path / "nade.pt", nade, arch=nade.arch, config=nade.config)
    report = _load("bench_ood_shared").main([
        "--density", str(path), "--background", str(path), "--in", IN, "--out",
        "gaussian-noise", "--detectors", "likelihood,likelihood-ratio",
        "--json", str(tmp_path / "timing.json")])
    assert report["max_abs_score_difference"] < 1e-9
    assert (tmp_path / "timing.json").is_file()
    assert "ratio" in capsys.readouterr().out


def test_anchor_rows_compare_with_the_peers():
    from uncertainty.ood import OODTable

    ood_table = _load("ood_table")
    anchors = ood_table.ANCHORS

    def table(in_data, aurocs):
        rows = [{"detector": d, "ood_set": o, "auroc": a, "aupr_in": a, "aupr_out": a,
                 "fpr95": 0.0, "detection_error": 0.0, "n_in": 1, "n_out": 1}
                for (i, o) in anchors if i == in_data for d, a in aurocs.items()]
        return OODTable(in_data, [], list(aurocs), rows, 0.9, "train", 1, 1, {}, [], {})

    rows = ood_table.anchor_rows({"mnist": table("mnist", {"energy": 0.9975, "msp": 0.5}),
                                  "fashion-mnist": table("fashion-mnist", {"energy": 0.99})})
    assert [r["in -> out"] for r in rows] == [f"{i} -> {o}" for i, o in anchors]
    assert rows[0]["peer best"] == "99.74 (Energy)" and rows[0]["target 1"] == "met"
    assert rows[0]["our best"] == "99.75 (energy)" and rows[0]["msp"] == pytest.approx(50)
    assert rows[1]["target 1"] == "missed"  # 99.75 < 100.0 (MaxLogit)
    assert rows[2]["peer best"] == "99.61 (class-wise GMM)" and rows[2]["target 1"] == "missed"


@pytest.mark.data
def test_ddu_resnet_table_reuses_checkpoints_and_reports_both_feature_choices(data_dir, tmp_path):
    ood_table = _load("ood_table")
    features = ood_table.DDU_FEATURES

    torch.manual_seed(0)
    model = nets.create("resnet", 1, 10, input_size=28,
                        **{**ood_table.DDU_RESNET, "width": 2}).eval()
    ckpt = tmp_path / "resnet8-sn-sbn-fashion-mnist-e1-seed0" / "model.pt"
    save_checkpoint(ckpt, model, arch="nets", config=model.config)
    report = ood_table._ddu_resnet(tmp_path, seeds=(0,), epochs=1, device="cpu", root=data_dir,
                                   quiet=True, fit_size=2000)
    assert report["runs"][0]["training"] == {"reused": str(ckpt)}
    assert [row["features"] for row in report["summary"]] == list(features)
    for label, row in zip(features, report["summary"], strict=True):
        (ddu_mnist,) = [r["auroc"] for r in report["runs"][0]["tables"][label]["rows"]
                        if r["detector"] == "ddu" and r["ood_set"] == "mnist"]
        assert row["mean"] == row["min"] == pytest.approx(100 * ddu_mnist)
    text = ood_table._markdown({"seed": 0, "minutes": 1.0, "ddu_resnet": report}, {})
    assert "features stages.1+stages.2" in text and "Fashion-MNIST -> MNIST, per seed" in text


def test_backbone_sweep_smoke(tmp_path, capsys):
    rows = _load("backbone_sweep").main(["--backbones", "lenet5", "--epochs", "1",
                                         "--device", "cpu", "--out", str(tmp_path)])
    assert [r["backbone"] for r in rows] == ["lenet5"] and 0.0 <= rows[0]["test_acc"] <= 1.0
    assert (tmp_path / "backbones.csv").is_file()


def test_bench_pixelrnn_smoke_agrees_with_the_reference(capsys):
    result = _load("bench_pixelrnn").main(["--smoke"])
    assert result["check"]["log_prob_max_rel_diff"] < 1e-5
    assert result["check"]["grad_max_rel_diff"] < 1e-4
    assert result["new_s"] > 0 and result["reference_s"] > 0
    assert result["ratio"] == result["reference_s"] / result["new_s"]
    assert "speed-up" in capsys.readouterr().out
