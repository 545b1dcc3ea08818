"""Calibrate a trained classifier post hoc and compare the methods before/after.

    python examples/calibrate_classifier.py                          # LeNet-5 on digits
    python examples/calibrate_classifier.py --checkpoint runs/lenet5-mnist/model.pt \\
        --data mnist --method all                                    # needs $DUNNO_DATA

Without ``--checkpoint`` a LeNet-5 is trained on ``--data`` first. Then:

1. the five-line Python API: wrap the model, fit temperature scaling on the held-out
   ``val`` split (one forward pass), predict calibrated probabilities;
2. the comparison behind ``dunno calibrate`` (:func:`uncertainty.calibration.run_calibration`):
   every ``--method`` fitted on the same cached logits, with a before/after table (accuracy,
   ECE, adaptive ECE, MCE, NLL, Brier); its reliability diagrams and JSON are written to
   ``--out`` (:func:`evaluation.benchmarks.calibration.write_calibration_report`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dunno.checkpoints import load_model
from dunno.classify import ClassifierConfig, train_classifier
from dunno.data import load_dataset, make_loader
from evaluation.benchmarks.calibration import write_calibration_report
from evaluation.metrics import expected_calibration_error, nll
from uncertainty.calibration import CalibratedClassifier, run_calibration


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None,
                        help="a classifier checkpoint (default: train LeNet-5 first)")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (no checkpoint)")
    parser.add_argument("--method", default="all",
                        help="calibration methods for the runner: comma-separated or all")
    parser.add_argument("--out", default="runs/example-calibration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true",
                        help="train for 2 epochs and run temperature scaling only (tests)")
    args = parser.parse_args(argv)
    out = Path(args.out)

    if args.checkpoint is not None:
        model = load_model(args.checkpoint, device=args.device)
    else:
        config = ClassifierConfig(backbone="lenet5", data=args.data, batch_size=32,
                                  epochs=2 if args.smoke else args.epochs, device=args.device)
        model = train_classifier(config, out=out / "classifier").model

    # 1. The Python API: calibrate a trained model in five lines.
    val_loader = make_loader(load_dataset(args.data, "val"), batch_size=500)
    clf = CalibratedClassifier(model, method="temperature").fit(val_loader)
    test = load_dataset(args.data, "test")
    probs = clf.predict_proba(test.x)  # (N, C) calibrated probabilities
    print(f"fitted temperature T = {clf.calibrator_.temperature_:.4f}")

    with torch.no_grad():
        raw = torch.softmax(clf.logits(test.x).double(), dim=1)
    before = {"ece": expected_calibration_error(raw, test.y), "nll": nll(raw, test.y)}
    after = {"ece": expected_calibration_error(probs, test.y), "nll": nll(probs, test.y)}
    print(f"test ECE {before['ece']:.4f} -> {after['ece']:.4f}, "
          f"NLL {before['nll']:.4f} -> {after['nll']:.4f}")
    clf.save(out / "temperature.pt")  # CalibratedClassifier.load(path, model) restores it

    # 2. The comparison behind `dunno calibrate`: several methods on the same cached logits.
    methods = "temperature" if args.smoke else args.method
    result = run_calibration(model, args.data, methods, device=args.device)
    print(result.summary())
    files = write_calibration_report(result, out)
    for metric in ("ece", "nll", "brier"):
        print(f"lowest test {metric}: {result.best(metric)}")
    return {"temperature": clf.calibrator_.temperature_, "before": before, "after": after,
            "rows": result.rows(), "files": files}


if __name__ == "__main__":
    main()
