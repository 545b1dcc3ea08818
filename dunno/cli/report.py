"""``dunno report``: rebuild the report of a run directory, or put several runs side by side.

Every evaluating command (calibrate, ood --report-dir, density score --out, gan eval --out,
uci --out, demo) records what its report shows in RUN_DIR/report.json. Given one RUN_DIR,
this rebuilds report.md and the self-contained report.html from that record (in RUN_DIR, or
in --out); given several runs of one command, it writes one report to --out in which each
table shared by the runs has the run names as column groups (e.g. two models' OOD tables),
followed by each run's notes and figures (copied to OUT/NAME/)."""

from __future__ import annotations

import argparse

from dunno.cli.common import add_format, print_report, say

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="rebuild a run's report, or put runs side by side",
                              description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories (each with the report.json its command wrote)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write report.md / .html / .json (None: the run directory "
                   "itself for one run; required for several)")
    add_format(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from dunno.outputs import check_output_dir
    from dunno.reporting import read_report, write_side_by_side

    if args.out is None and len(args.runs) > 1:
        raise ValueError(f"--out DIR is needed to put {len(args.runs)} runs side by side "
                         "(each run directory keeps its own report).")
    for run_dir in args.runs:  # refuse a directory that is not a run before writing anything
        read_report(run_dir)
    out = args.out if args.out is not None else args.runs[0]
    check_output_dir(out)
    report, files = write_side_by_side(args.runs, out)
    print_report(args, report)
    say(args, f"wrote {len(files)} files to {out} (report: report.html)")
    return 0
