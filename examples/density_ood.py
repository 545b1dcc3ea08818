"""Do deep generative models know what they don't know? The Nalisnick et al. (2019) experiment.

    python examples/density_ood.py                       # NADE on Fashion-MNIST vs MNIST
    python examples/density_ood.py --density runs/nade-fashion/model.pt
    python examples/density_ood.py --smoke               # a tiny NADE on digits, seconds

1. Train a density model (NADE, dynamic binarisation) on Fashion-MNIST, or load one.
2. Score Fashion-MNIST test images (in-distribution) and MNIST test images (OOD) by their
   likelihood: the model gives the *unseen* MNIST digits fewer bits/dim -- a higher
   likelihood -- than its own test images (AUROC well below 0.5), because digits are mostly
   black background, which is easy to predict whatever the model was trained on.
3. The fixes, in the same table: the likelihood ratio against a background model trained on
   randomly mutated images (Ren et al. 2019; it does not help on binarised images, see
   :mod:`uncertainty.ood.likelihood_ratio`), the input-complexity correction with a zlib
   compressor (Serrà et al. 2020) and the typicality test on batches of 10 test images
   (Nalisnick et al. 2019b).

Writes ``ood.csv`` / ``ood.json``, ROC curves and the score histograms (the likelihood one in
bits/dim: the two overlapping histograms of the paper's Figure 1) under ``--out``. Needs the
MNIST and Fashion-MNIST files under ``$DUNNO_DATA``; ``--smoke`` uses scikit-learn's digits
(classes 0-4 in, 5-9 out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.checkpoints import load_model  # noqa: E402
from dunno.reporting import format_table  # noqa: E402
from evaluation.benchmarks.ood import write_ood_report  # noqa: E402
from generative import prepare_images, train_density  # noqa: E402
from uncertainty.ood import run_ood  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="in_data", default="fashion-mnist")
    parser.add_argument("--ood", default="mnist", help="OOD set(s), comma-separated")
    parser.add_argument("--density", default=None, help="a trained density checkpoint")
    parser.add_argument("--background", default=None,
                        help="a trained background checkpoint (default: trained here)")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="NADE training budget when no --density is given")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--mutation-rate", type=float, default=0.2)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--background-epochs", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=10,
                        help="typicality test batch size M (1: per example)")
    parser.add_argument("--fit-size", type=int, default=None,
                        help="training images for the background model and the typicality "
                        "entropy estimate (default: all)")
    parser.add_argument("--out", default="runs/example-density-ood")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny NADE on digits, seconds")
    args = parser.parse_args(argv)

    if args.smoke:
        args.in_data, args.ood, args.hidden, args.minutes = "digits:classes=0-4", \
            "digits:classes=5-9", 16, None
        args.background_epochs, args.mutation_rate = 2, 0.3
    out = Path(args.out)

    # 1. the density model of the in-distribution data
    if args.density is not None:
        density = load_model(args.density)
    else:
        binary = args.in_data if args.smoke else f"{args.in_data}-binary"
        density, history = train_density(
            "nade", binary, 2 if args.smoke else 200, out=out / "nade",
            max_minutes=args.minutes, lr=3e-3 if args.smoke else 2e-3, schedule="cosine",
            seed=args.seed, options={"hidden": args.hidden},
            test=not args.smoke)
    background = None if args.background is None else load_model(args.background)

    # 2 + 3. likelihood and its fixes, one pass of the model per dataset, on the images as the
    # binary NADE sees them: the fixed seeded binarisation of each split
    def binarised(dataset, split):
        return prepare_images(dataset, density.pixels, split, "fixed")

    params = {"likelihood-ratio": {"mutation_rate": args.mutation_rate, "l2": args.l2,
                                   "epochs": args.background_epochs, "seed": args.seed},
              "typicality": {"seed": args.seed, "group_size": args.group_size}}
    if background is not None:
        params["likelihood-ratio"] = {}
    table = run_ood(None, args.in_data, args.ood, "all", density=density,
                    density_inputs=binarised, background=background, detector_params=params,
                    fit_size=args.fit_size, seed=args.seed)
    write_ood_report(table, out)
    bpd = table.scores["likelihood"]
    print(f"mean bits/dim: {args.in_data} (test, in) {float(bpd['in'].mean()):.4f}; " + "; ".join(
        f"{name} (OOD) {float(bpd[name].mean()):.4f}" for name in table.out_sets))
    print("AUROC (%), higher score = more OOD:")
    print(format_table(table.pivot("auroc"), digits=2))
    print(f"histograms and ROC curves in {out}")
    means = table.mean_by_detector()
    return {det: means[det]["auroc"] for det in table.detectors}


if __name__ == "__main__":
    main()
