"""dunno.models: any classifier from any file (checkpoint, TorchScript, torch.export, a factory
of the user's own code), save_model round trips, and the model-vs-data check."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from torch import nn

from dunno import nets
from dunno.checkpoints import save_checkpoint
from dunno.ensemble import EnsembleClassifier
from dunno.errors import CheckpointError
from dunno.models import (
    ExportedModel,
    check_model_data,
    detect_model_file,
    import_factory,
    load_any_model,
    model_input_shape,
    read_model_metadata,
    read_safetensors,
    save_model,
)

pytestmark = pytest.mark.one_thread

FACTORY_SOURCE = '''
import torch
from torch import nn


def build(hidden=6):
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
'''


def _user_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


@pytest.fixture
def x8():
    return torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- save / load
@pytest.mark.parametrize(("name", "kwargs", "kind"), [
    ("net.pt", {}, "torchscript"),
    ("net.ts", {"method": "script"}, "torchscript"),
    ("net.pt2", {}, "export"),
    ("net.bin", {"format": "export"}, "export"),
])
def test_save_model_round_trips_with_identical_logits(tmp_path, x8, name, kwargs, kind):
    net = _user_net().train()  # dropout on: save_model captures eval mode and restores train
    path = save_model(net, tmp_path / name, x8, **kwargs)
    assert net.training
    assert detect_model_file(path) == kind
    assert read_model_metadata(path) == {"input_shape": (1, 8, 8), "num_classes": 3}
    loaded = load_any_model(path)
    net.eval()
    torch.testing.assert_close(loaded(x8), net(x8), rtol=0, atol=0)
    assert loaded(x8[:1]).shape == (1, 3)  # the batch dimension is free
    assert loaded.dunno_info == {"kind": kind, "source": str(path),
                                 "input_shape": (1, 8, 8), "num_classes": 3}
    assert model_input_shape(loaded) == (1, 8, 8)
    assert not loaded.training
    if kind == "export":
        assert isinstance(loaded, ExportedModel)
        loaded.train()  # no-op on a graph (no error)
        torch.testing.assert_close(loaded(x8), net(x8), rtol=0, atol=0)


def test_plain_torch_files_load_without_dunno_metadata(tmp_path, x8):
    net = _user_net().eval()
    program = torch.export.export(net, (x8,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    torch.export.save(program, tmp_path / "plain.pt2")
    loaded = load_any_model(tmp_path / "plain.pt2")
    torch.testing.assert_close(loaded(x8), net(x8))
    # the program's own input signature gives the per-example shape
    assert loaded.dunno_info["input_shape"] == (1, 8, 8)


def test_a_project_checkpoint_loads_with_its_recorded_shape(tmp_path, x8):
    net = nets.create("lenet5", 1, 10, input_size=(8, 8)).eval()
    save_checkpoint(tmp_path / "m.pt", net, arch="nets", config=net.config,
                    meta={"input_shape": [1, 8, 8], "num_classes": 10})
    assert detect_model_file(tmp_path / "m.pt") == "checkpoint"
    loaded = load_any_model(tmp_path / "m.pt")
    torch.testing.assert_close(loaded(x8), net(x8))
    assert loaded.dunno_info["input_shape"] == (1, 8, 8)
    assert loaded.dunno_info["num_classes"] == 10


def test_an_ensemble_of_user_models_round_trips(tmp_path, x8):
    members = [_user_net(), nn.Sequential(nn.Flatten(), nn.Linear(64, 3))]
    ensemble = EnsembleClassifier(members).eval()
    expected = ensemble(x8)
    for name in ("ens.pt", "ens.pt2"):
        loaded = load_any_model(save_model(ensemble, tmp_path / name, x8))
        torch.testing.assert_close(loaded(x8), expected, rtol=0, atol=0)
    # a project checkpoint of it could not be rebuilt: refused when saving, not when loading
    with pytest.raises(CheckpointError, match=r"Member 0 of the EnsembleClassifier "
                                              r"\(Sequential\).*save_model"):
        save_checkpoint(tmp_path / "ens_ckpt.pt", ensemble, arch="ensemble",
                        config=ensemble.config)
    assert not (tmp_path / "ens_ckpt.pt").exists()


def test_save_model_refuses_bad_arguments(tmp_path, x8):
    net = _user_net()
    with pytest.raises(ValueError, match=r"'format' parameter of save_model.*Got 'onnx'"):
        save_model(net, tmp_path / "a.pt", x8, format="onnx")
    with pytest.raises(ValueError, match=r"'method' parameter of save_model.*Got 'jit'"):
        save_model(net, tmp_path / "a.pt", x8, method="jit")
    with pytest.raises(ValueError, match=r"'example_input' argument of save_model.*\(8,\)"):
        save_model(net, tmp_path / "a.pt", torch.zeros(8))
    with pytest.raises(ValueError, match=r"'module' argument of save_model.*Got dict"):
        save_model({}, tmp_path / "a.pt", x8)
    with pytest.raises(ValueError, match=r"'num_classes' argument of save_model is 5.*3 logits"):
        save_model(net, tmp_path / "a.pt", x8, num_classes=5)


def test_files_that_are_not_models_are_refused(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"w": torch.zeros(2)}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match=r"'.*missing.pt' does not exist"):
        load_any_model(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"empty.pt' is empty"):
        load_any_model(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match=r"text.pt' is not a model file"):
        load_any_model(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match=r"state.pt' is not a dunno checkpoint.*--model "
                                              r"package.module:factory --weights"):
        load_any_model(tmp_path / "state.pt")
    with pytest.raises(ValueError, match=r"exactly one of 'path'.*Got path=None, model=None"):
        load_any_model()
    with pytest.raises(ValueError, match=r"'weights' and 'model_options'.*go with 'model'"):
        load_any_model(tmp_path / "state.pt", weights="w.pt")


# ----------------------------------------------------------------------------- factories
def _write_factory(tmp_path):
    (tmp_path / "user_nets_for_dunno.py").write_text(FACTORY_SOURCE)
    return tmp_path / "user_nets_for_dunno.py"


def _write_safetensors(path, state):
    header, blobs, offset = {}, [], 0
    for name, tensor in state.items():
        data = tensor.detach().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_a_factory_of_the_users_code_with_strict_weights(tmp_path, x8, monkeypatch):
    file = _write_factory(tmp_path)
    trained = import_factory(f"{file}:build")(hidden=6)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # different from what the factory builds
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    _write_safetensors(tmp_path / "w.safetensors", trained.state_dict())
    assert detect_model_file(tmp_path / "w.safetensors") == "safetensors"
    torch.testing.assert_close(read_safetensors(tmp_path / "w.safetensors"),
                               trained.state_dict())
    expected = trained.eval()(x8)
    for weights in ("w.pt", "w.safetensors"):
        model = load_any_model(model=f"{file}:build", weights=tmp_path / weights)
        torch.testing.assert_close(model(x8), expected, rtol=0, atol=0)
        assert model.dunno_info["kind"] == "factory"
    monkeypatch.syspath_prepend(str(tmp_path))  # the dotted form: an importable module
    model = load_any_model(model="user_nets_for_dunno:build", weights=tmp_path / "w.pt")
    torch.testing.assert_close(model(x8), expected, rtol=0, atol=0)

    with pytest.raises(CheckpointError, match=r"do not fit the model built by "
                                              r"'.*:build'.*shape mismatches \['1.weight"):
        load_any_model(model=f"{file}:build", weights=tmp_path / "w.pt",
                       model_options={"hidden": 7})
    torch.save({"extra.bias": torch.zeros(1), **trained.state_dict()}, tmp_path / "w2.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys \['extra.bias'\]"):
        load_any_model(model=f"{file}:build", weights=tmp_path / "w2.pt")
    with pytest.raises(ValueError, match=r"needs --weights FILE"):
        load_any_model(model=f"{file}:build")
    with pytest.raises(ValueError, match=r"calling the factory with options \{'depth': 2\}"):
        load_any_model(model=f"{file}:build", weights=tmp_path / "w.pt",
                       model_options={"depth": 2})


@pytest.mark.parametrize(("spec", "message"), [
    ("nocolon", r"must look like package.module:factory.*Got 'nocolon'"),
    ("no_such_module_xyz:build", r"cannot import 'no_such_module_xyz'"),
    ("json:no_such_attr", r"'json' has no attribute 'no_such_attr'"),
    ("json.decoder:__doc__", r"'__doc__' is a str, not a callable"),
    ("missing/file.py:build", r"the file 'missing/file.py' does not exist"),
])
def test_bad_factory_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        import_factory(spec)


def test_a_factory_that_builds_no_module(tmp_path):
    (tmp_path / "notnet.py").write_text("def build():\n    return 3\n")
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"must build a torch.nn.Module. Got int"):
        load_any_model(model=f"{tmp_path / 'notnet.py'}:build", weights=tmp_path / "w.pt")


# ----------------------------------------------------------------------------- model vs data
def test_an_8x8_model_on_28x28_data_is_refused_naming_both_shapes():
    model = nets.create("lenet5", 1, 10, input_size=(8, 8)).eval()
    x28 = torch.rand(4, 1, 28, 28)
    assert model(x28).shape == (4, 10)  # adaptive pooling: it runs, silently wrong
    with pytest.raises(ValueError, match=r"trained for inputs of shape \(1, 8, 8\).*config.*"
                                         r"'mnist' has inputs of shape \(1, 28, 28\)"):
        check_model_data(model, x28, num_classes=10, data_name="mnist")
    assert check_model_data(model, torch.rand(4, 1, 8, 8), num_classes=10) == 10


def test_class_count_first_layer_and_labels_are_checked(x8):
    net = _user_net().eval()  # 3 classes, no recorded shape
    with pytest.raises(ValueError, match=r"run_ood: the model outputs 3 logits per example, "
                                         r"but the data 'digits' has 10 classes"):
        check_model_data(net, x8, num_classes=10, data_name="digits", owner="run_ood")
    with pytest.raises(ValueError, match=r"has the label 7, but the model outputs only 3"):
        check_model_data(net, x8, labels=torch.tensor([0, 7]))
    with pytest.raises(ValueError, match=r"first layer \(Conv2d\) takes 1 input channels, but "
                                         r"the data 'rgb' has 3"):
        check_model_data(net, torch.rand(2, 3, 8, 8), data_name="rgb")
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(ValueError, match=r"first layer \(Linear\) takes 64 input features.*"
                                         r"\(1, 28, 28\) \(784 values\)"):
        check_model_data(mlp, torch.rand(2, 1, 28, 28))
    bad = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (2, 33)))
    with pytest.raises(ValueError, match=r"cannot run on the data \(inputs of shape \(1, 8, "
                                         r"8\)\): RuntimeError"):
        check_model_data(bad, x8)
    with pytest.raises(ValueError, match=r"must map a batch \(N, ...\) to logits \(N, C\).*"
                                         r"\(2, 4, 6, 6\)"):
        check_model_data(nn.Conv2d(1, 4, 3), x8)


def test_compiled_models_are_checked_by_their_recorded_shape(tmp_path, x8):
    for name in ("m.pt", "m.pt2"):
        loaded = load_any_model(save_model(_user_net(), tmp_path / name, x8))
        with pytest.raises(ValueError, match=r"\(1, 8, 8\) \(recorded in its (TorchScript "
                                             r"file|torch.export program)\).*\(1, 28, 28\)"):
            check_model_data(loaded, torch.rand(2, 1, 28, 28), num_classes=3)


def test_numpy_safetensors_reader_refuses_garbage(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 5) + b"{oops")
    with pytest.raises(CheckpointError, match=r"bad.safetensors' is not a valid safetensors"):
        read_safetensors(tmp_path / "bad.safetensors")
    np.testing.assert_equal(len(read_safetensors(_empty_safetensors(tmp_path))), 0)


def _empty_safetensors(tmp_path):
    text = b"{}"
    (tmp_path / "e.safetensors").write_bytes(struct.pack("<Q", len(text)) + text)
    return tmp_path / "e.safetensors"
