"""generative.training / scoring / pixels and ``dunno density``: train / score / sample,
outputs, budgets, resumption and the errors a user meets (grey data for a binary model,
wrong image size, data that is not 8-bit)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from dunno.checkpoints import load_checkpoint
from dunno.cli import main
from dunno.errors import DataError
from generative import (
    DensityConfig,
    draw_samples,
    fixed_binarize,
    load_density_model,
    score_density,
    train_density,
)
from generative.autoregressive import NADE, PixelCNN
from generative.plots import sample_grid

pytestmark = pytest.mark.one_thread


TINY_NADE = {"hidden": 8}


def test_train_writes_checkpoint_and_scores(tmp_path):
    model, history = train_density("nade", "digits", 2, out=tmp_path, options=TINY_NADE,
                                   lr=3e-3)
    assert isinstance(model, NADE) and not model.training
    assert len(history.epochs) == 2 and history.best_epoch in (1, 2)
    assert all(k in history.epochs[-1] for k in ("loss", "val_loss", "val_bpd", "minutes"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "training_state.pt"]
    m = history.metrics
    assert m["test_n"] == 360 and m["test_nll_nats"] > 0
    assert m["test_bits_per_dim"] == pytest.approx(m["test_nll_nats"] / (64 * np.log(2)))
    assert "dynamic" in m["binarization"] and not m["budget_exhausted"]
    assert history.test_scores.shape == (360,)
    assert history.test_scores.mean() == pytest.approx(m["test_nll_nats"])
    # the checkpoint rebuilds the model exactly and carries the metrics
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt.arch == "generative/nade" and ckpt.meta["metrics"]["test_n"] == 360
    reloaded = load_density_model(tmp_path / "model.pt")
    nll, summary = score_density(reloaded, "digits", binarize="fixed")
    assert summary["nll_nats"] == pytest.approx(m["test_nll_nats"], rel=1e-6)
    np.testing.assert_allclose(nll, history.test_scores, rtol=1e-6)


def test_training_lowers_the_nll():
    _, history = train_density("nade", "digits", 4, options={"hidden": 16}, lr=1e-2,
                               test=False)
    val = history["val_loss"]
    assert val[-1] < val[0] - 1.0  # nats


def test_time_budget_stops_training_after_the_batch_under_way():
    _, history = train_density("pixelcnn", "digits", 50, max_minutes=1e-6,
                               options={"hidden": 4, "layers": 1}, test=False)
    assert len(history.epochs) == 1 and history.stopped_for_budget
    assert history.metrics["train_examples"] == 100  # one batch, then the budget is spent
    assert history.metrics["budget_exhausted"]


def test_examples_per_epoch_and_val_size():
    _, history = train_density("nade", "digits", 3, examples_per_epoch=250, val_size=50,
                               options=TINY_NADE, test=False)
    assert [e["examples"] for e in history.epochs] == [250.0, 500.0, 750.0]


def test_resume_continues_the_same_run(tmp_path):
    kwargs = dict(options=TINY_NADE, test=False, out=tmp_path)
    _, full = train_density("nade", "digits", 2, **kwargs, lr=3e-3)
    _, first = train_density("nade", "digits", 1, **{**kwargs, "out": tmp_path / "r"}, lr=3e-3)
    _, resumed = train_density("nade", "digits", 2, **{**kwargs, "out": tmp_path / "r"},
                               lr=3e-3, resume=True)
    assert len(resumed.epochs) == 2
    assert resumed.epochs[0]["val_loss"] == first.epochs[0]["val_loss"]
    assert resumed.epochs[1]["val_loss"] == pytest.approx(full.epochs[1]["val_loss"], rel=1e-6)


def test_grey_data_for_a_binary_model_needs_binarize():
    model = NADE((1, 8, 8), hidden=4)
    with pytest.raises(ValueError, match="binarize='fixed'"):
        score_density(model, "digits")
    with pytest.raises(ValueError, match="Binarize them first"):
        train_density("nade", "digits", 1, binarize="none", options=TINY_NADE)
    nll, summary = score_density(model, "digits", "val", binarize="fixed")
    assert nll.shape == (180,) and summary["split"] == "val"


def test_wrong_image_size_for_a_checkpoint(tmp_path):
    model, history = train_density("nade", "digits", 1, out=tmp_path, options=TINY_NADE,
                                   test=False)
    wrong = NADE((1, 5, 5), hidden=4)
    with pytest.raises(ValueError, match=r"trained on 1x5x5 images but 'digits' has 1x8x8"):
        score_density(wrong, "digits", binarize="fixed")
    with pytest.raises(ValueError, match=r"built for images of shape \(N, 1, 8, 8\)"):
        load_density_model(history.checkpoint).log_prob(torch.zeros(2, 1, 28, 28))


def test_8bit_models_refuse_data_that_is_not_8bit():
    with pytest.raises(DataError, match="not hold 8-bit intensities"):
        train_density("pixelcnn", "digits", 1, options={"pixels": "8bit", "hidden": 4})


def test_fixed_binarize_is_a_seeded_bernoulli_draw():
    x = torch.full((2000,), 0.3)
    a, b = fixed_binarize(x, 7), fixed_binarize(x, 7)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert a.mean().item() == pytest.approx(0.3, abs=0.04)
    ones = torch.tensor([0.0, 1.0, 1.0])
    assert torch.equal(fixed_binarize(ones, 1), ones)


def test_draw_samples_is_seeded_and_sample_grid_writes_a_png(tmp_path):
    model = PixelCNN((1, 4, 4), hidden=4, layers=1)
    samples = draw_samples(model, 6, seed=3)
    assert samples.shape == (6, 1, 4, 4) and torch.equal(samples, draw_samples(model, 6, seed=3))
    sample_grid(samples, pixels=model.pixels, path=tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="Unknown DensityConfig key"):
        DensityConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="'binarize' parameter"):
        train_density("nade", "digits", 1, binarize="threshold")
    with pytest.raises(ValueError, match="Unknown density model"):
        train_density("glow", "digits", 1)
    with pytest.raises(ValueError, match="'max_minutes' parameter"):
        train_density("nade", "digits", 1, max_minutes=0)


def test_command_line_train_score_sample(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["density", "train", "nade", "--data", "digits", "--epochs", "2", "--option",
                 "hidden=8", "--lr", "3e-3", "--samples", "4", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "test NLL" in capsys.readouterr().out
    for name in ("model.pt", "training_state.pt", "history.json", "learning_curve.csv",
                 "learning_curve.png", "summary.json", "test_scores.npy", "samples.png"):
        assert (out / name).is_file(), name
    with open(out / "learning_curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and float(rows[1]["val_loss"]) > 0
    summary_json = json.loads((out / "summary.json").read_text())
    history_json = json.loads((out / "history.json").read_text())
    assert summary_json["config"]["model"] == "nade" and history_json["stopped_for_budget"] is False
    test_nll = summary_json["metrics"]["test_nll_nats"]
    assert main(["density", "score", "--checkpoint", str(out / "model.pt"), "--data", "digits",
                 "--binarize", "fixed", "--out", str(tmp_path / "score")]) == 0
    scores = np.load(tmp_path / "score" / "scores.npy")
    assert scores.shape == (360,)
    np.testing.assert_allclose(scores, np.load(out / "test_scores.npy"), rtol=1e-6)
    score = json.loads((tmp_path / "score" / "score.json").read_text())
    assert score["nll_nats"] == pytest.approx(test_nll, rel=1e-6)
    printed = capsys.readouterr().out
    assert "bits/dim" in printed and f"{score['bits_per_dim']:.4f}" in printed
    (out / "samples.png").unlink()
    assert main(["density", "sample", "--checkpoint", str(out / "model.pt"), "-n", "4"]) == 0
    assert (out / "samples.png").is_file() and "wrote 4 samples" in capsys.readouterr().out


def test_command_line_groups_without_a_subcommand_print_usage(capsys):
    for group in ("density", "gan"):
        assert main([group]) == 2
        assert f"usage: dunno {group}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["density", "train", "--help"])
    assert "(default: 100)" in capsys.readouterr().out  # --batch-size
    # the command modules are the only entry points: no runner parses these options again
    import importlib.util

    for runner in ("evaluation.benchmarks.density", "evaluation.benchmarks.gan"):
        assert importlib.util.find_spec(runner) is None


@pytest.mark.data
def test_8bit_pixelcnn_on_a_slice_of_mnist(data_dir, tmp_path):
    model, history = train_density(
        "pixelcnn", "mnist:n=64", 1, root=data_dir, options={"pixels": "8bit", "hidden": 4,
                                                             "layers": 1},
        batch_size=32,
    )
    m = history.metrics
    assert model.pixels == "8bit" and m["test_n"] == 64
    # untrained 256-way softmax: about log(256) nats per pixel, far from 0
    assert 2.0 < m["test_bits_per_dim"] < 9.0


def test_bench_nade_smoke_one_pass_agrees_with_naive_and_is_faster():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_nade.py"
    spec = importlib.util.spec_from_file_location("bench_nade", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--models"])
    assert result["nade"]["max_abs_diff_nats"] < 1e-2
    assert result["nade"]["ratio"] > 1.0
    # the learning curves' reference NADE (written independently) is the library's ReLU NADE
    torch.manual_seed(0)
    ref = bench.ReferenceReLUNADE(12, 5).double()
    nade = NADE(12, hidden=5).double()
    with torch.no_grad():
        for name in ("W", "V", "b", "c"):
            getattr(nade, name).copy_(getattr(ref, name) + 0.3 * torch.randn_like(
                getattr(ref, name)))
            getattr(ref, name).copy_(getattr(nade, name))
    x = (torch.rand(9, 12, dtype=torch.float64) < 0.4).double()
    torch.testing.assert_close(ref.log_prob(x), nade.log_prob(x), rtol=0, atol=1e-12)
    with torch.no_grad():  # the shared-state pass too
        torch.testing.assert_close(ref.log_prob(x), nade.log_prob(x), rtol=0, atol=1e-12)
    assert {r["model"] for r in result["models"]} == {"nade", "pixelcnn", "row-lstm",
                                                      "diagonal-bilstm"}


def test_cpu_budget_clock_is_what_the_budget_counts(monkeypatch):
    from dunno import training

    ticks = iter(range(0, 10**6, 20))  # a fake CPU clock: 20 s per reading
    monkeypatch.setitem(training.BUDGET_CLOCKS, "cpu", lambda: float(next(ticks)))
    _, history = train_density("nade", "digits", 50, max_minutes=5.0, budget_clock="cpu",
                               options=TINY_NADE, test=False)
    # a step spans four readings (fit's, and the schedule's two inside it): 60 s of the
    # fake clock, so 5 steps spend the 300 s budget
    assert history.stopped_for_budget and history.steps == 5
    assert history.train_seconds == 300.0
    _, wall = train_density("nade", "digits", 1, max_minutes=1.0, options=TINY_NADE, test=False)
    assert not wall.stopped_for_budget
    with pytest.raises(ValueError, match="'budget_clock'.*'wall', 'cpu'.*'gpu'"):
        train_density("nade", "digits", 1, budget_clock="gpu", options=TINY_NADE, test=False)
