"""Score how well a classifier tells in-distribution inputs from everything else.

    python examples/ood_benchmark.py                                  # digits, held-out classes
    python examples/ood_benchmark.py --checkpoint runs/lenet5-mnist/model.pt --data mnist \\
        --ood fashion-mnist,gaussian-noise,mnist:rotate=90,mnist:invert    # needs $DUNNO_DATA

Without ``--checkpoint`` a LeNet-5 is trained on ``--data`` first (by default the digits 0-4
of scikit-learn's bundled ``digits``, so that the digits 5-9 are a held-out-class OOD set).
Then:

1. the Python API: one detector, ``fit`` on the training data, ``score`` a batch (higher =
   more OOD), and the AUROC of in-distribution test images against one OOD set;
2. the suite behind ``dunno ood`` (:func:`uncertainty.ood.run_ood`): every ``--detectors``
   on every ``--ood`` set from one shared forward pass per dataset, with a table (AUROC,
   AUPR-In, AUPR-Out, FPR@95TPR); its CSV, ROC curves and score histograms are written to
   ``--out`` (:func:`evaluation.benchmarks.ood.write_ood_report`);
3. DDU (Mukhoti et al. 2021) on a spectrally normalised ResNet-8, on its penultimate features
   and on the middle stage pooled to 2 x 2 cells next to the last stage's global average
   (``layer=["stages.1@2", "stages.2"]``, the better choice for Fashion-MNIST -> MNIST, see
   ``benchmarks/README.md``). ``--ddu-checkpoint`` reuses such a network.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dunno.checkpoints import load_model
from dunno.classify import ClassifierConfig, train_classifier
from dunno.data import load_dataset, make_loader
from evaluation.benchmarks.ood import write_ood_report
from evaluation.metrics import auroc
from uncertainty.ood import make_detector, run_ood


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None,
                        help="a classifier checkpoint (default: train LeNet-5 on --data first)")
    parser.add_argument("--data", default="digits:classes=0-4", help="in-distribution data")
    parser.add_argument("--ood", default="digits:classes=5-9,gaussian-noise,uniform-noise",
                        help="OOD sets, comma-separated")
    parser.add_argument("--detectors", default="all", help="comma-separated, or all")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (no checkpoint)")
    parser.add_argument("--ddu-checkpoint", default=None,
                        help="a spectrally normalised ResNet checkpoint for part 3 (default: "
                        "train one on --data)")
    parser.add_argument("--out", default="runs/example-ood")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true",
                        help="2 training epochs and a few cheap detectors (tests)")
    args = parser.parse_args(argv)
    out = Path(args.out)

    if args.checkpoint is not None:
        model = load_model(args.checkpoint, device=args.device)
    else:
        config = ClassifierConfig(backbone="lenet5", data=args.data, batch_size=32,
                                  epochs=2 if args.smoke else args.epochs, device=args.device)
        model = train_classifier(config, out=out / "classifier").model

    # 1. The Python API: one detector, fit on training data, score any batch.
    train = load_dataset(args.data, "train")
    test = load_dataset(args.data, "test")
    first_ood = args.ood.split(",")[0]
    ood = load_dataset(first_ood, "test", like=test)
    detector = make_detector("energy", model).fit(make_loader(train, batch_size=256))
    s_in, s_out = detector.score(test.x), detector.score(ood.x)  # (N,) each, higher = OOD
    api_auroc = auroc(s_in, s_out)
    print(f"energy score: AUROC {100 * api_auroc:.2f}% for {args.data} vs {first_ood}")

    # 2. The suite behind `dunno ood`: many detectors, one forward pass per dataset.
    detectors = "msp,energy,mahalanobis,ddu,knn" if args.smoke else args.detectors
    params = {"knn": {"k": 10}} if "knn" in detectors or detectors == "all" else None
    table = run_ood(model, args.data, args.ood, detectors, detector_params=params,
                    device=args.device)
    print(table.summary())
    files = write_ood_report(table, out / "report", histograms=not args.smoke)
    print()
    print(table.to_markdown("auroc"))

    # 3. DDU on a spectrally normalised ResNet: penultimate features vs pooled stages.
    if args.ddu_checkpoint is not None:
        resnet = load_model(args.ddu_checkpoint, device=args.device)
    else:
        options = {"depth": 8, "spectral_norm": True, "spectral_bn": True, "leaky_relu": True}
        if args.smoke:
            options["width"] = 4
        config = ClassifierConfig(backbone="resnet", data=args.data, batch_size=32,
                                  epochs=2 if args.smoke else args.epochs, schedule="cosine",
                                  device=args.device, options=options)
        resnet = train_classifier(config, out=out / "sn-resnet").model
    ddu = {}
    fit_loader = make_loader(train, batch_size=256)
    for label, layer in [("penultimate", None),
                         ("stages.1@2+stages.2", ["stages.1@2", "stages.2"])]:
        detector = make_detector("ddu", resnet, layer=layer).fit(fit_loader)
        ddu[label] = auroc(detector.score(test.x), detector.score(ood.x))
        print(f"DDU on the SN ResNet-8, {label}: AUROC {100 * ddu[label]:.2f}% "
              f"for {args.data} vs {first_ood}")
    return {"api_auroc": api_auroc, "accuracy": table.accuracy, "rows": table.rows,
            "mean": table.mean_by_detector(), "files": files, "ddu_resnet": ddu}


if __name__ == "__main__":
    main()
