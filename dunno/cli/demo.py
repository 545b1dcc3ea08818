"""``dunno demo``: the end-to-end tour on the bundled ``digits`` data, writing ``report.md``,
a self-contained ``report.html`` and ``report.json`` (progress on stderr; the report's tables
on stdout)."""

from __future__ import annotations

import argparse

from dunno.cli.common import add_common, add_format, print_report, progress_of, say

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="end-to-end tour on the bundled digits data",
                              description=__doc__)
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--smoke", action="store_true", help="tiny budgets (for tests)")
    add_format(p)
    add_common(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from evaluation.benchmarks.demo import run_demo

    result = run_demo(out=args.out, device=args.device, progress=progress_of(args),
                      smoke=args.smoke, root=args.data_dir)
    print_report(args, result.document)
    say(args, f"report: {result.report} and {result.report.with_suffix('.html')}")
    return 0
