"""The OOD suite (uncertainty.ood.run_ood): the table, its files, shared passes, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dunno import nets
from dunno.data import ArrayDataset, DatasetInfo, load_dataset
from evaluation.benchmarks.ood import density_inputs_for, write_ood_report
from uncertainty.ood import run_ood
from uncertainty.ood.suite import resolve_detectors
from uncertainty.ood.table import METRICS

IN = "digits:classes=0-4"
OUT = "digits:classes=5-9,gaussian-noise"
CHEAP = "msp,energy,mahalanobis,knn,featurenorm"


pytestmark = pytest.mark.one_thread


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nets.create("lenet5", 1, 5, input_size=8).eval()


def test_run_ood_table_and_files(model, tmp_path):
    table = run_ood(model, IN, OUT, CHEAP, detector_params={"knn": {"k": 5}}, batch_size=100)
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
    markdown = table.to_markdown()  # every metric in percent, the unit in the header
    assert "| detector | OOD set | AUROC (%) | AUPR-In (%) |" in markdown
    first = table.rows[0]
    assert f"| msp | {first['ood_set']} | {100 * first['auroc']:.2f} |" in markdown
    assert "gaussian-noise" in table.to_markdown("fpr95")
    assert set(table.best("auroc")) == set(table.out_sets)
    # one shared pass per dataset, nothing else ran the model
    assert len(table.timings["forward"]) == 4 and table.own_passes == []
    assert table.timings["total"] >= table.timings["shared_forward_total"]
    assert "AUROC (%):" in table.summary() and "own passes: none" in table.summary()

    files = write_ood_report(table, tmp_path)
    assert set(files) == set(tmp_path.iterdir()) and files[-1] == tmp_path / "ood.json"
    names = {p.name for p in tmp_path.iterdir()}
    assert {"ood.json", "ood.csv", "auroc.csv", "roc_digits-classes-5-9.png",
            "roc_gaussian-noise.png", "hist_knn_gaussian-noise.png"} <= names
    saved = json.loads((tmp_path / "ood.json").read_text())
    assert saved["accuracy"] == table.accuracy and len(saved["rows"]) == 10
    # auroc.csv holds fractions, like ood.csv: the same AUROC as the rows
    import csv
    with open(tmp_path / "auroc.csv", newline="") as f:
        pivot = list(csv.DictReader(f))
    row = next(r for r in table.rows if r["ood_set"] == "gaussian-noise")
    cell = next(p for p in pivot if p["detector"] == row["detector"])["gaussian-noise"]
    assert float(cell) == pytest.approx(row["auroc"], rel=1e-9) and 0 <= float(cell) <= 1
    assert saved["timings"]["total"] == pytest.approx(table.timings["total"])
    assert saved["files"] == [str(p) for p in files]
    header = (tmp_path / "ood.csv").read_text().splitlines()[0]
    assert header == "detector,ood_set,auroc,aupr_in,aupr_out,fpr95,detection_error,n_in,n_out"


def test_held_out_classes_and_user_arrays(model, tmp_path):
    test = load_dataset("digits:classes=5-9", "test")
    np.savez(tmp_path / "mine.npz", x=test.x.numpy()[:20])
    table = run_ood(model, IN, [str(tmp_path / "mine.npz"), test], "msp")
    assert [r["n_out"] for r in table.rows] == [20, len(test)]


def test_run_ood_on_the_users_arrays_matches_the_spec_run(model):
    fit, test = load_dataset(IN, "train"), load_dataset(IN, "test")
    ood = load_dataset("digits:classes=5-9", "test")
    ref = run_ood(model, IN, [ood], "msp,knn,mahalanobis", detector_params={"knn": {"k": 5}})
    x_train, x_test, x_ood = (d.x.double().numpy() for d in (fit, test, ood))  # float64 numpy
    table = run_ood(model, in_data=((x_train, fit.y.numpy()), x_test), out_sets={"mine": x_ood},
                    detectors="msp,knn,mahalanobis", detector_params={"knn": {"k": 5}})
    assert table.in_data == "in_data" and table.out_sets == ["mine"]
    assert table.accuracy is None  # no test labels given
    for r, q in zip(ref.rows, table.rows, strict=True):
        assert r["detector"] == q["detector"] and q["ood_set"] == "mine"
        assert q["auroc"] == pytest.approx(r["auroc"], abs=1e-6)
    labelled = run_ood(model, in_data=((fit.x, fit.y.numpy()), (test.x.numpy(), test.y)),
                       out_sets={"mine": torch.utils.data.TensorDataset(ood.x),
                                 "noise": "gaussian-noise"}, detectors="msp")
    assert labelled.accuracy == pytest.approx(ref.accuracy)
    assert labelled.out_sets == ["mine", "noise"]
    # the line: unlabelled arrays, every detector that can fit without labels
    table = run_ood(model, in_data=(x_train, x_test), out_sets={"mine": x_ood})
    assert "mahalanobis" not in table.detectors and "knn" in table.detectors
    with pytest.raises(ValueError, match="'mahalanobis' learns per-class statistics and needs "
                       "labelled fit data"):
        run_ood(model, in_data=(x_train, x_test), out_sets={"mine": x_ood},
                detectors="mahalanobis")


def test_run_ood_refuses_bad_user_arrays(model):
    x = load_dataset(IN, "test").x.numpy()
    bad = x.copy()
    bad[3, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"The 'in_data\[1\]' argument of run_ood must be "
                       r"finite \(no NaN or inf\); found nan at index \(3, 0, 2, 2\)"):
        run_ood(model, in_data=(x, bad), out_sets={"mine": x}, detectors="msp")
    with pytest.raises(ValueError, match=r"The 'out_sets\['mine'\]' argument of run_ood must "
                       "be finite"):
        run_ood(model, in_data=(x, x), out_sets={"mine": bad}, detectors="msp")
    with pytest.raises(ValueError, match=r"OOD set 'mine' has inputs of shape \(1, 4, 8\)"):
        run_ood(model, in_data=(x, x), out_sets={"mine": x[:, :, :4]}, detectors="msp")
    with pytest.raises(ValueError, match="same input shape"):
        run_ood(model, in_data=(x, x[:, :, :4]), out_sets={"mine": x}, detectors="msp")
    with pytest.raises(ValueError, match="'fit_split' parameter of run_ood.*must stay 'train'"):
        run_ood(model, in_data=(x, x), out_sets={"mine": x}, detectors="msp", fit_split="val")
    with pytest.raises(ValueError, match="'in_data' argument of run_ood must be a dataset spec "
                       r"\(str\) or the user's data as \(fit, test\).*Got ndarray"):
        run_ood(model, in_data=x, out_sets={"mine": x}, detectors="msp")
    with pytest.raises(ValueError, match="'out_sets' argument of run_ood is an empty dict"):
        run_ood(model, in_data=(x, x), out_sets={}, detectors="msp")
    with pytest.raises(ValueError, match=r"given by name as out_sets=\{name: data\}. Got "
                       "ndarray"):
        run_ood(model, in_data=(x, x), out_sets=[x], detectors="msp")


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
    with pytest.raises(ValueError, match=r"'layer' parameter of DDU \('ddu'\) is None.*Plain"):
        run_ood(model, IN, "gaussian-noise", "msp,ddu")
    table = run_ood(model, IN, "gaussian-noise", "msp,ddu", layer="body")
    assert len(table.rows) == 2
    # "all" runs what the model allows: no feature detectors without features or a layer
    names = resolve_detectors("all", model=model)
    assert "msp" in names and "odin" in names
    assert not {"mahalanobis", "ddu", "knn", "featurenorm", "combined"} & set(names)
    assert "ddu" in resolve_detectors("all", model=model, layer="body")


def test_multi_layer_features(model):
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


# --------------------------------------------------------------------------- density models
DENSITY = "likelihood,likelihood-ratio,complexity,typicality"


@pytest.fixture(scope="module")
def nade():
    """A small NADE of the binarised digits 0-4, trained for a few epochs."""
    from generative import train_density

    model, _ = train_density("nade", IN, epochs=3, batch_size=50, lr=1e-2, test=False,
                             options={"hidden": 16}, seed=0)
    return model.eval()


def test_density_only_run_scores_prepared_inputs(nade):
    prepare = density_inputs_for(nade)
    table = run_ood(None, IN, OUT, "all", density=nade, density_inputs=prepare,
                    detector_params={"likelihood-ratio": {"epochs": 1},
                                     "typicality": {"bootstraps": 100}})
    assert table.detectors == DENSITY.split(",") and table.accuracy is None
    assert len(table.rows) == 8 and all(0 <= r["auroc"] <= 1 for r in table.rows)
    test = prepare(load_dataset(IN, "test"), "test")
    assert set(test.x.unique().tolist()) == {0.0, 1.0}  # the fixed binarisation
    with torch.no_grad():
        bpd = -nade.log_prob(test.x).double() / (64 * np.log(2))
    torch.testing.assert_close(table.scores["likelihood"]["in"], bpd)
    # the likelihood ratio trained a background model of NADE's architecture in fit
    assert table.params["likelihood-ratio"]["fit_background"] is True
    # a binary model of digits tells held-out digits from noise
    noise = {r["detector"]: r["auroc"] for r in table.rows if r["ood_set"] == "gaussian-noise"}
    assert noise["likelihood"] > 0.9


class _GreyDensity(torch.nn.Module):
    """A continuous density (independent unit Gaussians per pixel): no code length."""

    pixels = "grey"

    def log_prob(self, x):
        x = x.flatten(1).double()
        return (-0.5 * x.square() - 0.5 * np.log(2 * np.pi)).sum(1)


def test_a_continuous_density_likelihood_is_scored_in_nats_not_bits_per_dim():
    grey = _GreyDensity()
    table = run_ood(None, IN, OUT, "likelihood", density=grey, density_inputs=lambda d, s: d)
    assert table.params["likelihood"]["num_dims"] is None
    test = load_dataset(IN, "test")
    torch.testing.assert_close(table.scores["likelihood"]["in"], -grey.log_prob(test.x))


def test_classifier_and_density_detectors_share_one_table(model, nade, tmp_path):
    table = run_ood(model, IN, "gaussian-noise", "msp,likelihood,typicality", density=nade,
                    density_inputs=density_inputs_for(nade))
    assert table.detectors == ["msp", "likelihood", "typicality"]
    assert table.accuracy is not None and set(table.timings["density"]) == {
        f"{IN} (train)", f"{IN} (test)", "gaussian-noise"}
    write_ood_report(table, tmp_path, histograms=False)
    assert json.loads((tmp_path / "ood.json").read_text())["detectors"] == table.detectors
    assert not list(tmp_path.glob("hist_*"))
    # "all" with both models names every detector; with one model, only its detectors
    from uncertainty.ood import DETECTORS

    everything = resolve_detectors("all", classifier=True, density=True, model=model)
    assert everything == [n for n in DETECTORS if n not in ("mc-dropout",
                                                            "ensemble-disagreement")]
    assert resolve_detectors("all", classifier=False, density=True) == DENSITY.split(",")
    assert "likelihood" not in resolve_detectors("all", model=model)
    # the epistemic detectors join "all" for models they apply to
    from dunno.ensemble import EnsembleClassifier

    dropout_net = nets.create("lenet5", 1, 5, input_size=8, dropout=0.5)
    assert "mc-dropout" in resolve_detectors("all", model=dropout_net)
    ensemble = EnsembleClassifier([model, model])
    assert "ensemble-disagreement" in resolve_detectors("all", model=ensemble)


def test_density_runner_errors(model, nade):
    with pytest.raises(ValueError, match="needs a classifier.*or both"):
        run_ood(None, IN, OUT)
    with pytest.raises(ValueError, match="scores through a density model"):
        run_ood(model, IN, OUT, "likelihood")
    with pytest.raises(ValueError, match="scores through a classifier"):
        run_ood(None, IN, OUT, "msp", density=nade)
    with pytest.raises(ValueError, match="'density_inputs' argument must be None or a callable"):
        run_ood(None, IN, OUT, "likelihood", density=nade, density_inputs="fixed")
    # without density_inputs the grey digits reach the binary model, which rejects them
    with pytest.raises(ValueError, match="binary pixels"):
        run_ood(None, IN, OUT, "likelihood", density=nade)
