"""dunno.schedules: the cosine schedule, and resuming a run with more epochs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dunno.data import load_dataset, make_loader
from dunno.errors import CheckpointError
from dunno.schedules import LearningRateSchedule
from dunno.training import classifier_step, fit, seed_everything


def _optimizer(lr=0.1):
    return torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=lr)


def _lrs(schedule, optimizer, steps):
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    return seen


def test_cosine_matches_the_closed_form_and_ends_at_zero():
    opt = _optimizer(0.1)
    lrs = _lrs(LearningRateSchedule(opt, 4, "cosine"), opt, 5)
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)] + [0.0]
    assert lrs == pytest.approx(expected, abs=1e-12)
    opt = _optimizer(0.1)
    assert _lrs(LearningRateSchedule(opt, 4, "constant"), opt, 6) == [0.1] * 6


def test_same_total_continues_exactly():
    opt = _optimizer()
    straight = _lrs(LearningRateSchedule(opt, 10), opt, 10)
    opt1 = _optimizer()
    first = LearningRateSchedule(opt1, 10)
    head = _lrs(first, opt1, 4)
    opt2 = _optimizer()
    second = LearningRateSchedule(opt2, 10)
    second.load_state_dict(first.state_dict())
    assert head + _lrs(second, opt2, 6) == pytest.approx(straight, abs=1e-15)


def test_a_longer_run_replans_from_the_current_lr_without_a_jump():
    opt1 = _optimizer(0.1)
    first = LearningRateSchedule(opt1, 10)  # planned 10 steps, interrupted after 4
    head = _lrs(first, opt1, 4)
    lr_now = opt1.param_groups[0]["lr"]  # the lr of step 5 under the old plan
    opt2 = _optimizer(0.1)
    second = LearningRateSchedule(opt2, 20)  # resumed with twice the epochs
    second.load_state_dict(first.state_dict())
    tail = _lrs(second, opt2, 17)
    assert tail[0] == pytest.approx(lr_now, abs=1e-15)  # continues from where it was
    # the new plan: cosine from lr_now at step 4 to 0 at step 20
    expected = [lr_now * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(16)] + [0.0]
    assert tail == pytest.approx(expected, abs=1e-12)
    sequence = head + tail
    assert all(b <= a + 1e-15 for a, b in zip(sequence, sequence[1:], strict=False))
    # the old torch behaviour (planned over 10, then continued) would rise again after 10
    assert max(tail) <= lr_now


def test_extending_a_finished_cosine_run_or_changing_its_kind_is_refused():
    opt = _optimizer()
    done = LearningRateSchedule(opt, 4)
    _lrs(done, opt, 4)
    with pytest.raises(ValueError, match=r"finished its cosine schedule \(4 of 4 steps\).*"
                                         r"total 8 steps"):
        LearningRateSchedule(_optimizer(), 8).load_state_dict(done.state_dict())
    constant = LearningRateSchedule(_optimizer(), 4, "constant")
    LearningRateSchedule(_optimizer(), 8, "constant").load_state_dict(constant.state_dict())
    with pytest.raises(ValueError, match="kind 'constant', this run 'cosine'"):
        LearningRateSchedule(_optimizer(), 4).load_state_dict(constant.state_dict())
    with pytest.raises(ValueError, match="unit 'steps', this run 'seconds'"):
        LearningRateSchedule(_optimizer(), 4, unit="seconds").load_state_dict(
            done.state_dict())


@pytest.mark.parametrize(("kwargs", "name", "value"), [
    ({"total": 0}, "total", "0"), ({"total": float("nan")}, "total", "nan"),
    ({"total": 4, "kind": "step"}, "kind", "'step'"),
    ({"total": 4, "unit": "epochs"}, "unit", "'epochs'"),
])
def test_bad_parameters_are_named(kwargs, name, value):
    with pytest.raises(ValueError, match=rf"'{name}' parameter of LearningRateSchedule.*"
                                         rf"Got {value} instead"):
        LearningRateSchedule(_optimizer(), **kwargs)


class _Interrupt(Exception):
    pass


def _setup(lr_log, total_epochs):
    seed_everything(0)
    data = load_dataset("digits", "train")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = make_loader(data, 256, shuffle=True, seed=0)
    schedule = LearningRateSchedule(opt, total_epochs * len(loader))
    inner = classifier_step(model, opt, scheduler=schedule)

    def step(batch):
        lr_log.append(opt.param_groups[0]["lr"])
        return inner(batch)

    return step, loader, {"model": model, "optimizer": opt, "schedule": schedule}


def test_fit_resumed_with_more_epochs_continues_the_lr_downward(tmp_path):
    """An interrupted 4-epoch run resumed as a 6-epoch run: the learning rate goes on from
    its value at the interruption and decays to 0 at the new end, never upward."""
    before, after = [], []
    step, loader, state = _setup(before, 4)

    def crash(epoch, record):
        if epoch == 3:
            raise _Interrupt  # before epoch 3 is saved: the state holds 2 epochs

    with pytest.raises(_Interrupt):
        fit(step, loader, epochs=4, state=state, checkpoint_path=tmp_path / "s.pt",
            on_epoch_end=crash, run_config={"lr": 0.1, "epochs": 4})
    per_epoch = len(loader)
    saved_part = before[: 2 * per_epoch]
    step, loader, state = _setup(after, 6)
    history = fit(step, loader, epochs=6, state=state, checkpoint_path=tmp_path / "s.pt",
                  resume=True, run_config={"lr": 0.1, "epochs": 6})
    assert [int(e["epoch"]) for e in history.epochs] == [1, 2, 3, 4, 5, 6]
    assert len(after) == 4 * per_epoch
    lr_at_stop = 0.1 * 0.5 * (1 + math.cos(math.pi * 2 / 4))  # epoch 2 of 4 done
    assert after[0] == pytest.approx(lr_at_stop)
    sequence = saved_part + after
    assert all(b <= a + 1e-12 for a, b in zip(sequence, sequence[1:], strict=False))
    assert after[-1] == pytest.approx(lr_at_stop * 0.5 * (1 + math.cos(
        math.pi * (4 * per_epoch - 1) / (4 * per_epoch))))
    assert state["optimizer"].param_groups[0]["lr"] == 0.0


def test_fit_refuses_fewer_epochs_than_trained_and_other_configs(tmp_path):
    step, loader, state = _setup([], 2)
    fit(step, loader, epochs=2, state=state, checkpoint_path=tmp_path / "s.pt",
        run_config={"lr": 0.1, "epochs": 2})
    step, loader, state = _setup([], 1)
    with pytest.raises(ValueError, match=r"'epochs' parameter must be >= the 2 epochs.*"
                                         r"Got 1 instead"):
        fit(step, loader, epochs=1, state=state, checkpoint_path=tmp_path / "s.pt",
            resume=True, run_config={"lr": 0.1, "epochs": 1})
    step, loader, state = _setup([], 2)
    with pytest.raises(CheckpointError, match=r"lr: 0.1 there, 0.2 now"):
        fit(step, loader, epochs=2, state=state, checkpoint_path=tmp_path / "s.pt",
            resume=True, run_config={"lr": 0.2, "epochs": 2})
