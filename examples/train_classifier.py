"""Train a backbone classifier, save a checkpoint, load it back and evaluate it.

    python examples/train_classifier.py --backbone lenet5 --data digits --epochs 30
    python examples/train_classifier.py --data mnist --epochs 10     # needs $DUNNO_DATA

The checkpoint (``OUT/model.pt``) is what ``dunno calibrate`` / ``dunno ood`` load.
"""

from __future__ import annotations

import argparse

from dunno.checkpoints import load_model
from dunno.classify import ClassifierConfig, train_classifier
from dunno.data import load_dataset, make_loader
from dunno.training import evaluate_classifier


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="lenet5")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="runs/example-classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="three epochs, for tests")
    args = parser.parse_args(argv)

    config = ClassifierConfig(backbone=args.backbone, data=args.data,
                              epochs=3 if args.smoke else args.epochs,
                              batch_size=args.batch_size, seed=args.seed)
    result = train_classifier(config, out=args.out)
    print(f"{args.backbone} on {args.data}: test accuracy {result.metrics['test_acc']:.4f}, "
          f"test NLL {result.metrics['test_nll']:.4f} nats")

    # The checkpoint rebuilds the same network without running any code from the file.
    model = load_model(result.checkpoint)
    test = make_loader(load_dataset(args.data, "test"), 500)
    reloaded = evaluate_classifier(model, test)
    print(f"reloaded from {result.checkpoint}: test accuracy {reloaded['acc']:.4f}")
    return {**result.metrics, "reloaded_acc": reloaded["acc"]}


if __name__ == "__main__":
    main()
