"""``dunno calibrate``: fit post-hoc calibrators to a trained classifier.

Fit calibrators on held-out data (a seeded subset of the 'val' split carved off the training
file), evaluate on the test split, print the before/after table (accuracy, ECE, adaptive ECE, MCE
in percent; NLL in nats; Brier) once, and write it with the reliability diagrams to --out:
report.md, report.html (self-contained), report.json, calibration.json / .csv and the fitted
calibrators."""

from __future__ import annotations

import argparse

from dunno.cli.common import (
    USER_DATA_HELP,
    add_common,
    add_format,
    add_model_options,
    check_trained_split,
    load_cli_model,
    print_report,
    print_split,
    progress_of,
    say,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from uncertainty.calibration.compare import CALIBRATION_SPLITS

    p = subparsers.add_parser("calibrate", help="fit post-hoc calibrators to a trained classifier",
                              description=__doc__)
    add_model_options(p)
    p.add_argument("--data", required=True,
                   help="dataset spec the model was trained on (the same spec gives the same "
                   "split)" + USER_DATA_HELP)
    p.add_argument("--method", default="temperature",
                   help="temperature | vector | matrix | histogram | isotonic | platt | beta, "
                   "comma-separated, or 'all'")
    p.add_argument("--calibration-size", type=int, default=None,
                   help="examples to calibrate on (None: the whole calibration split)")
    p.add_argument("--calibration-split", default="val", choices=CALIBRATION_SPLITS,
                   help="where the calibration set comes from (val: held out from training)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --calibration-size subset")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="batch size of the two forward passes")
    p.add_argument("--out", default="runs/calibrate",
                   help="output directory: report.md / .html / .json, calibration.json / "
                   ".csv, reliability diagrams, fitted calibrators")
    add_format(p)
    add_common(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from dunno.devices import resolve_device
    from dunno.outputs import check_output_dir
    from evaluation.benchmarks.calibration import calibration_report, write_calibration_report
    from uncertainty.calibration import run_calibration

    check_output_dir(args.out)  # before any work, not after it
    device = resolve_device(args.device)
    model = load_cli_model(args, device)
    check_trained_split(model, args.data, "--data", args.data_dir)
    print_split(args.data, args.data_dir, args=args)
    result = run_calibration(
        model, args.data, args.method, calibration_size=args.calibration_size,
        calibration_split=args.calibration_split, seed=args.seed, root=args.data_dir,
        device=device, batch_size=args.batch_size, progress=progress_of(args),
    )
    files = write_calibration_report(result, args.out)
    print_report(args, calibration_report(result, figures=True))
    say(args, f"wrote {len(files)} files to {args.out} (report: report.html)")
    return 0
