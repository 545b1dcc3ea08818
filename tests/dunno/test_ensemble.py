"""Deep ensembles of backbone classifiers (dunno.ensemble) in one process."""

from __future__ import annotations

import math

import pytest
import torch

from dunno.checkpoints import load_checkpoint, load_model
from dunno.classify import ClassifierConfig
from dunno.ensemble import EnsembleClassifier, member_ranks, train_ensemble

pytestmark = pytest.mark.one_thread


CONFIG = ClassifierConfig(backbone="lenet5", data="digits", epochs=1, batch_size=64,
                          device="cpu", seed=5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    return train_ensemble(CONFIG, 3, out=out), out


def test_forward_is_the_log_of_the_mean_member_probabilities(trained):
    result, _ = trained
    x = torch.rand(7, 1, 8, 8)
    ens = result.model
    with torch.no_grad():
        members = torch.stack([torch.softmax(m(x), -1) for m in ens.members])  # (M, N, C)
        torch.testing.assert_close(ens(x).exp(), members.mean(0))
        assert ens.member_logits(x).shape == (3, 7, 10)
    assert ens.num_members == 3


def test_members_use_their_own_seeds_and_match_single_runs(trained):
    from dunno.classify import train_classifier

    result, out = trained
    members = result.model.members
    assert not torch.equal(next(members[0].parameters()), next(members[1].parameters()))
    # member 1 is exactly the classifier trained with seed + 1
    alone = train_classifier(CONFIG, seed=CONFIG.seed + 1).model
    for a, b in zip(alone.state_dict().values(), members[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # the ensemble is at least as good as its average member on the test NLL
    m = result.metrics
    assert len(m["member_test_acc"]) == 3 and 0 < m["test_acc"] <= 1
    assert m["member_ranks"] == [0, 0, 0] and m["world_size"] == 1
    assert math.isfinite(m["test_nll"])


def test_checkpoint_round_trip_and_resume(trained):
    result, out = trained
    loaded = load_model(out / "model.pt")
    assert isinstance(loaded, EnsembleClassifier)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.model(x))
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.arch == "ensemble" and ckpt.meta["num_members"] == 3
    # resume reuses the finished members: identical ensemble, no retraining
    again = train_ensemble(CONFIG, 3, out=out, resume=True)
    for a, b in zip(again.model.state_dict().values(), result.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_member_ranks_and_bad_input():
    assert member_ranks(5, 2) == [0, 1, 0, 1, 0]
    assert member_ranks(3, 4) == [0, 1, 2]
    with pytest.raises(ValueError, match="'num_members'.*Got 0"):
        train_ensemble(CONFIG, 0)
    with pytest.raises(ValueError, match="at least one model"):
        EnsembleClassifier([])


def test_cli_trains_an_ensemble(tmp_path, capsys):
    from dunno.cli import main

    rc = main(["train", "classifier", "--data", "digits", "--epochs", "1", "--ensemble", "2",
               "--out", str(tmp_path), "--device", "cpu"])
    assert rc == 0
    assert "ensemble checkpoint" in capsys.readouterr().out
    assert isinstance(load_model(tmp_path / "model.pt"), EnsembleClassifier)
    assert (tmp_path / "metrics.json").exists()
