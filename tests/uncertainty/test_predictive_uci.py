"""The UCI benchmark (``uncertainty.predictive.uci``): the split files, the verdict rule, a
quick end-to-end run. The ``dunno uci`` command and its files: tests/dunno/test_cli.py."""

from __future__ import annotations

import numpy as np
import pytest

from dunno.data import load_dataset
from uncertainty.predictive import UCITable, run_uci
from uncertainty.predictive.uci import PUBLISHED, verdict

pytestmark = pytest.mark.one_thread


def test_verdict_rule():
    assert verdict(-2.40, 0.05, -2.40, 0.04) == "within"
    assert verdict(-2.49, 0.03, -2.40, 0.04) == "within"  # 0.09 < 2 * sqrt(0.03² + 0.04²)
    assert verdict(-2.52, 0.03, -2.40, 0.04) == "worse"
    assert verdict(-2.20, 0.03, -2.40, 0.04) == "better"
    assert verdict(4.40, float("nan"), 4.45, 0.0) == "worse"


def test_published_anchors_cover_the_nine_datasets():
    for anchor in ("mc-dropout", "ensemble"):
        assert len(PUBLISHED[anchor]) == 9
    assert PUBLISHED["mc-dropout"]["bostonHousing"] == ((2.90, 0.18), (-2.40, 0.04))
    assert PUBLISHED["ensemble"]["naval-propulsion-plant"][1] == (5.63, 0.05)


@pytest.mark.data
@pytest.mark.parametrize(("name", "k"), [("yacht", 0), ("yacht", 19), ("bostonHousing", 7)])
def test_loader_splits_match_the_index_files(data_dir, name, k):
    folder = data_dir / "uci" / name
    data = np.loadtxt(folder / "data.txt")
    features = np.loadtxt(folder / "index_features.txt", dtype=int)
    target = int(np.loadtxt(folder / "index_target.txt"))
    for split in ("train", "test"):
        index = np.loadtxt(folder / f"index_{split}_{k}.txt", dtype=int)
        ds = load_dataset(f"uci/{name}", split, data_dir, k=k)
        np.testing.assert_allclose(ds.y_original[:, 0].numpy(), data[index, target], rtol=1e-5,
                                   atol=1e-4)
        x = ds.x.numpy() * ds.x_std.numpy() + ds.x_mean.numpy()
        np.testing.assert_allclose(x, data[index][:, features], rtol=1e-4, atol=1e-4)
    train = np.loadtxt(folder / f"index_train_{k}.txt", dtype=int)
    test = np.loadtxt(folder / f"index_test_{k}.txt", dtype=int)
    assert not set(train) & set(test) and len(train) + len(test) == len(data)


@pytest.mark.data
def test_quick_run_returns_a_table(data_dir):
    table = run_uci("mc-dropout", "yacht", splits=2, root=data_dir, quick=True)
    assert isinstance(table, UCITable) and table.anchors == ("mc-dropout",)
    (row,) = table.rows
    assert row["dataset"] == "Yacht" and row["n_splits"] == 2
    assert np.isfinite(row["rmse"]) and np.isfinite(row["test_ll"])
    assert row["vs_mc-dropout"] in ("better", "within", "worse")
    assert len(table.splits["yacht"]["test_ll"]) == 2
    assert table.columns[:3] == ["dataset", "n_splits", "rmse"]
    assert "| Yacht |" in table.to_markdown()
    assert table.as_dict()["summary"] == table.summary()
    # the quick budget's 20 MC samples: a mixture small enough for the CRPS column
    assert np.isfinite(row["crps"]) and row["crps"] > 0 and "crps" in table.columns


def test_crps_column_is_nan_for_large_mixtures_only():
    import torch

    from uncertainty.predictive import RegressionPrediction
    from uncertainty.predictive.uci import CRPS_MAX_COMPONENTS, _scores

    g = torch.Generator().manual_seed(0)
    y = torch.randn(5, 1, generator=g, dtype=torch.float64)
    for t in (3, CRPS_MAX_COMPONENTS + 1):
        pred = RegressionPrediction.from_samples(
            torch.randn(t, 5, 1, generator=g, dtype=torch.float64), 0.5)
        crps = _scores(pred, y)[3]
        if t <= CRPS_MAX_COMPONENTS:
            assert crps == pytest.approx(float(pred.crps(y).mean()), rel=1e-12)
        else:
            assert np.isnan(crps)
