"""Inputs stored on another scale than the model's data ([0, 255] against [0, 1]) are refused
before any work: by the training range recorded in a checkpoint, and between the sets of an
OOD run (in-distribution fit / test, OOD sets)."""

from __future__ import annotations

import pytest
import torch

from dunno import nets
from dunno.checkpoints import save_checkpoint
from dunno.models import check_input_scale, check_model_data, load_any_model
from dunno.models.checks import input_magnitude, model_input_range
from uncertainty.ood import run_ood

pytestmark = pytest.mark.one_thread


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_check_input_scale_limits():
    x = _rand(20, 1, 8, 8)  # |x| < 1
    r = input_magnitude(x)
    assert 0.95 < r < 1.0
    check_input_scale(x * 19.9, r, what="a", reference_what="b")  # inside 20x
    check_input_scale(x / 49.9, r, what="a", reference_what="b")  # inside 1/50
    check_input_scale(torch.zeros(3, 1, 8, 8), r, what="a", reference_what="b")  # blank
    check_input_scale(x * 255, 0.0, what="a", reference_what="b")  # no reference: no check
    with pytest.raises(ValueError, match=r"the set reach \|x\| = 25\d\.\d+, but the model's "
                       r"reach \|x\| = 0\.9\d+.*different scales"):
        check_input_scale(x * 255, r, what="the set", reference_what="the model's")
    with pytest.raises(ValueError, match="different scales"):
        check_input_scale(x, 255.0, what="a", reference_what="b")
    with pytest.raises(ValueError, match="different scales"):  # negative values count too
        check_input_scale(-x * 30, r, what="a", reference_what="b")


def test_recorded_training_range_refuses_0_255_data(tmp_path):
    net = nets.create("lenet5", 1, 10, input_size=(8, 8)).eval()
    save_checkpoint(tmp_path / "m.pt", net, arch="nets", config=net.config,
                    meta={"input_shape": [1, 8, 8], "num_classes": 10, "input_range": [0.0, 1.0]})
    model = load_any_model(tmp_path / "m.pt")
    assert model_input_range(model) == (0.0, 1.0)
    x = _rand(6, 1, 8, 8)
    assert check_model_data(model, x, num_classes=10) == 10
    with pytest.raises(ValueError, match=r"run_ood: the inputs of the data 'mine\.npz' reach "
                       r"\|x\| = 2\d\d.*trained on \(\[0, 1\], recorded in its checkpoint\)"):
        check_model_data(model, x * 255, num_classes=10, data_name="mine.npz", owner="run_ood")


def test_malformed_recorded_range_is_ignored(tmp_path):
    net = nets.create("lenet5", 1, 10, input_size=(8, 8)).eval()
    for bad in ([0.0], [0.0, float("nan")], ["0", "1"], [True, 1.0]):
        save_checkpoint(tmp_path / "m.pt", net, arch="nets", config=net.config,
                        meta={"input_shape": [1, 8, 8], "num_classes": 10, "input_range": bad})
        assert model_input_range(load_any_model(tmp_path / "m.pt")) is None


def _tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()


def test_run_ood_refuses_an_ood_set_on_another_scale():
    x_fit, x_test = _rand(60, 1, 8, 8), _rand(30, 1, 8, 8, seed=1)
    y_fit = torch.arange(60) % 3
    ood = _rand(30, 1, 8, 8, seed=2)
    table = run_ood(_tiny_model(), in_data=((x_fit, y_fit), x_test),
                    out_sets={"ok": ood, "blank": torch.zeros(30, 1, 8, 8)},
                    detectors=["msp", "energy"])
    assert table.out_sets == ["ok", "blank"]  # the same scale, and a blank set, are scored
    assert len(table.rows) == 4
    with pytest.raises(ValueError, match=r"The OOD set 'raw'.s inputs reach \|x\| = 2\d\d.*"
                       r"in-distribution test inputs.*different scales"):
        run_ood(_tiny_model(), in_data=((x_fit, y_fit), x_test),
                out_sets={"raw": (ood * 255).numpy()}, detectors=["msp"])
    with pytest.raises(ValueError, match=r"'in_data' test inputs.*its fit inputs"):
        run_ood(_tiny_model(), in_data=((x_fit, y_fit), x_test * 255), out_sets={"o": ood},
                detectors=["msp"])
