"""Run fingerprints (dunno.training_state): --resume continues only its own run, in every
training recipe."""

from __future__ import annotations

import json

import pytest
import torch

from dunno.checkpoints import load_checkpoint
from dunno.classify import ClassifierConfig, train_classifier
from dunno.cli import main
from dunno.ensemble import train_ensemble
from dunno.errors import CheckpointError
from dunno.training_state import (
    ADDED_KEYS,
    RECORDED_LATER,
    RESUMABLE_KEYS,
    check_run_config,
    run_fingerprint,
)

pytestmark = pytest.mark.one_thread

FAST = dict(backbone="lenet5", data="digits", epochs=1, batch_size=256, device="cpu")


def test_fingerprint_is_stable_and_ignores_only_the_resumable_keys():
    config = {"lr": 0.001, "seed": 0, "options": {"b": [1, 2], "a": None}, "epochs": 3}
    same = {"epochs": 30, "device": "cuda", "options": {"a": None, "b": (1, 2)}, "seed": 0,
            "lr": 0.001, "quiet": True}
    assert run_fingerprint(config) == run_fingerprint(same)
    assert len(run_fingerprint(config)) == 16
    assert run_fingerprint(config) != run_fingerprint({**config, "lr": 0.002})
    assert {"epochs", "max_minutes", "device", "quiet"} <= RESUMABLE_KEYS
    assert not {"lr", "seed", "data", "batch_size", "options"} & RESUMABLE_KEYS


def test_check_run_config_names_every_differing_key_with_both_values():
    with pytest.raises(CheckpointError) as info:
        check_run_config({"lr": 0.001, "data": "digits", "seed": 0},
                         {"lr": 0.01, "data": "mine.npz", "seed": 0, "extra": 1}, "s.pt")
    text = str(info.value)
    assert "'s.pt' belongs to another run" in text
    assert "data: 'digits' there, 'mine.npz' now" in text
    assert "lr: 0.001 there, 0.01 now" in text and "extra: '<unset>' there, 1 now" in text
    assert "seed" not in text.split("):")[1]
    with pytest.raises(CheckpointError, match="'old.pt' records no run configuration"):
        check_run_config(None, {"lr": 0.1}, "old.pt")


def test_a_state_written_before_a_field_existed_reads_as_its_old_behaviour():
    """``budget_clock`` was added after states were written: a state without it ran on the
    wall clock, so it resumes with "wall" and is refused, naming the field, with "cpu"; a
    config without the field (a classifier's) is not affected."""
    assert ADDED_KEYS["budget_clock"] == "wall"
    old = {"lr": 0.001, "seed": 0}
    check_run_config(old, {**old, "budget_clock": "wall"}, "s.pt")
    check_run_config(old, old, "s.pt")
    with pytest.raises(CheckpointError) as info:
        check_run_config(old, {**old, "budget_clock": "cpu"}, "s.pt")
    assert ("budget_clock: 'wall' (implied: written before the field existed) there, 'cpu' "
            "now") in str(info.value)
    with pytest.raises(CheckpointError, match="budget_clock: 'cpu' there, 'wall' now"):
        check_run_config({**old, "budget_clock": "cpu"}, {**old, "budget_clock": "wall"},
                         "s.pt")
    # a record added later is compared only when the state has it
    assert "model_config" in RECORDED_LATER
    check_run_config(old, {**old, "model_config": {"w": 1}}, "s.pt")
    with pytest.raises(CheckpointError, match=r"model_config: \{'w': 2\} there, \{'w': 1\}"):
        check_run_config({**old, "model_config": {"w": 2}}, {**old, "model_config": {"w": 1}},
                         "s.pt")


def test_gan_state_without_budget_clock_resumes(tmp_path):
    """End to end: a GAN run's state rewritten without ``budget_clock`` (as states were
    before it existed) resumes with the default clock and continues to the same weights as
    an uninterrupted run; asking for the CPU clock is refused."""
    from dunno.checkpoints import atomic_save
    from generative import train_gan

    kwargs = dict(options={"latent_dim": 4, "hidden": [16, 16]}, batch_size=50)
    data = "ring-of-gaussians:n=300"
    full, _ = train_gan("gan", data, 2, out=tmp_path / "full", **kwargs)
    train_gan("gan", data, 1, out=tmp_path / "part", **kwargs)
    path = tmp_path / "part" / "training_state.pt"
    state = torch.load(path, weights_only=True)
    run_config = json.loads(state["run_config"])
    del run_config["budget_clock"]
    state["run_config"] = json.dumps(run_config, sort_keys=True)
    state["fingerprint"] = run_fingerprint(run_config)
    atomic_save(state, path)
    with pytest.raises(CheckpointError, match="budget_clock: 'wall' \\(implied"):
        train_gan("gan", data, 2, out=tmp_path / "part", resume=True, budget_clock="cpu",
                  **kwargs)
    resumed, history = train_gan("gan", data, 2, out=tmp_path / "part", resume=True, **kwargs)
    assert history.steps == 12
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_built_models_config_is_part_of_the_run(tmp_path):
    """The run config records the built model's own config: a state whose model was built
    with another value of a parameter the options do not show (as after a changed library
    default; simulated by rewriting the record) is refused, naming the record; a state
    written before the record existed is compared without it and resumes."""
    from dunno.checkpoints import atomic_save
    from generative import train_gan

    kwargs = dict(options={"latent_dim": 4, "hidden": [16, 16]}, batch_size=50)
    data = "ring-of-gaussians:n=300"
    train_gan("gan", data, 1, out=tmp_path / "run", **kwargs)
    path = tmp_path / "run" / "training_state.pt"
    state = torch.load(path, weights_only=True)
    run_config = json.loads(state["run_config"])
    assert run_config["model_config"]["lr_g"] == 1e-3  # the MLP GAN's default
    run_config["model_config"]["lr_g"] = 2e-4  # "the default was 2e-4 when it was written"
    state["run_config"] = json.dumps(run_config, sort_keys=True)
    atomic_save(state, path)
    with pytest.raises(CheckpointError, match="model_config: .*'lr_g': 0.0002.* there"):
        train_gan("gan", data, 2, out=tmp_path / "run", resume=True, **kwargs)
    del run_config["model_config"]  # written before the record existed
    state["run_config"] = json.dumps(run_config, sort_keys=True)
    atomic_save(state, path)
    _, history = train_gan("gan", data, 2, out=tmp_path / "run", resume=True, **kwargs)
    assert history.steps == 12


AUGMENTED = {**FAST, "data": "mnist:n=600", "schedule": "constant", "batch_size": 100}


def test_classifier_resume_with_augmentation_is_exact(tmp_path):
    """28x28 images get random crops: their generator is part of the training state, so one
    epoch then a resume to two gives the weights of two epochs in one run (the crops used to
    restart from their seed, repeating epoch 1's in epoch 2)."""
    full = train_classifier(ClassifierConfig(**{**AUGMENTED, "epochs": 2}), out=tmp_path / "f")
    out = tmp_path / "part"
    train_classifier(ClassifierConfig(**AUGMENTED), out=out)
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert set(state["states"]) == {"model", "optimizer", "augmentation"}
    resumed = train_classifier(ClassifierConfig(**{**AUGMENTED, "epochs": 2}), out=out,
                               resume=True)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_classifier_state_from_before_the_augmentation_fields_resumes(tmp_path):
    """A classifier state written before ``crop_padding`` / ``flip`` / ``normalize`` and the
    saved crop generator existed (rewritten here without them) resumes with the fields'
    defaults, and is refused with another value, naming the field; a state missing another
    object is still refused."""
    from dunno.checkpoints import atomic_save

    out = tmp_path / "part"
    train_classifier(ClassifierConfig(**AUGMENTED), out=out)
    path = out / "training_state.pt"
    state = torch.load(path, weights_only=True)
    run_config = json.loads(state["run_config"])
    for key in ("crop_padding", "flip", "normalize"):
        del run_config[key]
    state["run_config"] = json.dumps(run_config, sort_keys=True)
    del state["states"]["augmentation"]
    atomic_save(state, path)
    with pytest.raises(CheckpointError, match=r"flip: None \(implied.*\) there, True now"):
        train_classifier(ClassifierConfig(**{**AUGMENTED, "epochs": 2, "flip": True}),
                         out=out, resume=True)
    resumed = train_classifier(ClassifierConfig(**{**AUGMENTED, "epochs": 2}), out=out,
                               resume=True)
    assert len(resumed.history.epochs) == 2
    del state["states"]["optimizer"]
    atomic_save(state, path)
    with pytest.raises(CheckpointError, match="belongs to another training setup"):
        train_classifier(ClassifierConfig(**{**AUGMENTED, "epochs": 3}), out=out, resume=True)


def test_classifier_resume_refuses_another_config_and_keeps_the_run(tmp_path):
    out = tmp_path / "run"
    first = train_classifier(ClassifierConfig(**FAST), out=out)
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert state["fingerprint"] == run_fingerprint(json.loads(state["run_config"]))
    before = (out / "model.pt").read_bytes()
    for change, message in [({"lr": 3e-3}, "lr: 0.001 there, 0.003 now"),
                            ({"seed": 4}, "seed: 0 there, 4 now"),
                            ({"data": "digits:n=100"}, "data: 'digits' there")]:
        with pytest.raises(CheckpointError, match=message):
            train_classifier(ClassifierConfig(**{**FAST, **change}), out=out, resume=True)
    assert (out / "model.pt").read_bytes() == before  # nothing was overwritten
    meta = load_checkpoint(out / "model.pt").meta
    assert meta["training"]["lr"] == 1e-3
    # the same run with more epochs is not a different run, but its cosine has ended
    with pytest.raises(CheckpointError, match="finished its cosine schedule"):
        train_classifier(ClassifierConfig(**{**FAST, "epochs": 2}), out=out, resume=True)
    again = train_classifier(ClassifierConfig(**FAST), out=out, resume=True)
    assert again.metrics["test_acc"] == first.metrics["test_acc"]


def test_resume_on_a_replaced_user_file_of_the_same_name_is_refused(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "mine.npz"
    np.savez(data, x=rng.random((120, 8, 8), dtype=np.float32), y=np.arange(120) % 3)
    out = tmp_path / "run"
    config = ClassifierConfig(**{**FAST, "data": str(data)})
    train_classifier(config, out=out)
    np.savez(data, x=rng.random((150, 8, 8), dtype=np.float32), y=np.arange(150) % 3)
    with pytest.raises(CheckpointError, match=r"train_examples: 84 there, 1[0-9][0-9] now"):
        train_classifier(config, out=out, resume=True)


def test_a_constant_schedule_run_is_extended(tmp_path):
    out = tmp_path / "run"
    config = ClassifierConfig(**{**FAST, "schedule": "constant"})
    train_classifier(config, out=out)
    longer = train_classifier(ClassifierConfig(**{**FAST, "schedule": "constant", "epochs": 2}),
                              out=out, resume=True)
    assert [int(e["epoch"]) for e in longer.history.epochs] == [1, 2]


def test_cli_resume_with_another_lr_is_one_line_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "classifier", "--epochs", "1", "--batch-size", "256", "--out", str(out),
            "--quiet", "--device", "cpu"]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--resume", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "belongs to another run" in err
    assert "lr: 0.001 there, 0.01 now" in err and "training_state.pt" in err


def test_ensemble_resume_refuses_finished_members_of_another_run(tmp_path):
    config = ClassifierConfig(**FAST)
    train_ensemble(config, 1, out=tmp_path)
    with pytest.raises(CheckpointError, match=r"member0.model\.pt' belongs to another run.*"
                                              r"weight_decay: 0.0 there, 0.1 now"):
        train_ensemble(ClassifierConfig(**{**FAST, "weight_decay": 0.1}), 1, out=tmp_path,
                       resume=True)
    again = train_ensemble(config, 1, out=tmp_path, resume=True)
    assert again.metrics["member_test_acc"][0] > 0


def test_density_resume_refuses_another_config(tmp_path):
    from generative import train_density

    kwargs = dict(options={"hidden": 8}, test=False, out=tmp_path, val_size=50,
                  examples_per_epoch=200)
    train_density("nade", "digits", 1, lr=3e-3, **kwargs)
    with pytest.raises(CheckpointError, match=r"lr: 0.003 there, 0.001 now"):
        train_density("nade", "digits", 2, lr=1e-3, resume=True, **kwargs)
    with pytest.raises(CheckpointError, match=r"options: \{'hidden': 8\} there, "
                                              r"\{'hidden': 16\} now"):
        train_density("nade", "digits", 2, lr=3e-3, resume=True,
                      **{**kwargs, "options": {"hidden": 16}})
    _, longer = train_density("nade", "digits", 2, lr=3e-3, resume=True, **kwargs)
    assert len(longer.epochs) == 2  # constant schedule: more epochs extend the run
    cosine = {**kwargs, "out": tmp_path / "cosine", "schedule": "cosine"}
    train_density("nade", "digits", 1, **cosine)
    with pytest.raises(CheckpointError, match=r"finished its cosine schedule \(2 of 2 steps"):
        train_density("nade", "digits", 2, resume=True, **cosine)


def test_gan_resume_refuses_another_config(tmp_path):
    from generative import train_gan

    kwargs = dict(options={"latent_dim": 4, "hidden": [8]}, out=tmp_path)
    train_gan("gan", "ring-of-gaussians:n=200", 1, batch_size=50, **kwargs)
    with pytest.raises(CheckpointError, match=r"batch_size: 50 there, 40 now"):
        train_gan("gan", "ring-of-gaussians:n=200", 2, batch_size=40, resume=True, **kwargs)
    _, history = train_gan("gan", "ring-of-gaussians:n=200", 2, batch_size=50, resume=True,
                           **kwargs)
    assert len(history.epochs) == 2
