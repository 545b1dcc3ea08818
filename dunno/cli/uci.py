"""``dunno uci``: the UCI regression benchmark over the fixed splits, next to published
numbers.

Fit a predictive-uncertainty regressor (:data:`uncertainty.predictive.REGRESSORS`) on every
split of the chosen UCI datasets and print RMSE and test log-likelihood (mean ± standard error,
original units) next to the published numbers, with a verdict per dataset
(:mod:`uncertainty.predictive.uci` documents the protocol and the budgets). With --out, write
``uci_<method>.csv``, ``.json`` (per-split values too) and ``.md``, and
``history_<method>.csv``: a row per training epoch of each dataset, as the benchmark runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dunno.cli.common import (
    add_data_dir,
    add_format,
    add_quiet,
    add_tensorboard,
    open_run_log,
    print_report,
    progress_of,
    say,
)

__all__ = ["add_parser", "run"]


def _parse_param(text: str) -> tuple[str, Any]:
    from dunno.config import parse_options

    try:
        ((key, value),) = parse_options([text], "--param").items()
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return key, value


def add_parser(subparsers) -> argparse.ArgumentParser:
    from uncertainty.predictive import REGRESSORS

    p = subparsers.add_parser("uci", help="UCI regression benchmark (RMSE and test "
                              "log-likelihood next to the published numbers)",
                              description=__doc__)
    p.add_argument("--method", required=True, choices=list(REGRESSORS))
    p.add_argument("--dataset", default="all",
                   help="'all', a dataset name/alias or a comma-separated list")
    p.add_argument("--splits", type=int, default=None,
                   help="use the first N splits (None: all)")
    add_data_dir(p)
    p.add_argument("--seed", type=int, default=0, help="seed of every fit")
    p.add_argument("--out", default=None,
                   help="folder for the CSV / JSON / Markdown and report.md / .html / .json "
                   "(None: print only)")
    add_format(p)
    p.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    p.add_argument("--param", action="append", default=[], type=_parse_param,
                   metavar="KEY=VALUE", help="override a hyper-parameter (JSON value), "
                   "repeatable")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (these networks are tiny)")
    add_quiet(p)
    add_tensorboard(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """With --out, the folder is checked writable and locked before the first fit."""
    from dunno.outputs import run_output_dir

    history = None if args.out is None else Path(args.out) / f"history_{args.method}.csv"
    with run_output_dir(args.out), open_run_log(args, history) as log:
        return _run(args, log)


def _run(args: argparse.Namespace, log) -> int:
    import torch

    from evaluation.benchmarks.predictive import uci_report, write_uci_report
    from uncertainty.predictive import run_uci

    if args.threads < 1:
        raise ValueError(f"The '--threads' option must be an int >= 1. Got {args.threads} "
                         "instead.")
    torch.set_num_threads(args.threads)
    table = run_uci(args.method, args.dataset, splits=args.splits, root=args.data_dir,
                    seed=args.seed, quick=args.quick, params=dict(args.param) or None,
                    progress=progress_of(args),
                    on_epoch_end=lambda name, epoch, record: log.epoch(
                        epoch, {"dataset": name, **record}, prefix=f"{name}/"))
    if args.out is not None:
        write_uci_report(table, args.out)
    if log.tensorboard is not None:
        from evaluation.benchmarks.tensorboard_logs import log_uci_table

        log_uci_table(log.tensorboard, table)
    print_report(args, uci_report(table))
    if args.out is not None:
        say(args, f"wrote the tables and the report to {args.out} (report: report.html)")
    return 0
