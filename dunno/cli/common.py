"""Options and helpers shared by the ``dunno`` commands (each option defined once, here or
in its command's module)."""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "ArgumentParser",
    "HelpFormatter",
    "add_common",
    "check_trained_split",
    "add_data_dir",
    "add_device",
    "add_format",
    "add_model_options",
    "add_quiet",
    "add_tensorboard",
    "load_cli_model",
    "open_run_log",
    "print_report",
    "print_split",
    "progress_of",
    "quiet_switch",
    "run_subcommand",
    "say",
]

USER_DATA_HELP = ("; user data (a folder or .npz/.npy) is split by the documented rule, "
                  "fractions and seed as spec options: mine.npz:val=0.15:test=0.15:split_seed=0")

MODEL_HELP = """\
A classifier is given either as a FILE -- a dunno checkpoint (dunno train classifier), a
TorchScript file (torch.jit.save) or a torch.export program (.pt2; dunno.models.save_model
writes either for any nn.Module) -- or as --model package.module:factory --weights FILE: the
named module of your own code is imported (it must be installed or on the Python path; the
current directory is searched last; path/to/file.py:factory also works), factory(**options)
builds the model and the weights (torch.save(model.state_dict()) or .safetensors) are loaded
with a strict key check. No code stored in any file is ever run."""


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
    parser.add_argument("--quiet", action="store_true",
                        help="no progress reports on stderr (default: a bar on a terminal, "
                        "plain flushed lines otherwise, e.g. in a nohup log)")


def add_tensorboard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tensorboard", default=None, metavar="DIR",
                        help="also write TensorBoard events to DIR: losses, metrics and "
                        "learning rate per epoch, figures and image grids (needs pip install "
                        "'dunno[tensorboard]')")


def progress_of(args: argparse.Namespace) -> bool:
    """``progress=`` for a command's library calls: on unless ``--quiet``."""
    return not getattr(args, "quiet", False)


@contextmanager
def quiet_switch(args: argparse.Namespace) -> Iterator[None]:
    """``--quiet`` turns the global quiet switch of :mod:`dunno.progress` on for the command
    (restored afterwards), so no pass of it reports."""
    from dunno.progress import set_quiet

    if not getattr(args, "quiet", False):
        yield
        return
    previous = set_quiet(True)
    try:
        yield
    finally:
        set_quiet(previous)


def open_run_log(args: argparse.Namespace, history_path, *, resume: bool = False,
                 rename=None, group: str | None = None):
    """The :class:`dunno.runlog.RunLog` of a training command: ``history_path`` written as
    the run goes and, with ``--tensorboard DIR``, TensorBoard events (a missing
    ``tensorboard`` package fails here, before any work, naming the extra to install)."""
    from dunno.runlog import RunLog, TensorBoardLog

    logdir = getattr(args, "tensorboard", None)
    tensorboard = None if logdir is None else TensorBoardLog(logdir)
    return RunLog(history_path, tensorboard, resume=resume, rename=rename, group=group)


def add_format(parser: argparse.ArgumentParser) -> None:
    """``--format table | md | csv | json``: how an evaluating command prints its tables on
    stdout (:func:`print_report`). The report files are written the same either way."""
    from dunno.tables import FORMATS

    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="stdout: aligned text tables, Markdown, CSV (the main table) or "
                        "JSON (the whole report record); with md/csv/json, the other lines "
                        "go to stderr, so stdout parses")


def say(args: argparse.Namespace, text: str) -> None:
    """A line that is not a table (split sizes, 'wrote N files'): stdout with ``--format
    table``, stderr with md / csv / json so that stdout holds only the tables."""
    stream = sys.stdout if getattr(args, "format", "table") == "table" else sys.stderr
    print(text, file=stream)


def print_report(args: argparse.Namespace, report) -> None:
    """Print a :class:`dunno.reporting.Report` on stdout in ``args.format`` -- the same
    tables as its ``report.md`` / ``report.html``."""
    from dunno.reporting import render_report

    print(render_report(report, getattr(args, "format", "table")))


def add_model_options(parser: argparse.ArgumentParser, *, flag: str = "--checkpoint",
                      what: str = "the classifier") -> None:
    """The classifier options, defined once: ``FLAG FILE`` (``--checkpoint``, or
    ``--classifier`` where ``--checkpoint`` names another model), ``--model
    package.module:factory``, ``--weights FILE`` and ``--model-option KEY=VALUE`` (see
    :data:`MODEL_HELP`); :func:`load_cli_model` reads them."""
    group = parser.add_argument_group("model", MODEL_HELP)
    group.add_argument(flag, dest="model_file", default=None, metavar="FILE",
                       help=f"{what}: a dunno checkpoint, TorchScript file or torch.export "
                       "program (.pt2)")
    group.add_argument("--model", dest="model_factory", default=None,
                       metavar="MODULE:FACTORY",
                       help=f"{what} built by your own code: package.module:factory (with "
                       "--weights)")
    group.add_argument("--weights", default=None, metavar="FILE",
                       help="with --model: the state dict (torch.save or .safetensors)")
    group.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                       help="with --model: a keyword argument of the factory, repeatable")
    parser.set_defaults(model_flag=flag)


def load_cli_model(args: argparse.Namespace, device, *, required: bool = True):
    """The classifier named by :func:`add_model_options`' options, in eval mode on
    ``device`` (:func:`dunno.models.load_any_model`); ``None`` when none was given and
    ``required`` is false. A ValueError names the options for a combination that is wrong."""
    from dunno.config import parse_options
    from dunno.models import load_any_model

    flag, file, factory = args.model_flag, args.model_file, args.model_factory
    if file is not None and factory is not None:
        raise ValueError(f"Give the classifier either as {flag} FILE or as --model "
                         f"MODULE:FACTORY --weights FILE, not both. Got {flag} {file!r} and "
                         f"--model {factory!r}.")
    if factory is None and (args.weights is not None or args.model_option):
        raise ValueError(f"--weights and --model-option go with --model MODULE:FACTORY. Got "
                         f"--weights {args.weights!r} without --model (a {flag} file holds its "
                         "own weights).")
    if file is None and factory is None:
        if required:
            raise ValueError(f"A classifier is needed: {flag} FILE, or --model "
                             "MODULE:FACTORY --weights FILE.")
        return None
    options = parse_options(args.model_option, "--model-option")
    return load_any_model(file, model=factory, weights=args.weights,
                          model_options=options or None, device=device)


def check_trained_split(model, spec: str, flag: str, root=None) -> None:
    """Refuse user data ``spec`` split differently from the data the model was trained on
    (:func:`dunno.data.check_same_split`, from the checkpoint's recorded spec and rule)."""
    from dunno.data import check_same_split

    info = getattr(model, "dunno_info", None) or {}
    check_same_split(spec, info.get("trained_on"), info.get("split_rule"), flag=flag,
                     root=root)


def run_subcommand(args: argparse.Namespace, dest: str, commands: dict) -> int:
    """Run ``commands[args.<dest>](args)`` for a command group (``density``, ``gan``); without
    a subcommand, print the group's help on stderr and return 2."""
    command = commands.get(getattr(args, dest, None))
    if command is None:
        args.group_parser.print_help(sys.stderr)
        return 2
    return command(args)


def add_common(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """``--data-dir``, ``--device`` (unless ``device=False``) and ``--quiet``."""
    add_data_dir(parser)
    if device:
        add_device(parser)
    add_quiet(parser)


def print_split(spec: str, root=None, what: str = "data", args=None) -> None:
    """Print the split sizes and the split rule of user data ``spec`` (one line, through
    :func:`say` when ``args`` is given; nothing for a registered dataset, whose splits are
    fixed and documented)."""
    from dunno.data import describe_split

    line = describe_split(spec, root)
    if line is not None:
        if args is None:
            print(f"{what} {line}")
        else:
            say(args, f"{what} {line}")
