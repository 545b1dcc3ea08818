"""Fit a NADE to binarised MNIST, print its exact test NLL, reload it, and sample from it.

    python examples/fit_nade.py                          # NADE-500, 30-minute budget
    python examples/fit_nade.py --minutes 5 --hidden 250
    python examples/fit_nade.py --smoke                  # a tiny NADE on digits, seconds

Training uses dynamic binarisation (a fresh Bernoulli draw of the grey MNIST images each
epoch); the test NLL is on the fixed seeded draw of the ``mnist-binary`` test set, in nats
(Larochelle & Murray 2011 report 88.86 nats). Needs the MNIST files under ``$DUNNO_DATA``;
``--smoke`` uses scikit-learn's bundled digits instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative import (  # noqa: E402
    draw_samples,
    load_density_model,
    score_density,
    train_density,
)
from generative.plots import sample_grid  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-binary")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=30.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=200, help="upper bound on epochs")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/example-nade")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny NADE on digits, 2 epochs")
    args = parser.parse_args(argv)

    if args.smoke:
        args.data, args.hidden, args.epochs, args.minutes, args.lr = "digits", 16, 2, None, 3e-3
    # 1. train (dynamic binarisation; the epoch with the best validation NLL is kept)
    model, history = train_density(
        "nade", args.data, args.epochs, out=args.out, max_minutes=args.minutes, lr=args.lr,
        schedule="cosine", seed=args.seed, options={"hidden": args.hidden},
    )
    metrics = history.metrics
    print(f"NADE-{args.hidden} on {args.data}: {metrics['epochs']} epochs in "
          f"{metrics['train_minutes']:.1f} min, test NLL {metrics['test_nll_nats']:.2f} nats "
          f"({metrics['test_bits_per_dim']:.4f} bits/dim)")

    # 2. the checkpoint rebuilds the same model without running code from the file
    reloaded = load_density_model(history.checkpoint)
    binarize = None if args.data.split(":")[0].endswith("-binary") else "fixed"
    nll, summary = score_density(reloaded, args.data, "test", binarize=binarize)
    print(f"reloaded from {history.checkpoint}: test NLL {summary['nll_nats']:.2f} nats over "
          f"{summary['n']} images ({summary['images_per_s']:.0f} images/s)")

    # 3. ancestral samples, one pixel at a time
    path = Path(args.out) / "nade_samples.png"
    samples = draw_samples(reloaded, 16 if args.smoke else 64, seed=args.seed)
    sample_grid(samples, pixels=reloaded.pixels, title="NADE samples", path=path)
    print(f"samples: {path}")
    return {**{k: v for k, v in metrics.items() if isinstance(v, int | float)},
            "reloaded_test_nll_nats": summary["nll_nats"]}


if __name__ == "__main__":
    main()
