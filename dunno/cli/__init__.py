"""The ``dunno`` command.

One module per command, each with ``add_parser(subparsers)`` (which sets ``run`` as the
parser's default) and ``run(args) -> int`` (the exit status):

* ``datasets`` -- list datasets and whether their files are present and verified.
* ``train classifier`` -- train a backbone (or a deep ensemble); ``train --list``.
* ``calibrate`` -- fit post-hoc calibrators and report before/after metrics.
* ``ood`` -- the OOD-detection benchmark.
* ``density train | score | sample`` -- density models.
* ``gan train | eval`` -- GANs and their sample-quality metrics.
* ``uci`` -- the UCI regression benchmark.
* ``demo`` -- the end-to-end tour on the bundled ``digits`` data.

Command modules only parse arguments, call the library and write files. Errors the user can
fix (bad data, bad checkpoint, bad values) are one line on stderr and exit status 2; a
command group without its subcommand prints its usage and exits 2. Nothing imports this
package.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dunno.cli.common import HelpFormatter

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = ("datasets", "train", "calibrate", "ood", "density", "gan", "uci", "demo")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dunno")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``dunno`` parser: one subparser per module of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="dunno", formatter_class=HelpFormatter,
        description="Neural networks that know what they don't know: calibration, OOD "
        "detection, predictive uncertainty and density estimation.",
    )
    parser.add_argument("--version", action="version", version=f"dunno {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"dunno.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dunno`` console script; returns the exit status."""
    from dunno.errors import CheckpointError, DataError, NotFittedError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["uci"]:  # its own parser reads every option (and --help)
        argv = ["uci", "--", *argv[1:]]
    args = parser.parse_args(argv)
    if getattr(args, "needs_subcommand", False) and not getattr(args, "list", False):
        args.group_parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except (DataError, CheckpointError, NotFittedError, ValueError, FileNotFoundError) as err:
        print(f"dunno {getattr(args, 'prog', args.command)}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("interrupted", file=sys.stderr)
        return 130
