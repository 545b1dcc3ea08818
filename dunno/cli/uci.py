"""``dunno uci``: the UCI regression benchmark over the fixed splits, next to published
numbers."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("uci", add_help=False, help="UCI regression benchmark "
                              "(dunno uci --help)", description=__doc__)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from evaluation.benchmarks.uci import main as uci_main

    uci_main(args.rest[1:] if args.rest[:1] == ["--"] else args.rest)
    return 0
