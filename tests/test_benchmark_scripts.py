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
    assert timing["shared_cpu_seconds"] > 0 and timing["naive_cpu_seconds"] > 0


def test_the_shared_knn_search_gives_the_naive_scores(model):
    bench = _load("bench_ood_shared")
    params = {"knn": {"k": 5}, "combined": {"components": ("gen", ("knn", {"k": 5}))}}
    timing = bench.compare_shared_vs_naive(model, IN, "gaussian-noise", "knn,combined",
                                           detector_params=params, batch_size=100, warmup=60)
    assert timing["max_abs_score_difference"] <= 1e-12
    assert timing["shared_searches"]["searches"] == 2  # test set and the OOD set
    assert timing["shared_searches"]["reused"] == 4  # by kNN and by the combination


def test_bench_ood_shared_main_with_a_density_model(tmp_path, capsys):
    from generative import train_density

    nade, _ = train_density("nade", IN, epochs=2, batch_size=50, lr=1e-2, test=False,
                            options={"hidden": 8}, seed=0)
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
                                   quiet=True, fit_size=2000, out_sets=("mnist",))
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


def test_default_summary_reports_the_default_against_target_4():
    from uncertainty.ood import OODTable

    ood_table = _load("ood_table")

    def table(aurocs):
        rows = [{"detector": d, "ood_set": o, "auroc": a, "aupr_in": a, "aupr_out": a,
                 "fpr95": 0.0, "detection_error": 0.0, "n_in": 1, "n_out": 1}
                for d, per_set in aurocs.items() for o, a in per_set.items()]
        params = {"combined": {"components": ["knn"], "reduce": "max"}}
        return OODTable("x", [], list(aurocs), rows, 0.9, "train", 1, 1, {}, [], params)

    tables = {"mnist": table({"combined": {"a": 0.995, "b": 0.985}, "msp": {"a": 0.999,
                                                                          "b": 0.999}}),
              "fashion-mnist": table({"combined": {"a": 0.999}, "msp": {"a": 0.90}})}
    summary = ood_table.default_summary(tables)
    assert [r["detector"] for r in summary["rows"]] == ["combined", "msp"]
    assert summary["rows"][0]["mnist"] == pytest.approx(98.5)
    assert summary["rows"][1]["worst"] == pytest.approx(90.0)
    assert summary["target"] == "missed" and summary["params"]["reduce"] == "max"
    assert summary["below_target"] == [{"in": "mnist", "out": "b", "auroc": pytest.approx(98.5)}]
    assert "letters" in ood_table.SETTINGS["mnist"] and "letters" in ood_table.SETTINGS[
        "fashion-mnist"]


def test_select_default_smoke(model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model, arch="nets", config=model.config)
    report = _load("select_default").run_selection(
        tmp_path / "out", data=(IN,), checkpoints={IN: str(path)}, components=["msp", "knn"],
        kinds=("permute", "noise"), quiet=True)
    assert report["default"]["candidate"] == report["merged"]["selected"]
    assert len(report["merged"]["rows"]) == 4 and report["merged"]["kinds"] == [
        f"{IN}/permute", f"{IN}/noise"]
    assert (tmp_path / "out" / "selection-seed0.md").is_file()
    assert (tmp_path / "out" / "selection-seed0.json").is_file()


def test_bench_logging_smoke_times_every_setting_on_the_same_training(capsys):
    rows = _load("bench_logging").main(["--smoke"])
    assert [r["setting"] for r in rows][0] == "off" and rows[0]["ratio"] == 1.0
    assert len(rows) == 6 and all(r["best_s"] > 0 for r in rows)
    assert rows[3]["hook ms/epoch"] > 0 and rows[2]["hook ms/epoch"] == 0  # history: in the hook
    printed = capsys.readouterr().out
    assert "terminal bar" in printed and "us/step" in printed


def test_openood_protocol_groups_and_published_columns():
    from uncertainty.ood import OODTable

    openood = _load("openood_cifar")
    sets = ["cifar100", "svhn", "mnist", "gaussian-noise"]
    aurocs = {"msp": [0.80, 0.90, 0.70, 1.0], "ddu": [0.5, 0.6, 0.7, 0.8]}
    rows = [{"detector": d, "ood_set": s, "auroc": a, "aupr_in": a, "aupr_out": a, "fpr95": 0.0,
             "detection_error": 0.0, "n_in": 1, "n_out": 1}
            for d, values in aurocs.items() for s, a in zip(sets, values, strict=True)]
    table = OODTable("cifar10", sets, list(aurocs), rows, 0.9, "train", 1, 1, {}, [], {})
    msp, ddu = openood.grouped_rows(table)
    assert msp["cifar100"] == pytest.approx(80) and msp["near mean"] == pytest.approx(80)
    assert msp["far mean"] == pytest.approx((90 + 70 + 100) / 3)
    assert msp["OpenOOD near"] == "88.03 ± 0.25" and msp["OpenOOD far"] == "90.73 ± 0.43"
    assert ddu["far mean"] == pytest.approx(70) and ddu["OpenOOD near"] is None
    # a group with none of its sets run has no mean
    only_far = openood.grouped_rows(table, near=("tin",), far=("svhn",))[0]
    assert only_far["near mean"] is None and only_far["far mean"] == pytest.approx(90)
    assert set(openood.OPENOOD_V15_CIFAR10) == {"msp", "maxlogit", "energy", "odin",
                                                "mahalanobis", "knn", "react", "dice", "scale"}


def test_ood_table_in_cifar10_smoke_on_tiny_files(tmp_path, monkeypatch):
    from tiny_colour import install, install_mnist

    from dunno.data import load_dataset, resize_images

    root = tmp_path / "data"
    install(root, monkeypatch)
    mnist = install_mnist(root, monkeypatch)
    out = tmp_path / "out"
    report = _load("ood_table").main(["--in", "cifar10", "--smoke", "--data-dir", str(root),
                                      "--out", str(out), "--quiet"])
    detectors = [r["detector"] for r in report["rows"]]
    assert detectors == ["msp", "maxlogit", "energy", "mahalanobis", "knn", "react", "dice",
                         "scale"]
    for row in report["rows"]:
        per_set = [row[s] for s in ("svhn", "mnist", "gaussian-noise")]
        assert row["far mean"] == pytest.approx(sum(per_set) / 3)
        assert row["near mean"] == pytest.approx(row["cifar100"])
        assert row["OpenOOD near"] and row["OpenOOD far"]
    assert report["table"]["n_test"] == 6  # the tiny CIFAR-10 test file
    model_file = out / "resnet18-cifar-cifar10-seed0" / "model.pt"
    assert model_file.is_file() and (out / "openood-cifar10-seed0.md").is_file()
    assert "OpenOOD" in (out / "openood-cifar10-seed0.md").read_text()
    # MNIST as the far set sees it: 32x32, grey repeated into three equal channels
    as_seen = _load("openood_cifar").mnist_32_rgb(root)
    expected = resize_images(load_dataset("mnist", "test", root).x, 32, 3)
    assert as_seen.x.shape == (len(mnist), 3, 32, 32) and torch.equal(as_seen.x, expected)
    assert torch.equal(as_seen.x[:, 0], as_seen.x[:, 2])
    # the same model again through --checkpoint gives the same numbers
    again = _load("openood_cifar").main(["--checkpoint", str(model_file), "--smoke",
                                         "--data-dir", str(root), "--out",
                                         str(tmp_path / "again"), "--quiet", "--far", "svhn",
                                         "--detectors", "msp,knn"])
    first = {r["detector"]: r["svhn"] for r in report["rows"] if r["detector"] in ("msp", "knn")}
    assert {r["detector"]: r["svhn"] for r in again["rows"]} == pytest.approx(first)
    assert again["training"] == {"checkpoint": str(model_file)}


def test_bench_knn_search_matches_the_exact_search(tmp_path, capsys):
    rows = _load("bench_knn_search").main(["--bank", "300", "--queries", "40", "--dim", "12",
                                           "--k", "5", "--repeat", "1",
                                           "--json", str(tmp_path / "knn.json")])
    assert [r["dtype"] for r in rows] == ["float32", "float64"]
    for row in rows:
        assert row["current vs exact"] == 0.0
        assert row["previous s"] > 0 and row["current s"] > 0
    assert (tmp_path / "knn.json").is_file() and "ratio" in capsys.readouterr().out


def test_bench_pixelrnn_smoke_agrees_with_the_reference(capsys):
    result = _load("bench_pixelrnn").main(["--smoke"])
    assert result["check"]["log_prob_max_rel_diff"] < 1e-5
    assert result["check"]["grad_max_rel_diff"] < 1e-4
    assert result["new_s"] > 0 and result["reference_s"] > 0
    assert result["ratio"] == result["reference_s"] / result["new_s"]
    out = capsys.readouterr().out
    assert "speed-up" in out and "cell arithmetic" in out
    if result["cells"] is not None:
        cells = result["cells"]
        assert cells["cells_ratio"] == cells["eager_cpu_s"] / cells["compiled_cpu_s"]


def test_infogan_seeds_scores_along_the_budget(tmp_path, capsys):
    clf = nets.create("lenet5", 1, 10, input_size=8).eval()
    path = save_checkpoint(tmp_path / "clf.pt", clf, arch="nets", config=clf.config)
    rows = _load("infogan_seeds").main([
        "--classifier", str(path), "--data", "digits", "--minutes", "0.004", "--every",
        "0.002", "--batch-size", "32", "--eval-samples", "40", "--out", str(tmp_path),
        "--option", "noise_dim=4", "--option", "width=4", "--option", "hidden=8"])
    assert len(rows) >= 2 and rows[-1]["cpu_minutes"] >= 0.004
    assert [r["steps"] for r in rows] == sorted(r["steps"] for r in rows)
    assert all(0.0 <= r["code_accuracy"] <= 1.0 for r in rows)
    assert rows[0]["options"] == {"noise_dim": 4, "width": 4, "hidden": 8}
    assert (tmp_path / "model.pt").is_file()
    assert capsys.readouterr().out.count("code_accuracy") == len(rows)
