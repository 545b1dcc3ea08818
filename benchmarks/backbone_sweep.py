"""Accuracy of every registered backbone after a fixed short training budget.

    python benchmarks/backbone_sweep.py --data digits --epochs 30

Each backbone is trained with the same recipe (:func:`dunno.classify.train_classifier`:
Adam, cosine schedule, seed 0, best epoch by validation NLL) and evaluated on the test
split; the table reports parameters, test accuracy, test NLL and minutes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno import nets  # noqa: E402
from dunno.classify import ClassifierConfig, train_classifier  # noqa: E402
from dunno.reporting import format_table, write_csv  # noqa: E402

__all__ = ["main", "run_backbone_sweep"]


def run_backbone_sweep(data: str = "digits", epochs: int = 30, *, backbones=None,
                       batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                       device: str = "auto", root=None, out=None) -> list[dict]:
    """Train each backbone for ``epochs`` on ``data``; one result row per backbone."""
    rows = []
    for name in backbones or nets.available():
        config = ClassifierConfig(backbone=name, data=data, epochs=epochs,
                                  batch_size=batch_size, lr=lr, seed=seed, device=device)
        result = train_classifier(config, root=root,
                                  out=None if out is None else Path(out) / name)
        rows.append({
            "backbone": name,
            "parameters": nets.count_parameters(result.model),
            "test_acc": result.metrics["test_acc"],
            "test_nll": result.metrics["test_nll"],
            "best_epoch": result.metrics["best_epoch"],
            "minutes": result.metrics["minutes"],
        })
        table = format_table(rows[-1:])
        print(table if len(rows) == 1 else table.splitlines()[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbones", default=None, help="comma-separated (default: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="write checkpoints and backbones.csv here")
    args = parser.parse_args(argv)
    rows = run_backbone_sweep(args.data, args.epochs, batch_size=args.batch_size,
                              backbones=args.backbones.split(",") if args.backbones else None,
                              device=args.device, out=args.out)
    print()
    print(format_table(rows))
    if args.out:
        write_csv(rows, Path(args.out) / "backbones.csv")
    return rows


if __name__ == "__main__":
    main()
