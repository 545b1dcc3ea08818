"""VAE training speed: our loop (``generative.latent.VAE.loss`` in a step function run by
``dunno.training.fit``) against the plain loop of Pyro's VAE tutorial (``pyro.module`` + global
parameter store, ``pyro.optim.Adam``, ``SVI(model, guide, optim, Trace_ELBO())``), written out
below, on the same images in the same run.

    python benchmarks/bench_vae.py                       # MNIST train split, 2 rounds
    python benchmarks/bench_vae.py --threads 1 --examples 20000
    python benchmarks/bench_vae.py --smoke               # random images, for tests

Both models are the tutorial's 784-400-20 MLP (Kingma & Welling 2014) with a Bernoulli
likelihood, Adam with learning rate 1e-3, batches of 256 and dynamic binarisation (a fresh
Bernoulli draw of the grey images per batch, from the same seeded loader for both). The
tutorial uses softplus hidden units and a sigmoid output fed to ``Bernoulli(probs)``; ours uses
ReLU and ``Bernoulli(logits)``. Epochs alternate (tutorial, ours, tutorial, ...) and the best
epoch time of each is reported with the ratio tutorial / ours (> 1: ours is faster), and the
mean training loss (negative ELBO per image, nats) of each one's last epoch as a check that both
learn alike. Needs the MNIST files under ``$DUNNO_DATA`` (``--smoke`` does not).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402

from dunno.data import ArrayDataset, DynamicBinarize, load_dataset, make_loader  # noqa: E402
from dunno.data.base import DatasetInfo  # noqa: E402
from dunno.reporting import format_table  # noqa: E402
from dunno.training import fit  # noqa: E402
from generative.latent import VAE  # noqa: E402

__all__ = ["TutorialVAE", "main", "time_epochs"]


# ----------------------------------------------------------------------------- the baseline
class _Encoder(nn.Module):
    def __init__(self, z_dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x):
        x = x.reshape(-1, 784)
        hidden = self.softplus(self.fc1(x))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class _Decoder(nn.Module):
    def __init__(self, z_dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, 784)
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z):
        hidden = self.softplus(self.fc1(z))
        return self.sigmoid(self.fc21(hidden))


class TutorialVAE(nn.Module):
    """The VAE of Pyro's tutorial ("Variational Autoencoders", pyro.ai/examples/vae.html),
    784-400-20, registered in Pyro's global parameter store with ``pyro.module``."""

    def __init__(self, z_dim: int = 20, hidden_dim: int = 400):
        super().__init__()
        self.encoder = _Encoder(z_dim, hidden_dim)
        self.decoder = _Decoder(z_dim, hidden_dim)
        self.z_dim = z_dim

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder(z)
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                        obs=x.reshape(-1, 784))

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


# ----------------------------------------------------------------------------- timing
def _images(examples: int | None, smoke: bool) -> ArrayDataset:
    if smoke:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(512, 1, 28, 28, generator=g)
        info = DatasetInfo(name="random", kind="image", shape=(1, 28, 28), num_classes=None,
                           value_range=(0.0, 1.0), description="uniform noise images")
        return ArrayDataset(x, None, info)
    train = load_dataset("mnist", "train")
    if examples is not None and examples < len(train):
        train = train.subset(torch.arange(examples))
    return train


def time_epochs(data: ArrayDataset, rounds: int = 2, batch_size: int = 256,
                seed: int = 0) -> dict:
    """Alternate ``rounds`` epochs of the tutorial loop and of ours on ``data`` (grey images,
    binarised per batch); returns the best epoch seconds of each, their ratio and each one's
    last-epoch mean loss (nats per image)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    tutorial = TutorialVAE()
    svi = SVI(tutorial.model, tutorial.guide, pyro.optim.Adam({"lr": 1e-3}), loss=Trace_ELBO())

    torch.manual_seed(seed)
    ours = VAE((1, 28, 28), latent_dim=20, hidden=(400,))
    optimizer = torch.optim.Adam(ours.parameters(), lr=1e-3)

    def our_step(batch):
        loss = ours.loss(batch[0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def loader():
        return make_loader(data, batch_size, shuffle=True, seed=seed,
                           transform=DynamicBinarize(seed))

    times = {"tutorial": [], "ours": []}
    losses = {}
    for _ in range(rounds):
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for x, _ in loader():
            total += svi.step(x)
            count += len(x)
        times["tutorial"].append(time.perf_counter() - t0)
        losses["tutorial"] = total / count

        t0 = time.perf_counter()
        history = fit(our_step, loader(), epochs=1, state={"vae": ours})
        times["ours"].append(time.perf_counter() - t0)
        losses["ours"] = history["loss"][-1]
    pyro.clear_param_store()
    best = {k: min(v) for k, v in times.items()}
    return {"examples": len(data), "batch_size": batch_size, "rounds": rounds,
            "tutorial_s": best["tutorial"], "ours_s": best["ours"],
            "ratio": best["tutorial"] / best["ours"], "times": times,
            "tutorial_loss": losses["tutorial"], "ours_loss": losses["ours"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="epochs of each loop")
    parser.add_argument("--examples", type=int, default=None,
                        help="use the first N training images (default: all 55,000)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--smoke", action="store_true", help="512 random images, 1 round")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.rounds = 1
    data = _images(args.examples, args.smoke)
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {torch.get_num_threads()} "
          f"thread(s); {len(data)} images, batch {args.batch}")
    result = time_epochs(data, args.rounds, args.batch)
    print(format_table([
        {"loop": "Pyro tutorial (SVI, param store)", "best_epoch_s": result["tutorial_s"],
         "images/s": result["examples"] / result["tutorial_s"],
         "last_epoch_loss": result["tutorial_loss"]},
        {"loop": "dunno VAE.loss + fit", "best_epoch_s": result["ours_s"],
         "images/s": result["examples"] / result["ours_s"],
         "last_epoch_loss": result["ours_loss"]},
    ], digits=3))
    print(f"ratio tutorial / ours = {result['ratio']:.2f} (> 1: ours is faster)")
    return result


if __name__ == "__main__":
    main()
