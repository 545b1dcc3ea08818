"""The IWAE-trained VAE variant: the importance-weighted bound with k = 50 (Burda et al. 2016)
as the training objective, warm-started from the VAE trained by ``dunno density train vae``
(``runs/vae-mnist``, see benchmarks/README.md), for a 10-minute CPU budget; then the test
IWAE-5000 NLL of both models on the same seeded 1000-image subset of binarised MNIST, with the
same importance-sampling seed.

    python benchmarks/vae_iwae_finetune.py [--minutes 10] [--particles 50]

Needs ``runs/vae-mnist/model.pt`` and the MNIST files under ``$DUNNO_DATA``. Writes
``runs/vae-mnist-iwae50/model.pt`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from dunno.data import DynamicBinarize, load_dataset, make_loader  # noqa: E402
from dunno.training import seed_everything  # noqa: E402
from generative import score_density  # noqa: E402
from generative.latent import VAE  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", default="runs/vae-mnist/model.pt")
    parser.add_argument("--out", default="runs/vae-mnist-iwae50")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--particles", type=int, default=50)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--test-size", type=int, default=1000)
    args = parser.parse_args(argv)

    seed_everything(0)
    ckpt = load_checkpoint(args.init)
    model = VAE(**dict(ckpt.config, objective="iwae", particles=args.particles))
    model.load_state_dict(ckpt.state_dict)
    train = load_dataset("mnist", "train")
    loader = make_loader(train, args.batch_size, shuffle=True, seed=0,
                         transform=DynamicBinarize(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    t0, steps, done = time.perf_counter(), 0, False
    model.train()
    while not done:
        total, n = 0.0, 0
        for xb, _ in loader:
            loss = model.loss(xb)  # -IWAE_k bound, nats per image
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, n, steps = total + float(loss.detach()) * len(xb), n + len(xb), steps + 1
            if time.perf_counter() - t0 > 60 * args.minutes:
                done = True
                break
        print({"examples": n, "train_loss": total / max(n, 1),
               "minutes": (time.perf_counter() - t0) / 60}, flush=True)
    minutes = (time.perf_counter() - t0) / 60
    model.eval()
    out = Path(args.out)
    save_checkpoint(out / "model.pt", model, arch=model.arch, config=model.config,
                    meta={"warm_start": args.init, "minutes": minutes, "steps": steps})
    score = {"samples_k": 5000, "size": args.test_size, "seed": 0, "device": "cpu"}
    _, new = score_density(model, "mnist-binary", "test", **score)
    base = VAE(**ckpt.config)
    base.load_state_dict(ckpt.state_dict)
    _, old = score_density(base.eval(), "mnist-binary", "test", **score)
    summary = {"minutes": minutes, "steps": steps, "epochs": steps * args.batch_size / len(train),
               "test_iwae5000_nll_init": old["nll_nats"],
               "test_iwae5000_nll_iwae": new["nll_nats"], "n": new["n"]}
    print(json.dumps(summary), flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
