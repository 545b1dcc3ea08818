"""dunno.checkpoints: round trips, atomic writes, refusing code, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dunno.checkpoints import (
    atomic_save,
    load_checkpoint,
    load_model,
    register_model,
    save_checkpoint,
)
from dunno.errors import CheckpointError


@register_model("test/mlp")
def _mlp(width: int = 8, depth: int = 1) -> nn.Module:
    layers = [nn.Linear(4, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _mlp(width=16, depth=2)
    path = save_checkpoint(tmp_path / "m.pt", model, arch="test/mlp",
                           config={"width": 16, "depth": 2}, meta={"acc": 0.5})
    x = torch.randn(5, 4)
    loaded = load_model(path)
    assert torch.equal(loaded(x), model(x))
    ckpt = load_checkpoint(path)
    assert ckpt.meta == {"acc": 0.5} and ckpt.config == {"width": 16, "depth": 2}


def test_checkpoint_for_another_architecture(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _mlp(width=16), arch="test/mlp",
                           config={"width": 16})
    with pytest.raises(CheckpointError, match="architecture 'test/mlp', not 'nets'"):
        load_checkpoint(path, expected_arch="nets")
    # weights that do not fit the rebuilt model (config edited / wrong model)
    path2 = save_checkpoint(tmp_path / "w.pt", _mlp(width=16), arch="test/mlp",
                            config={"width": 8})
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(path2)
    path3 = save_checkpoint(tmp_path / "d.pt", _mlp(width=8, depth=2), arch="test/mlp",
                            config={"width": 8, "depth": 1})
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_model(path3)
    path4 = save_checkpoint(tmp_path / "u.pt", _mlp(), arch="test/nope", config={})
    with pytest.raises(CheckpointError, match="Unknown model architecture 'test/nope'"):
        load_model(path4)


def test_truncated_and_empty_checkpoints(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _mlp(), arch="test/mlp", config={})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


class _Sneaky:
    def __reduce__(self):  # would run code on unpickling with weights_only=False
        return (print, ("code ran",))


def test_loading_never_executes_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "dunno-checkpoint", "payload": _Sneaky()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_atomic_write_keeps_old_file_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _mlp(), arch="test/mlp", config={})
    before = path.read_bytes()

    def exploding_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"a": 1}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_config_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "m.pt", _mlp(), arch="test/mlp", config={"f": object()})


@pytest.mark.parametrize("name,options", [
    ("lenet5", {"dropout": 0.2}),
    ("resnet", {"depth": 8, "spectral_norm": True}),
    ("vit", {}),
])
def test_backbone_checkpoint_round_trip(tmp_path, name, options):
    from dunno import nets

    model = nets.create(name, 1, 10, input_size=8, **options)
    model.train()
    for _ in range(3):  # move batch-norm statistics and power-iteration vectors
        model(torch.rand(16, 1, 8, 8))
    model.eval()
    path = save_checkpoint(tmp_path / "m.pt", model, arch="nets", config=model.config)
    loaded = load_model(path)
    x = torch.rand(5, 1, 8, 8)
    assert type(loaded) is type(model)
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.features(x), model.features(x))


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    import os
    import stat

    from dunno.checkpoints import atomic_write_bytes, atomic_write_text

    old = os.umask(0o027)
    try:
        text = atomic_write_text("é\n", tmp_path / "a.md")
        data = atomic_write_bytes(b"\x00\x01", tmp_path / "b.png")
        plain = tmp_path / "c"
        plain.write_text("x")
    finally:
        os.umask(old)
    for path in (text, data):  # not mkstemp's 0600: others may read a report
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o640
    assert text.read_bytes() == "é\n".encode() and data.read_bytes() == b"\x00\x01"
