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
* ``report`` -- rebuild a run's report (``report.md``, ``report.html``) from its
  ``report.json``, or put several runs side by side.

Command modules only parse arguments, call the library and write files; each option is
defined once, in its command's module or in :mod:`dunno.cli.common`, and ``--help`` shows
every default. Nothing imports this package.

Exit status:

* 0 -- done.
* 2 -- the command line or its inputs are wrong: argparse's usage errors (an unknown command,
  a bad flag value), a command group without its subcommand (its usage is printed), and
  errors the user can fix -- bad data, a bad or missing checkpoint, bad values, a missing input
  file, a missing optional extra (``--tensorboard`` without ``tensorboard``) -- printed as one
  line on stderr, without a traceback.

Progress goes to stderr (:mod:`dunno.progress`: a bar on a terminal, plain flushed lines in a
log); ``--quiet`` silences it. stdout holds only the command's results.
* 1 -- the operating system refused (any other ``OSError``: a file where a directory is
  expected, permission denied, disk full): one line on stderr naming the path.
* 130 -- interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from dunno.cli.common import ArgumentParser, quiet_switch

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = ("datasets", "train", "calibrate", "ood", "density", "gan", "uci", "demo",
            "report")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dunno")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``dunno`` parser: one subparser per module of :data:`COMMANDS`."""
    parser = ArgumentParser(
        prog="dunno",
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
    from dunno.errors import CheckpointError, DataError, MissingDependencyError, NotFittedError

    args = build_parser().parse_args(argv)
    if getattr(args, "needs_subcommand", False) and not getattr(args, "list", False):
        args.group_parser.print_help(sys.stderr)
        return 2
    prefix = f"dunno {getattr(args, 'prog', args.command)}: error:"
    try:
        with quiet_switch(args):
            return args.run(args)
    except (DataError, CheckpointError, NotFittedError, ValueError, FileNotFoundError,
            MissingDependencyError) as err:
        print(f"{prefix} {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{prefix} {_os_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    """``str(err)`` on one line (a message's line breaks become spaces)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def _os_error(err: OSError) -> str:
    """``err`` as one line that names the path (``err.filename``) when there is one."""
    if err.filename is None:
        return _one_line(err)
    path = os.fspath(err.filename)
    if isinstance(err, FileExistsError):
        return f"cannot create the directory '{path}': a file of that name exists"
    reason = err.strerror or type(err).__name__
    return f"cannot use '{path}': {reason}"
