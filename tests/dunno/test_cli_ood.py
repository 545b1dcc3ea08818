"""``dunno ood`` (dunno.cli.ood): options, --param and --layer parsing, reports, errors."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from dunno import nets
from dunno.checkpoints import save_checkpoint
from dunno.cli import main
from dunno.cli.ood import _parse_detector_params, _parse_layer

IN = "digits:classes=0-4"

pytestmark = pytest.mark.one_thread


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = nets.create("lenet5", 1, 5, input_size=8).eval()
    path = tmp_path_factory.mktemp("lenet") / "model.pt"
    return save_checkpoint(path, model, arch="nets", config=model.config)


def test_ood_with_params_and_report(checkpoint, tmp_path, capsys):
    report = tmp_path / "report"
    rc = main(["ood", "--checkpoint", str(checkpoint), "--in", IN, "--out", "digits:classes=5-9",
               "--detectors", "msp,knn", "--param", "knn.k=3", "--report-dir", str(report),
               "--device", "cpu", "--no-histograms"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "AUROC (%):" in printed and f"to {report}" in printed
    assert (report / "ood.json").exists() and (report / "auroc.csv").exists()
    assert not list(report.glob("hist_*"))
    assert json.loads((report / "ood.json").read_text())["params"]["knn"]["k"] == 3


def test_parse_detector_params():
    assert _parse_detector_params(["knn.k=10", "odin.epsilons=[0, 0.01]", "rapp.mode=sap"]) == {
        "knn": {"k": 10}, "odin": {"epsilons": (0, 0.01)}, "rapp": {"mode": "sap"}}
    with pytest.raises(ValueError, match="DETECTOR.NAME=VALUE"):
        _parse_detector_params(["k=10"])


def test_multi_layer_features_from_the_command_line(checkpoint, tmp_path):
    rc = main(["ood", "--checkpoint", str(checkpoint), "--in", IN, "--out", "gaussian-noise",
               "--detectors", "ddu", "--layer", "conv2, fc2", "--report-dir", str(tmp_path / "r"),
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
    assert _parse_layer(text) == expected


@pytest.mark.parametrize("text", ["conv2,", "[", "[]", "[1]", '["fc2", ""]', "stages.1@0",
                                  "stages.1@x,stages.2", "@2", "fc2,fc2"])
def test_bad_layer_flag(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--layer"):
        _parse_layer(text)


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["ood", "--help"])
    out = capsys.readouterr().out
    assert "(default: 512)" in out and "(default: train)" in out and "--timing" not in out


@pytest.fixture(scope="module")
def nade_checkpoint(tmp_path_factory):
    """A small NADE of the binarised digits 0-4, trained for a few epochs."""
    from generative import train_density

    model, _ = train_density("nade", IN, epochs=3, batch_size=50, lr=1e-2, test=False,
                             options={"hidden": 16}, seed=0)
    path = tmp_path_factory.mktemp("nade") / "nade.pt"
    return save_checkpoint(path, model, arch=model.arch, config=model.config)


def test_density_with_a_background_checkpoint(nade_checkpoint, tmp_path):
    path = str(nade_checkpoint)
    rc = main(["ood", "--density", path, "--background", path, "--in", IN, "--out",
               "gaussian-noise", "--detectors", "likelihood-ratio", "--report-dir",
               str(tmp_path / "r"), "--no-histograms"])
    assert rc == 0
    rows = json.loads((tmp_path / "r" / "ood.json").read_text())["rows"]
    assert rows[0]["auroc"] == pytest.approx(0.5)  # a model against itself: all scores 0


def test_errors(capsys, checkpoint):
    assert main(["ood", "--in", IN, "--out", "gaussian-noise"]) == 2
    assert "--density" in capsys.readouterr().err
    assert main(["ood", "--checkpoint", str(checkpoint), "--background", str(checkpoint),
                 "--in", IN, "--out", "gaussian-noise"]) == 2
    assert "needs --density too" in capsys.readouterr().err
