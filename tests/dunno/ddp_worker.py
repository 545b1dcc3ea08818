"""Worker launched by test_distributed.py under torchrun (2 processes, gloo, 127.0.0.1)."""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from torch import nn

from dunno import distributed
from dunno.data import ArrayDataset, DatasetInfo, make_loader
from dunno.training import classifier_step, fit, seed_everything


def dataset() -> ArrayDataset:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return ArrayDataset(x, y, DatasetInfo("toy", "vector", (6,), 3))


def make_model() -> nn.Module:
    seed_everything(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def train(epochs: int, checkpoint: str | None = None, resume: bool = False) -> nn.Module:
    """The same recipe in one process or under torchrun (global batch 64)."""
    net = make_model()
    model = distributed.wrap_model(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = make_loader(dataset(), 64, shuffle=True, seed=0)
    fit(classifier_step(model, optimizer), loader, epochs=epochs,
        state={"model": model, "optimizer": optimizer}, checkpoint_path=checkpoint,
        resume=resume)
    return net


def metric_data():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=1000)
    labels = rng.integers(0, 4, size=1000)
    scores_in = rng.normal(0, 1, 700).round(1)  # rounded: many ties
    scores_out = rng.normal(1, 1, 300).round(1)
    return probs, labels, scores_in, scores_out


def main(out: str) -> None:
    from evaluation.metrics import CalibrationAccumulator, OODAccumulator

    info = distributed.setup("cpu")
    assert info.world_size == 2
    net = train(epochs=1, checkpoint=f"{out}/state.pt")
    probs, labels, scores_in, scores_out = metric_data()
    cal, ood = CalibrationAccumulator(4), OODAccumulator()
    half = slice(0, 500) if info.rank == 0 else slice(500, 1000)
    for start in range(half.start, half.stop, 100):  # streamed in batches on each rank
        cal.update(probs[start:start + 100], labels[start:start + 100])
    ood.update(np.array_split(scores_in, 2)[info.rank], np.array_split(scores_out, 2)[info.rank])
    distributed.reduce_accumulator(cal)
    distributed.reduce_accumulator(ood)
    if distributed.is_main_process():
        result = {
            "params": [p.detach().double().flatten().tolist() for p in net.parameters()],
            "calibration": cal.compute(),
            "ood": ood.compute(),
        }
        with open(f"{out}/result.json", "w") as handle:
            json.dump(result, handle)
    train_ensemble_members(f"{out}/ensemble")  # member k on rank k mod 2
    distributed.barrier()  # nobody tears the group down while another rank still works
    distributed.teardown()


def train_ensemble_members(out: str | None):
    """An ensemble of 4 LeNet-5s on digits, 1 epoch each: the same call in both runs."""
    from dunno.ensemble import train_ensemble

    return train_ensemble(ensemble_config(), 4, out=out)


def ensemble_config():
    from dunno.classify import ClassifierConfig

    return ClassifierConfig(backbone="lenet5", data="digits", epochs=1, batch_size=64,
                            device="cpu", seed=3)


if __name__ == "__main__":
    main(sys.argv[1])
