"""Saving and loading fitted things: identical round trips, refused damage, safe files."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from dunno import nets
from dunno.checkpoints import FORMAT, atomic_save, load_checkpoint, load_model, save_checkpoint
from dunno.data import load_dataset, make_loader
from dunno.ensemble import EnsembleClassifier
from dunno.errors import CheckpointError
from dunno.training import classifier_step, fit, seed_everything
from dunno.training_state import (
    TRAINING_STATE_FORMAT,
    load_training_state,
    rng_state,
    save_training_state,
    set_rng_state,
)

X = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _lenet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nets.create("lenet5", 1, 10, input_size=8).eval()


def _saved_lenet(tmp_path):
    model = _lenet()
    path = save_checkpoint(tmp_path / "m.pt", model, arch="nets", config=model.config)
    return model, path


def _payload(model: nn.Module, **changes) -> dict:
    payload = {"format": FORMAT, "version": 1, "arch": "nets",
               "config": json.dumps(model.config), "meta": "{}",
               "state_dict": dict(model.state_dict()), "extra": {}}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not _DROP}


_DROP = object()


# ----------------------------------------------------------------------------- damaged files
def test_a_flipped_byte_in_the_weights_is_refused_not_loaded_as_other_weights(tmp_path):
    model, path = _saved_lenet(tmp_path)
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = next(i for i in archive.infolist() if i.filename.endswith("data/4"))
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    damaged = bytearray(data)
    damaged[start + member.file_size // 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match=r"m\.pt' is corrupt: its part '.*data/4' fails "
                                              r"its CRC-32 check"):
        load_model(path)


def test_every_flipped_byte_is_refused_or_changes_nothing(tmp_path):
    model, path = _saved_lenet(tmp_path)
    expected = model(X)
    data = path.read_bytes()
    refused = 0
    for offset in range(0, len(data), 997):
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_model(path)
        except CheckpointError as err:
            assert str(path) in str(err)
            refused += 1
            continue
        assert torch.equal(loaded(X), expected), f"byte {offset} changed the model silently"
    assert refused >= len(range(0, len(data), 997)) - 2  # only padding bytes may pass


@pytest.mark.parametrize("fraction", [0.0001, 0.1, 0.5, 0.9, 0.999])
def test_a_truncated_checkpoint_names_the_file(tmp_path, fraction):
    _, path = _saved_lenet(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:max(1, int(len(data) * fraction))])
    with pytest.raises(CheckpointError, match=r"Checkpoint file '.*m\.pt' is truncated or "
                                              "corrupt"):
        load_model(path)


@pytest.mark.parametrize("changes,message", [
    ({"version": True}, "has checkpoint version True; this version of dunno reads version 1"),
    ({"version": 1.0}, "has checkpoint version 1.0; this version of dunno reads version 1"),
    ({"arch": _DROP}, "its 'arch' must be the name of a model builder (a str). Got None"),
    ({"arch": 7}, "its 'arch' must be the name of a model builder (a str). Got 7"),
    ({"config": "{not json"}, "its 'config' is not valid JSON"),
    ({"config": "[1, 2]"}, "its 'config' must be a JSON object (a dict). Got a list"),
    ({"config": 3}, "its 'config' must be JSON text of a dict. Got int"),
    ({"meta": 3}, "its 'meta' must be JSON text of a dict. Got int"),
    ({"meta": "[1]"}, "its 'meta' must be a JSON object (a dict). Got a list"),
    ({"meta": _DROP}, "its 'meta' must be JSON text of a dict. Got nothing"),
    ({"state_dict": _DROP}, "its 'state_dict' must map parameter names to tensors"),
    ({"state_dict": {"conv1.weight": 1}}, "its 'state_dict' must map parameter names to "
                                          "tensors"),
    ({"extra": [1]}, "its 'extra' must be a dict. Got a list"),
])
def test_a_damaged_checkpoint_payload_is_refused_naming_the_file(tmp_path, changes, message):
    path = tmp_path / "damaged.pt"
    torch.save(_payload(_lenet(), **changes), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize("edit,message", [
    (lambda c: {**c, "bogus": 1}, "Unknown option 'bogus' for backbone 'lenet5'"),
    (lambda c: {k: v for k, v in c.items() if k != "num_classes"},
     "missing 1 required positional argument: 'num_classes'"),
    (lambda c: {**c, "num_classes": "ten"},
     "The 'num_classes' parameter of LeNet5 must be an int >= 1. Got 'ten' instead."),
])
def test_a_config_with_extra_missing_or_mistyped_keys_names_the_file(tmp_path, edit, message):
    model = _lenet()
    path = tmp_path / "edited.pt"
    torch.save(_payload(model, config=json.dumps(edit(model.config))), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    text = str(info.value)
    assert text.startswith(f"Checkpoint file {str(path)!r}: Cannot rebuild a 'nets' model")
    assert message in text


def test_weights_of_another_dtype_are_refused_not_cast(tmp_path):
    model = _lenet()
    path = tmp_path / "double.pt"
    torch.save(_payload(model, state_dict={k: v.double() for k, v in
                                           model.state_dict().items()}), path)
    with pytest.raises(CheckpointError, match=r"double\.pt'.*dtype mismatches \['conv1.weight: "
                                              r"checkpoint torch.float64 vs model "
                                              r"torch.float32'"):
        load_model(path)


def test_another_architecture_and_version_name_both(tmp_path):
    _, path = _saved_lenet(tmp_path)
    with pytest.raises(CheckpointError, match=r"architecture 'nets', not 'generative/nade'"):
        load_checkpoint(path, expected_arch="generative/nade")
    torch.save(_payload(_lenet(), version=2), tmp_path / "v2.pt")
    with pytest.raises(CheckpointError, match=r"v2\.pt' has checkpoint version 2; this "
                                              "version of dunno reads version 1"):
        load_checkpoint(tmp_path / "v2.pt")


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_inside_a_torch_archive_is_refused(tmp_path):
    marker = tmp_path / "ran"
    good = tmp_path / "good.pt"
    torch.save({"a": torch.zeros(2)}, good)
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(evil, "w") as target:
        for info in source.infolist():  # valid CRCs: only the unpickler can refuse it
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = pickle.dumps(_RunsCode(str(marker)), protocol=2)
            target.writestr(info.filename, data)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"format": FORMAT, "x": _RunsCode(str(marker))},
                                    protocol=2))
    for path in (evil, legacy):
        with pytest.raises(CheckpointError, match="refusing to load it because that would "
                                                  "execute code"):
            load_checkpoint(path)
    assert not marker.exists()


def test_a_plain_state_dict_in_the_legacy_format_still_loads(tmp_path):
    from dunno.checkpoints import safe_load

    state = dict(_lenet().state_dict())
    path = tmp_path / "legacy.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)  # not a zip: no CRCs
    loaded = safe_load(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


# ----------------------------------------------------------------------------- writing
def test_save_refuses_what_could_not_be_loaded_and_keeps_the_old_file(tmp_path):
    model, path = _saved_lenet(tmp_path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"The checkpoint's extra\['stats'\] holds a ndarray"):
        save_checkpoint(path, model, arch="nets", config=model.config,
                        extra={"stats": np.zeros(3)})
    with pytest.raises(ValueError, match="The checkpoint 'meta' must be a dict. Got a list"):
        save_checkpoint(path, model, arch="nets", config=model.config, meta=[1])
    with pytest.raises(ValueError, match="The checkpoint 'arch' must be the name of a "
                                         "registered model builder"):
        save_checkpoint(path, model, arch=None, config=model.config)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    # what is allowed loads back as written
    save_checkpoint(path, model, arch="nets", config=model.config,
                    extra={"mean": torch.ones(2), "sizes": (1, 2), "note": None})
    extra = load_checkpoint(path).extra
    assert torch.equal(extra["mean"], torch.ones(2))
    assert extra["sizes"] == (1, 2) and extra["note"] is None


def test_an_interrupted_write_keeps_the_old_file_and_leaks_nothing(tmp_path, monkeypatch):
    model, path = _saved_lenet(tmp_path)
    before = path.read_bytes()

    def interrupted(obj, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"a": 1}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before

    def failing_chmod(fd, mode):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", failing_chmod)
    open_fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(PermissionError):
        atomic_save({"a": 1}, path)
    assert len(os.listdir("/proc/self/fd")) == open_fds  # the temporary file was closed
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


# ----------------------------------------------------------------------------- round trips
def test_ensemble_round_trip_is_identical_after_the_source_changes(tmp_path):
    torch.manual_seed(0)
    members = [nets.create("lenet5", 1, 10, input_size=8, dropout=0.2) for _ in range(3)]
    ensemble = EnsembleClassifier(members).eval()
    expected = ensemble(X)
    path = save_checkpoint(tmp_path / "e.pt", ensemble, arch="ensemble", config=ensemble.config)
    with torch.no_grad():
        for p in ensemble.parameters():
            p.add_(1.0)
    loaded = load_model(path, device="cpu")
    assert isinstance(loaded, EnsembleClassifier) and loaded.num_members == 3
    assert torch.equal(loaded(X), expected)


@pytest.mark.parametrize("members,message", [
    ([], "The 'members' of an ensemble config must be a non-empty list"),
    ([{"config": {}}], "Member 0 of the ensemble config must be {'arch': str, 'config': dict}"),
    ([{"arch": "nets", "config": {}}, {"arch": "nets"}],
     "Member 1 of the ensemble config must be"),
])
def test_a_damaged_ensemble_config_names_the_member(tmp_path, members, message):
    ensemble = EnsembleClassifier([_lenet()])
    path = tmp_path / "e.pt"
    torch.save(_payload(ensemble, arch="ensemble", config=json.dumps({"members": members})),
               path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_density_checkpoints_round_trip_identically(tmp_path):
    from generative.autoregressive import NADE, PixelCNN
    from generative.latent import VAE

    x = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    for model in (NADE((1, 8, 8), hidden=8), PixelCNN((1, 8, 8), hidden=4, layers=1),
                  VAE((1, 8, 8), latent_dim=3, hidden=(8,))):
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        model.eval()
        torch.manual_seed(5)
        expected = model.log_prob(x)
        path = save_checkpoint(tmp_path / "d.pt", model, arch=model.arch, config=model.config)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        loaded = load_model(path, device="cpu")
        torch.manual_seed(5)
        assert type(loaded) is type(model)
        assert torch.equal(loaded.log_prob(x), expected), type(model).__name__


def test_every_calibrator_round_trips_identically(tmp_path):
    from uncertainty.calibration.registry import (
        available_calibrators,
        load_calibrator,
        make_calibrator,
        save_calibrator,
    )

    gen = torch.Generator().manual_seed(0)
    for classes in (3, 2):
        z = torch.randn(200, classes, generator=gen) * 3
        y = torch.randint(0, classes, (200,), generator=gen)
        test = torch.randn(50, classes, generator=gen) * 3
        for name in available_calibrators(classes):
            calibrator = make_calibrator(name).fit(z, y)
            expected = calibrator.predict_proba(test)
            path = save_calibrator(calibrator, tmp_path / f"{name}.pt")
            for attr in calibrator._state_names:  # the saved file must not follow the source
                value = getattr(calibrator, attr)
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    value.add_(1.0)
            loaded = load_calibrator(path)
            assert type(loaded) is type(calibrator)
            assert torch.equal(loaded.predict_proba(test), expected), name


# ----------------------------------------------------------------------------- training state
def test_the_rng_state_keeps_numpys_cached_normal_draw():
    np.random.seed(0)
    np.random.standard_normal()  # draws a pair, keeps the second for the next call
    state = rng_state()
    expected = np.random.standard_normal(3)
    set_rng_state(state)
    assert np.array_equal(np.random.standard_normal(3), expected)


def test_resume_is_exact_with_numpy_noise_in_the_step(tmp_path):
    """9 steps per epoch, one normal draw each: the epoch ends with a cached normal draw."""
    data = load_dataset("digits", "train")
    assert len(make_loader(data, 140)) == 9

    def run(epochs, path, resume=False):
        seed_everything(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        base = classifier_step(model, opt)

        def step(batch):
            x, y = batch
            return base((x + float(np.random.normal(0, 0.1)), y))

        fit(step, make_loader(data, 140, shuffle=True, seed=0), epochs=epochs,
            state={"model": model, "optimizer": opt}, checkpoint_path=path, resume=resume)
        return model

    straight = run(2, tmp_path / "straight.pt")
    run(1, tmp_path / "part.pt")
    np.random.seed(99)  # a new process: other global generators
    resumed = run(2, tmp_path / "part.pt", resume=True)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def _two_objects():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def test_a_failed_restore_leaves_no_object_half_restored(tmp_path):
    model, opt = _two_objects()
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    path = tmp_path / "state.pt"
    save_training_state(path, {"model": model, "optimizer": opt}, epoch=1)

    fresh, _ = _two_objects()
    with torch.no_grad():
        fresh.weight.add_(5.0)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    other_opt = torch.optim.Adam([{"params": [fresh.weight]}, {"params": [fresh.bias]}])
    with pytest.raises(CheckpointError, match=r"Cannot restore 'optimizer' from '.*state\.pt'"):
        load_training_state(path, {"model": fresh, "optimizer": other_opt})
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("changes,message", [
    ({"states": None}, "lacks the 'states' or 'rng' of a training state"),
    ({"rng": None}, "lacks the 'states' or 'rng' of a training state"),
    ({"run_config": 3}, "its 'run_config' must be JSON text. Got a int"),
    ({"run_config": "{oops"}, "its 'run_config' is not valid JSON"),
    ({"run_config": "[1]"}, "its 'run_config' must be a JSON object. Got a list"),
    ({"rng": {"torch": torch.zeros(3, dtype=torch.uint8)}},
     "Cannot restore the random generators from"),
])
def test_a_damaged_training_state_is_refused_naming_the_file(tmp_path, changes, message):
    model, opt = _two_objects()
    path = tmp_path / "state.pt"
    save_training_state(path, {"model": model}, run_config={"lr": 0.1}, epoch=1)
    saved = torch.load(path, weights_only=True)
    assert saved["format"] == TRAINING_STATE_FORMAT
    torch.save({**saved, **changes}, path)
    python_state = random.getstate()
    with pytest.raises(CheckpointError) as info:
        load_training_state(path, {"model": model}, run_config={"lr": 0.1})
    assert str(path) in str(info.value) and message in str(info.value)
    assert random.getstate() == python_state
