"""Training on colour images: the CIFAR augmentation (crops with padding 4, horizontal flips),
per-channel normalisation filled from the training split, and the command-line journey
`dunno train classifier --data cifar10` -> `dunno ood --in cifar10 --out cifar100,svhn` on
tiny files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_colour import install

from dunno.classify import (
    ClassifierConfig,
    augmentation_for,
    random_crop,
    random_flip,
    train_classifier,
)
from dunno.data import DatasetInfo, channel_stats, load_dataset

pytestmark = pytest.mark.one_thread


def _info(shape, augmentation=None):
    return DatasetInfo("x", "image", shape, 10, (0.0, 1.0), "",
                       {"augmentation": augmentation} if augmentation else {})


def test_the_usual_augmentation_of_each_kind_of_data():
    cifar = _info((3, 32, 32), {"crop_padding": 4, "flip": True})
    grey, tiny, svhn = _info((1, 28, 28)), _info((1, 8, 8)), _info((3, 32, 32))
    usual = ClassifierConfig()
    assert augmentation_for(usual, cifar) == (4, True)
    assert augmentation_for(usual, grey) == (2, False)  # as before the flips existed
    assert augmentation_for(usual, tiny) == (0, False)
    assert augmentation_for(usual, svhn) == (2, False)  # digits: never mirrored by default
    assert augmentation_for(ClassifierConfig(augment=False), cifar) == (0, False)
    assert augmentation_for(ClassifierConfig(augment=True), tiny) == (2, False)
    assert augmentation_for(ClassifierConfig(flip=False), cifar) == (4, False)
    assert augmentation_for(ClassifierConfig(crop_padding=0), cifar) == (0, True)
    assert augmentation_for(ClassifierConfig(crop_padding=3, flip=True), grey) == (3, True)
    with pytest.raises(ValueError, match="'crop_padding' parameter of ClassifierConfig must be "
                                         "an int >= 0"):
        ClassifierConfig(crop_padding=-1).validate()
    with pytest.raises(ValueError, match="'flip' parameter of ClassifierConfig must be a bool"):
        ClassifierConfig(flip=1).validate()


def test_random_crop_translates_within_the_padding():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1  # no zeros
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 4, g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4,) * 4)
    for i in range(2):  # each image is some window of its own zero-padded copy
        windows = [(dy, dx) for dy in range(9) for dx in range(9)
                   if torch.equal(padded[i, :, dy:dy + 6, dx:dx + 6], out[i])]
        assert len(windows) == 1


def test_random_flip_mirrors_about_half_of_the_images():
    x = torch.rand(400, 3, 4, 5)
    g = torch.Generator().manual_seed(0)
    out = random_flip(x, g)
    same = [torch.equal(out[i], x[i]) for i in range(400)]
    mirrored = [torch.equal(out[i], x[i].flip(-1)) for i in range(400)]
    assert all(a != b for a, b in zip(same, mirrored, strict=True))  # exactly one of the two
    assert 160 < sum(mirrored) < 240  # Binomial(400, 1/2): mean 200, sd 10
    again = random_flip(x, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)  # seeded


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    root = tmp_path / "data"
    return root, install(root, monkeypatch)


def test_normalisation_is_the_training_splits_channel_statistics(tiny):
    root, _ = tiny
    config = ClassifierConfig(backbone="resnet18-cifar", data="cifar10", epochs=1, batch_size=8,
                              lr=0.01, optimizer="sgd", weight_decay=5e-4, device="cpu")
    result = train_classifier(config, root=root)
    train = load_dataset("cifar10", "train", root)
    x = train.x.double()
    mean = x.mean(dim=(0, 2, 3))
    std = ((x - mean.view(1, 3, 1, 1)) ** 2).mean(dim=(0, 2, 3)).sqrt()
    np.testing.assert_allclose(result.model.config["mean"], mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(result.model.config["std"], std.numpy(), rtol=1e-12)
    assert channel_stats(train.x) == (result.model.config["mean"], result.model.config["std"])
    # the user's own values win; normalize=False leaves the inputs as they are
    from dunno.classify import _normalisation

    options = {"mean": [0.5] * 3, "std": [0.25] * 3}
    _normalisation(config, options, train)
    assert options == {"mean": [0.5] * 3, "std": [0.25] * 3}
    options = {}
    _normalisation(ClassifierConfig(backbone="resnet18-cifar", normalize=False), options, train)
    assert options == {}
    _normalisation(ClassifierConfig(backbone="resnet"), options, train)  # no mean/std options
    assert options == {}
    with pytest.raises(ValueError, match="'normalize' parameter of ClassifierConfig needs a "
                                         "backbone with 'mean' / 'std' options"):
        train_classifier(config, root=root, backbone="lenet5", normalize=True)


def test_cli_train_on_cifar10_then_ood_against_cifar100_and_svhn(tiny, tmp_path, capsys):
    from dunno.cli import main

    root, _ = tiny
    run = tmp_path / "run"
    assert main(["train", "classifier", "--data", "cifar10", "--backbone", "resnet18-cifar",
                 "--epochs", "1", "--batch-size", "8", "--optimizer", "sgd", "--lr", "0.01",
                 "--weight-decay", "5e-4", "--data-dir", str(root), "--out", str(run),
                 "--device", "cpu", "--quiet"]) == 0
    saved = json.loads((run / "metrics.json").read_text())["config"]
    assert (saved["crop_padding"], saved["flip"], saved["normalize"]) == (None, None, None)
    report = tmp_path / "report"
    assert main(["ood", "--checkpoint", str(run / "model.pt"), "--in", "cifar10", "--out",
                 "cifar100,svhn,gaussian-noise", "--detectors", "msp,energy,knn",
                 "--param", "knn.k=2", "--data-dir", str(root), "--report-dir", str(report),
                 "--no-histograms", "--device", "cpu"]) == 0
    table = json.loads((report / "ood.json").read_text())
    sets = {(r["detector"], r["ood_set"]) for r in table["rows"]}
    assert sets == {(d, o) for d in ("msp", "energy", "knn")
                    for o in ("cifar100", "svhn", "gaussian-noise")}
    assert all(0.0 <= r["auroc"] <= 1.0 for r in table["rows"])
    assert "cifar100" in capsys.readouterr().out
