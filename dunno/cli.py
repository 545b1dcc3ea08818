"""The ``dunno`` command.

Subcommands (``dunno SUBCOMMAND --help`` for each):

* ``datasets`` -- list datasets and whether their files are present and verified;
  ``--download NAME`` fetches MNIST / Fashion-MNIST.
* ``train classifier`` -- train a backbone from :mod:`dunno.nets` on a dataset;
  ``train --list`` shows the backbones with parameter counts.
* ``demo`` -- the end-to-end tour on the bundled ``digits`` data, writing ``report.md``.

Every command prints a readable table and writes machine-readable JSON/CSV (and PNG
plots) to its ``--out`` directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]


def _add_common(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="data directory (default: $DUNNO_DATA, else ~/.cache/dunno)")
    if device:
        parser.add_argument("--device", default="auto",
                            help="auto | cpu | cuda | cuda:<i> | mps (default: auto)")
    parser.add_argument("--quiet", action="store_true", default=None,
                        help="no progress bars (default: bars only on a terminal)")


# --------------------------------------------------------------------------- datasets
def _cmd_datasets(args) -> int:
    from dunno.data import available_datasets, dataset_status
    from dunno.data.images import IDX_SETS, download_idx_set
    from dunno.reporting import format_table, write_json

    if args.download:
        for name in args.download.split(","):
            base = name.removesuffix("-binary")
            if base not in IDX_SETS:
                raise ValueError(
                    f"--download supports {sorted(IDX_SETS)}. Got {name!r}."
                )
            folder = download_idx_set(base, args.data_dir,
                                      args.mirror.split(",") if args.mirror else None)
            print(f"{base}: files in {folder}")
    descriptions = {d["name"]: d["description"] for d in available_datasets()}
    rows = [
        {"name": r["name"], "status": r["status"], "detail": r["detail"],
         "description": descriptions[r["name"]]}
        for r in dataset_status(args.data_dir)
    ]
    print(format_table(rows, ["name", "status", "detail"]))
    if args.json:
        write_json(rows, args.json)
    return 0


# --------------------------------------------------------------------------- train
def _cmd_train_list(args) -> int:
    from dunno import nets
    from dunno.reporting import format_table

    rows = []
    for name in nets.available():
        model = nets.create(name, 1, 10, input_size=28)
        rows.append({"backbone": name, "parameters (1x28x28, 10 classes)":
                     nets.count_parameters(model), "features": model.num_features})
    print(format_table(rows))
    return 0


def _cmd_train_classifier(args) -> int:
    from dunno.classify import ClassifierConfig, train_classifier
    from dunno.config import parse_options
    from dunno.reporting import format_table, write_csv, write_json

    config = ClassifierConfig(
        backbone=args.backbone, data=args.data, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        optimizer=args.optimizer, schedule=args.schedule, dropout=args.dropout,
        augment=args.augment, patience=args.patience, seed=args.seed, device=args.device,
        options=parse_options(args.option), amp=args.amp, compile=args.compile,
    )
    out = Path(args.out)
    from dunno import distributed

    if args.ensemble is not None:
        return _train_ensemble(config, args, out)
    result = train_classifier(config, out=out, root=args.data_dir, resume=args.resume,
                              quiet=args.quiet)
    if not distributed.is_main_process():
        return 0
    rows = [
        {"epoch": int(e["epoch"]), "train_nll": e["loss"], "train_acc": e["acc"],
         "val_nll": e["val_loss"], "val_acc": e["val_acc"], "seconds": e["seconds"]}
        for e in result.history.epochs
    ]
    print(format_table(rows))
    print()
    print(format_table([result.metrics]))
    write_csv(rows, out / "history.csv")
    write_json({"config": vars(config), "metrics": result.metrics,
                "history": result.history.as_dict()}, out / "metrics.json")
    try:
        from evaluation.plots import plot_training_history

        plot_training_history(result.history, path=out / "training.png")
    except ImportError:  # pragma: no cover - plots land with the evaluation suite
        pass
    print(f"\ncheckpoint: {result.checkpoint}")
    return 0


def _train_ensemble(config, args, out: Path) -> int:
    from dunno import distributed
    from dunno.ensemble import train_ensemble
    from dunno.reporting import format_table, write_json

    result = train_ensemble(config, args.ensemble, out=out, root=args.data_dir,
                            resume=args.resume, quiet=args.quiet)
    if not distributed.is_main_process():
        return 0
    m = result.metrics
    rows = [{"member": k, "rank": m["member_ranks"][k], "test_acc": acc}
            for k, acc in enumerate(m["member_test_acc"])]
    print(format_table(rows))
    print()
    print(format_table([{k: m[k] for k in ("test_acc", "test_nll", "val_acc", "val_nll",
                                          "minutes", "world_size")}]))
    write_json({"config": vars(config), "num_members": args.ensemble, "metrics": m},
               out / "metrics.json")
    print(f"\nensemble checkpoint: {result.checkpoint}")
    return 0


# --------------------------------------------------------------------------- calibrate
def _cmd_calibrate(args) -> int:
    from dunno.checkpoints import load_model
    from dunno.devices import resolve_device
    from evaluation.benchmarks.calibration import run_calibration

    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device=device)
    result = run_calibration(
        model, args.data, args.method, calibration_size=args.calibration_size,
        calibration_split=args.calibration_split, seed=args.seed, root=args.data_dir,
        device=device, batch_size=args.batch_size, out=args.out, quiet=args.quiet,
    )
    print(result.table())
    print(f"\nbest ECE: {result.best('ece')}; best NLL: {result.best('nll')}")
    print(f"outputs: {args.out}")
    return 0


# --------------------------------------------------------------------------- ood
def _cmd_ood(args) -> int:
    from evaluation.benchmarks.ood import run_from_args

    return run_from_args(args)


# --------------------------------------------------------------------------- density, uci
def _cmd_density(args) -> int:
    from evaluation.benchmarks.density import run

    run(args)
    return 0


def _cmd_uci(args) -> int:
    from evaluation.benchmarks.uci import main as uci_main

    uci_main(args.rest[1:] if args.rest[:1] == ["--"] else args.rest)
    return 0


# --------------------------------------------------------------------------- demo
def _cmd_demo(args) -> int:
    from evaluation.benchmarks.demo import run_demo

    run_demo(out=args.out, device=args.device, quiet=args.quiet, smoke=args.smoke,
             root=args.data_dir)
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dunno",
        description="Neural networks that know what they don't know: calibration, OOD "
        "detection, predictive uncertainty and density estimation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("datasets", help="list datasets and whether their files are verified")
    p.add_argument("--data-dir", default=None,
                   help="data directory (default: $DUNNO_DATA, else ~/.cache/dunno)")
    p.add_argument("--download", metavar="NAME[,NAME]", default=None,
                   help="fetch mnist and/or fashion-mnist into the data directory")
    p.add_argument("--mirror", default=None, metavar="URL[,URL]",
                   help="base URLs to download from (default: the built-in mirror list)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("train", help="train models (train classifier --help)")
    p.add_argument("--list", action="store_true", help="list backbones and parameter counts")
    p.set_defaults(func=_cmd_train_list, _needs_sub=True)
    train_sub = p.add_subparsers(dest="what", metavar="WHAT")
    c = train_sub.add_parser("classifier", help="train a backbone classifier")
    c.add_argument("--backbone", default="lenet5", help="a name from `dunno train --list`")
    c.add_argument("--data", default="digits", help="dataset spec (default: digits)")
    c.add_argument("--epochs", type=int, default=20)
    c.add_argument("--batch-size", type=int, default=128)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--weight-decay", type=float, default=0.0)
    c.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    c.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    c.add_argument("--dropout", type=float, default=None,
                   help="dropout rate before the head (default: the backbone's own)")
    c.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random-crop augmentation (default: on for 28x28, off for digits)")
    c.add_argument("--patience", type=int, default=None, help="early-stopping patience")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="backbone option, repeatable (e.g. --option depth=8 --option "
                   "spectral_norm=true); see dunno.nets.describe(NAME)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True, help="output directory (checkpoint, history, plots)")
    c.add_argument("--amp", choices=["bf16", "fp16", "auto"], default=None,
                   help="mixed precision (CUDA: bf16 where supported, else fp16 + grad scaler)")
    c.add_argument("--compile", action="store_true", help="torch.compile the model")
    c.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/training_state.pt")
    c.add_argument("--ensemble", type=int, default=None, metavar="M",
                   help="train a deep ensemble of M members (seeds SEED..SEED+M-1) into one "
                   "checkpoint; under torchrun member k trains on rank k mod N")
    _add_common(c)
    c.set_defaults(func=_cmd_train_classifier, _needs_sub=False)

    p = sub.add_parser(
        "calibrate", help="fit post-hoc calibrators to a trained classifier",
        description="Fit calibrators on held-out data (a seeded subset of the 'val' split "
        "carved off the training file), evaluate on the test split, and write a before/after "
        "table (accuracy, ECE, adaptive ECE, MCE, NLL, Brier), reliability diagrams and JSON.")
    p.add_argument("--checkpoint", required=True, help="classifier checkpoint (model.pt)")
    p.add_argument("--data", required=True, help="dataset spec the model was trained on")
    p.add_argument("--method", default="temperature",
                   help="temperature | vector | matrix | histogram | isotonic | platt | beta, "
                   "comma-separated, or 'all' (default: temperature)")
    p.add_argument("--calibration-size", type=int, default=None,
                   help="examples to calibrate on (default: the whole calibration split)")
    p.add_argument("--calibration-split", default="val", choices=["val", "train"],
                   help="where the calibration set comes from (default: val, held out from "
                   "training)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--out", default="runs/calibrate", help="output directory")
    _add_common(p)
    p.set_defaults(func=_cmd_calibrate)

    from evaluation.benchmarks.ood import add_arguments as add_ood_arguments

    p = sub.add_parser(
        "ood", help="OOD-detection benchmark: every detector against every OOD set",
        description="Score a classifier with OOD detectors (higher score = more OOD) on the "
        "in-distribution test split and on each OOD set; print AUROC, AUPR-In, AUPR-Out and "
        "FPR@95TPR per detector x set (plus the mean), and write CSV, JSON, ROC curves and "
        "score histograms to --report-dir. Logits and features are computed once per dataset "
        "and shared by all detectors. --density CKPT adds the density-based detectors "
        "(likelihood, likelihood ratio, complexity correction, typicality) to the same table.")
    add_ood_arguments(p)
    p.set_defaults(func=_cmd_ood)

    from evaluation.benchmarks.density import build_parser as build_density_parser

    p = sub.add_parser(
        "density", help="density models: train | score | sample",
        description="Train a density model (autoregressive: NADE, PixelCNN, Row LSTM, "
        "Diagonal BiLSTM; latent-variable: VAE, AAE), score a checkpoint (NLL in nats and "
        "bits/dim -- exact, or the VAE's importance-sampled bound -- per-example scores to "
        ".npy) or draw a PNG grid of samples.")
    build_density_parser(p)
    p.set_defaults(func=_cmd_density, _prog="density")

    from evaluation.benchmarks.gan import build_parser as build_gan_parser
    from evaluation.benchmarks.gan import run as run_gan

    p = sub.add_parser(
        "gan", help="GANs: train gan | dcgan | infogan; eval (cFID, precision/recall)",
        description="Train a GAN, DCGAN or InfoGAN (per-epoch sample grids), or score a "
        "checkpoint's samples with our own classifier's features: classifier-based FID "
        "(cFID, not comparable with Inception FID) next to the train-vs-test floor, classifier "
        "score, k-NN precision/recall, InfoGAN code accuracy; ring-of-Gaussians mode coverage.")
    build_gan_parser(p)
    p.set_defaults(func=run_gan, _prog="gan")

    p = sub.add_parser(
        "uci", add_help=False, help="UCI regression benchmark (dunno uci --help)",
        description="UCI regression benchmark over the fixed splits, next to published numbers.")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_uci)

    p = sub.add_parser("demo", help="end-to-end tour on the bundled digits data")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets (for tests)")
    _add_common(p)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dunno`` console script; returns the exit status."""
    from dunno.errors import CheckpointError, DataError, NotFittedError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["uci"]:  # its own parser reads every option (and --help)
        argv = ["uci", "--", *argv[1:]]
    args = parser.parse_args(argv)
    if getattr(args, "_needs_sub", False) and not args.list:
        parser.parse_args([args.command, "--help"])
    try:
        return args.func(args)
    except (DataError, CheckpointError, NotFittedError, ValueError, FileNotFoundError) as err:
        print(f"dunno {getattr(args, '_prog', args.command)}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
