"""Options and helpers shared by the ``dunno`` commands (each option defined once, here or
in its command's module)."""

from __future__ import annotations

import argparse
import copy

__all__ = [
    "ArgumentParser",
    "HelpFormatter",
    "add_common",
    "add_data_dir",
    "add_device",
    "add_quiet",
    "print_split",
]

USER_DATA_HELP = ("; user data (a folder or .npz/.npy) is split by the documented rule, "
                  "fractions and seed as spec options: mine.npz:val=0.15:test=0.15:split_seed=0")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every optional option's default -- also for an option without help
    text -- and keeps descriptions' line breaks. Required options show no default; a help
    text that already states its default is left as it is."""

    def _format_action(self, action: argparse.Action) -> str:
        if not (action.help and action.help.strip()) and action.option_strings \
                and not action.required and action.default is not argparse.SUPPRESS:
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or "(default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose ``formatter_class`` defaults to
    :class:`HelpFormatter`. ``add_subparsers`` makes its subparsers of this class, so every
    parser of the ``dunno`` tree shows its defaults in ``--help``."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


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


def print_split(spec: str, root=None, what: str = "data") -> None:
    """Print the split sizes and the split rule of user data ``spec`` (one line; nothing
    for a registered dataset, whose splits are fixed and documented)."""
    from dunno.data import describe_split

    line = describe_split(spec, root)
    if line is not None:
        print(f"{what} {line}")
