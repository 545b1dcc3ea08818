"""``dunno ood``: the OOD-detection benchmark, every detector against every OOD set.

Score a classifier with OOD detectors (higher score = more OOD) on the in-distribution test
split and on each OOD set; print AUROC, AUPR-In, AUPR-Out and FPR@95TPR per detector x set
(plus the mean), and write CSV, JSON, ROC curves and score histograms to --report-dir. Logits
and features are computed once per dataset and shared by all detectors. --density CKPT adds
the density-based detectors (likelihood, likelihood ratio, complexity correction, typicality)
to the same table."""

from __future__ import annotations

import argparse

from dunno.cli.common import HelpFormatter

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from evaluation.benchmarks.ood import add_arguments

    p = subparsers.add_parser(
        "ood", help="OOD-detection benchmark: every detector against every OOD set",
        description=__doc__, formatter_class=HelpFormatter)
    add_arguments(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from evaluation.benchmarks.ood import run_from_args

    return run_from_args(args)
