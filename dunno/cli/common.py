"""Options and helpers shared by the ``dunno`` commands (each option defined once, here or
in its command's module)."""

from __future__ import annotations

import argparse

__all__ = ["HelpFormatter", "add_common", "add_data_dir", "add_device", "add_quiet"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every option's default and keeps descriptions' line breaks."""


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="data directory (None: $DUNNO_DATA, else ~/.cache/dunno)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:<i> | mps")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", default=None,
                        help="no progress bars (None: bars only on a terminal)")


def add_common(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """``--data-dir``, ``--device`` (unless ``device=False``) and ``--quiet``."""
    add_data_dir(parser)
    if device:
        add_device(parser)
    add_quiet(parser)
