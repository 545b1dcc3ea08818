"""dunno.training: the fit loop, resume, early stopping, Pyro steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dunno.data import ArrayDataset, load_dataset, make_loader
from dunno.errors import CheckpointError
from dunno.training import classifier_step, evaluate_classifier, fit, seed_everything


def _setup(seed=0):
    seed_everything(seed)
    data = load_dataset("digits", "train")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = make_loader(data, 128, shuffle=True, seed=seed)
    return model, opt, loader


def test_fit_reduces_the_loss_and_records_history():
    model, opt, loader = _setup()
    val = make_loader(load_dataset("digits", "val"), 500)
    before = evaluate_classifier(model, val)["loss"]
    history = fit(classifier_step(model, opt), loader, epochs=5,
                  state={"model": model, "optimizer": opt},
                  validate=lambda: {"val_loss": evaluate_classifier(model, val)["loss"]})
    assert len(history.epochs) == 5
    assert history["loss"][-1] < history["loss"][0]
    assert min(history["val_loss"]) < before / 3
    assert not model.training  # left in eval mode


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    model, opt, loader = _setup()
    fit(classifier_step(model, opt), loader, epochs=4, state={"model": model, "optimizer": opt},
        checkpoint_path=tmp_path / "straight.pt")
    straight = [p.detach().clone() for p in model.parameters()]

    model2, opt2, loader2 = _setup()
    fit(classifier_step(model2, opt2), loader2, epochs=2,
        state={"model": model2, "optimizer": opt2}, checkpoint_path=tmp_path / "state.pt")
    # "crash": brand-new objects, then resume from the saved state
    model3, opt3, loader3 = _setup(seed=0)
    with torch.no_grad():
        for p in model3.parameters():
            p.add_(1.0)  # make sure the weights really come from the checkpoint
    history = fit(classifier_step(model3, opt3), loader3, epochs=4,
                  state={"model": model3, "optimizer": opt3},
                  checkpoint_path=tmp_path / "state.pt", resume=True)
    assert [int(e["epoch"]) for e in history.epochs] == [1, 2, 3, 4]
    for a, b in zip(straight, model3.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_from_another_setup_is_refused(tmp_path):
    model, opt, loader = _setup()
    fit(classifier_step(model, opt), loader, epochs=1, state={"model": model},
        checkpoint_path=tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="another training setup"):
        fit(classifier_step(model, opt), loader, epochs=2,
            state={"model": model, "optimizer": opt}, checkpoint_path=tmp_path / "s.pt",
            resume=True)


@pytest.mark.parametrize(("key", "value"), [("bad_epochs", None), ("epoch", "two"),
                                            ("history", 3)])
def test_resume_from_a_damaged_state_names_the_file(tmp_path, key, value):
    from dunno.checkpoints import atomic_save, safe_load

    model, opt, loader = _setup()
    fit(classifier_step(model, opt), loader, epochs=1, state={"model": model, "optimizer": opt},
        checkpoint_path=tmp_path / "s.pt")
    saved = safe_load(tmp_path / "s.pt")
    if value is None:
        del saved[key]
    else:
        saved[key] = value
    atomic_save(saved, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"s\.pt' is damaged: its run bookkeeping"):
        fit(classifier_step(model, opt), loader, epochs=2,
            state={"model": model, "optimizer": opt}, checkpoint_path=tmp_path / "s.pt",
            resume=True)


def test_early_stopping_restores_the_best_weights():
    model, opt, loader = _setup()
    scores = iter([3.0, 1.0, 2.0, 2.5, 2.7, 9.0])
    snapshots = []

    def validate():
        snapshots.append([p.detach().clone() for p in model.parameters()])
        return {"val_loss": next(scores)}

    history = fit(classifier_step(model, opt), loader, epochs=6, state={"model": model},
                  validate=validate, patience=3)
    assert history.stopped_early and len(history.epochs) == 5 and history.best_epoch == 2
    for a, b in zip(snapshots[1], model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_dict_steps_pyro_svi_and_bad_arguments():
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    data = torch.randn(200) * 0.5 + 3.0

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(mu, 0.5), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    loader = [(data,)] * 20
    history = fit(lambda batch: {"elbo_loss": svi.step(batch[0])}, loader, epochs=10)
    assert history["elbo_loss"][-1] < history["elbo_loss"][0]
    assert abs(pyro.param("loc").item() - data.mean().item()) < 0.1

    with pytest.raises(ValueError, match="'epochs' parameter of fit must be an int >= 1"):
        fit(lambda b: 0.0, loader, epochs=0)
    with pytest.raises(FloatingPointError, match="diverged"):
        fit(lambda b: float("nan"), loader, epochs=1)
    with pytest.raises(ValueError, match="training set is empty"):
        fit(lambda b: 0.0, [], epochs=1)


def test_two_player_step_fits_the_loop_and_resumes(tmp_path):
    """A GAN-style step (two modules, two optimisers, dict of losses) through fit + resume."""

    def make(seed=0):
        seed_everything(seed)
        gen, disc = nn.Linear(2, 2), nn.Linear(2, 1)
        opt_g = torch.optim.Adam(gen.parameters(), lr=1e-2)
        opt_d = torch.optim.Adam(disc.parameters(), lr=1e-2)
        real = torch.randn(256, 2) + 3.0
        info = load_dataset("two-moons", "train").info
        loader = make_loader(ArrayDataset(real, None, info), 64, shuffle=True, seed=seed)
        bce = nn.functional.binary_cross_entropy_with_logits

        def step(batch):
            x = batch[0]
            fake = gen(torch.randn_like(x))
            d_loss = bce(disc(x), torch.ones(len(x), 1)) + bce(
                disc(fake.detach()), torch.zeros(len(x), 1))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = bce(disc(fake), torch.ones(len(x), 1))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            return {"d_loss": d_loss, "g_loss": g_loss}

        state = {"gen": gen, "disc": disc, "opt_g": opt_g, "opt_d": opt_d}
        return gen, step, loader, state

    gen, step, loader, state = make()
    history = fit(step, loader, epochs=4, state=state)
    assert set(history.epochs[0]) >= {"d_loss", "g_loss"}
    straight = gen.weight.detach().clone()
    gen2, step2, loader2, state2 = make()
    fit(step2, loader2, epochs=2, state=state2, checkpoint_path=tmp_path / "gan.pt")
    gen3, step3, loader3, state3 = make()
    fit(step3, loader3, epochs=4, state=state3, checkpoint_path=tmp_path / "gan.pt", resume=True)
    assert torch.equal(gen3.weight, straight)


def test_training_state_file_lives_in_out_or_in_a_removed_temporary_directory(tmp_path):
    from dunno.training import training_state_file

    with training_state_file(tmp_path / "run") as path:
        assert path == tmp_path / "run" / "training_state.pt" and path.parent.is_dir()
        path.write_bytes(b"x")
    assert path.exists()  # kept: the run can resume
    with training_state_file(None, "dunno-test-") as path:
        assert path.parent.name.startswith("dunno-test-") and path.parent.is_dir()
        path.write_bytes(b"x")
    assert not path.parent.exists()


class _FakeClock:
    """A clock that only moves when a step says so: each step takes one 'second'."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _timed_setup(clock):
    model, opt, loader = _setup()  # 1258 digits, batches of 128: 10 batches per epoch
    train = classifier_step(model, opt)

    def step(batch):
        clock.now += 1.0
        return train(batch)

    return model, opt, loader, step


def test_time_budget_stops_between_steps_and_resume_continues_it(tmp_path):
    clock = _FakeClock()
    model, opt, loader, step = _timed_setup(clock)
    history = fit(step, loader, epochs=5, state={"model": model, "optimizer": opt},
                  max_seconds=2.5, clock=clock, checkpoint_path=tmp_path / "state.pt")
    # steps at 0, 1 and 2 seconds; at 3 >= 2.5 no new step starts
    assert history.steps == 3 and history.train_seconds == 3.0
    assert len(history.epochs) == 1 and history.stopped_for_budget
    assert history.examples == 3 * 128 and history.epochs[0]["examples"] == 384.0
    assert history.as_dict()["stopped_for_budget"] is True
    # the same budget again: nothing left to do
    clock2 = _FakeClock()
    model2, opt2, loader2, step2 = _timed_setup(clock2)
    again = fit(step2, loader2, epochs=5, state={"model": model2, "optimizer": opt2},
                max_seconds=2.5, clock=clock2, checkpoint_path=tmp_path / "state.pt",
                resume=True)
    assert again.steps == 3 and len(again.epochs) == 1 and again.stopped_for_budget
    # a larger budget continues with the next epoch: 3 more steps (at 3, 4 and 5 seconds)
    more = fit(step2, loader2, epochs=5, state={"model": model2, "optimizer": opt2},
               max_seconds=5.5, clock=clock2, checkpoint_path=tmp_path / "state.pt",
               resume=True)
    assert more.steps == 6 and more.train_seconds == 6.0 and more.stopped_for_budget
    assert [int(e["epoch"]) for e in more.epochs] == [1, 2]
    assert [e["train_seconds"] for e in more.epochs] == [3.0, 6.0]


def test_an_epoch_that_ends_on_the_budget_is_the_last():
    clock = _FakeClock()
    model, opt, loader, step = _timed_setup(clock)
    history = fit(step, loader, epochs=3, state={"model": model, "optimizer": opt},
                  max_seconds=10, clock=clock)
    assert history.steps == 10 and len(history.epochs) == 1 and history.stopped_for_budget
    unbounded = fit(step, loader, epochs=2, state={"model": model, "optimizer": opt})
    assert unbounded.steps == 20 and not unbounded.stopped_for_budget
    with pytest.raises(ValueError, match=r"'max_seconds' parameter of fit must be None or a "
                                         r"float in \(0, inf\)"):
        fit(step, loader, epochs=1, max_seconds=0)
