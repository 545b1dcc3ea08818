"""``dunno ood``: the OOD-detection benchmark, every detector against every OOD set.

Score a classifier with OOD detectors (higher score = more OOD) on the in-distribution test
split and on each OOD set; print AUROC, AUPR-In, AUPR-Out and FPR@95TPR per detector x set
(plus the mean) in percent, and write the report (report.md, a self-contained report.html,
report.json), CSV, JSON, ROC curves and score histograms to --report-dir. Logits
and features are computed once per dataset and shared by all detectors. --density CKPT adds
the density-based detectors (likelihood, likelihood ratio, complexity correction, typicality)
to the same table."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from dunno.cli.common import (
    USER_DATA_HELP,
    add_common,
    add_format,
    add_model_options,
    check_trained_split,
    load_cli_model,
    print_report,
    print_split,
    progress_of,
    say,
)

__all__ = ["add_parser", "run"]


def _parse_detector_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--param``: ``["knn.k=10", "odin.epsilon=0"]`` -> ``{"knn": {"k": 10}, "odin":
    {"epsilon": 0}}``.

    Values are read as JSON when they parse (numbers, ``true``, lists, objects), else kept as
    strings; lists become tuples.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        det, dot, param = key.partition(".")
        if not sep or not dot or not det or not param:
            raise ValueError(f"--param must look like DETECTOR.NAME=VALUE (e.g. knn.k=10). "
                             f"Got {item!r}.")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if isinstance(parsed, list):
            parsed = tuple(tuple(v) if isinstance(v, list) else v for v in parsed)
        out.setdefault(det.strip(), {})[param.strip()] = parsed
    return out


def _parse_layer(text: str) -> str | tuple[str, ...]:
    """``--layer``: ``"fc2"`` -> ``"fc2"`` (flattened output); ``"stages.1,stages.2"`` or a JSON
    list ``'["stages.2"]'`` -> a tuple of names (spatially averaged outputs, concatenated);
    ``NAME@k`` anywhere: pooled to a ``k x k`` grid."""
    from uncertainty.ood.outputs import check_layer

    text = text.strip()
    if text.startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(
                f"--layer: {text!r} is not a JSON list ({err}).") from None
    elif "," in text:
        names = [name.strip() for name in text.split(",")]
    else:
        names = text
    try:
        return check_layer(names, "dunno ood")
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--layer: {err}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    from uncertainty.ood import DETECTORS
    from uncertainty.ood.suite import FIT_SPLITS

    p = subparsers.add_parser(
        "ood", help="OOD-detection benchmark: every detector against every OOD set",
        description=__doc__)
    add_model_options(p, what="the classifier (optional with --density)")
    p.add_argument("--density", default=None, metavar="CKPT",
                   help="a density-model checkpoint of the in-distribution data (dunno density "
                   "train): adds likelihood, likelihood-ratio, complexity and typicality to the "
                   "table")
    p.add_argument("--background", default=None, metavar="CKPT",
                   help="a trained background model for likelihood-ratio (None: one is trained "
                   "on mutated inputs of the fit split)")
    p.add_argument("--in", dest="in_data", required=True,
                   help="in-distribution dataset spec, e.g. mnist or digits:classes=0-4"
                   + USER_DATA_HELP + " (an OOD set given as user data is used whole)")
    p.add_argument("--out", dest="out_sets", required=True, metavar="SET[,SET...]",
                   help="OOD sets: dataset specs (fashion-mnist, gaussian-noise, "
                   "mnist:rotate=90, mnist:invert, digits:classes=5-9) or user paths")
    p.add_argument("--detectors", default="all", metavar="NAME[,NAME...]|all|default",
                   help="registry names, comma-separated, or all: every one of "
                   f"{', '.join(DETECTORS)} that applies to the models given; default: the "
                   "recommended detector (combined, its components chosen from "
                   "in-distribution data alone)")
    p.add_argument("--param", action="append", default=[], metavar="DET.NAME=VALUE",
                   help="detector hyper-parameter, repeatable (e.g. knn.k=10)")
    p.add_argument("--fit-split", default="train", choices=FIT_SPLITS,
                   help="in-distribution split the detectors learn from")
    p.add_argument("--fit-size", type=int, default=None,
                   help="seeded subset of the fit split (None: all of it)")
    p.add_argument("--layer", default=None, type=_parse_layer, metavar="NAME[,NAME...]",
                   help="features from this module's flattened output instead of "
                   "model.features; several names (or a JSON list, '[\"stages.2\"]' for one): "
                   "their spatially averaged outputs, concatenated (e.g. stages.1,stages.2); "
                   "NAME@k pools that output to a k x k grid (e.g. stages.1@2,stages.2)")
    p.add_argument("--batch-size", type=int, default=512,
                   help="batch size of the shared forward passes")
    p.add_argument("--seed", type=int, default=0, help="seed of the --fit-size subset")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="write report.md / .html / .json, ood.json, ood.csv, auroc.csv, ROC "
                   "curves and histograms here")
    p.add_argument("--no-histograms", action="store_true",
                   help="skip the per-detector score histograms")
    add_format(p)
    add_common(p)
    p.set_defaults(run=run)
    return p


def _note_skipped(model, density: bool, layer) -> None:
    """Print which classifier detectors ``all`` leaves out because they cannot score the
    model (named explicitly, each of them is refused with the reason)."""
    import sys

    from uncertainty.ood import DETECTORS
    from uncertainty.ood.suite import resolve_detectors

    chosen = set(resolve_detectors("all", model=model, density=density, layer=layer))
    skipped = [n for n, cls in DETECTORS.items() if not cls.uses_density and n not in chosen]
    if skipped:
        print(f"note: --detectors all skips {', '.join(skipped)}: they cannot score "
              f"{type(model).__name__} (name one with --detectors to see why)", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from dunno.checkpoints import load_model
    from dunno.devices import resolve_device
    from dunno.outputs import check_output_dir
    from evaluation.benchmarks.ood import (
        density_inputs_for,
        ood_figures,
        ood_report,
        write_ood_report,
    )
    from uncertainty.ood import run_ood

    if args.model_file is None and args.model_factory is None and args.density is None:
        raise ValueError("dunno ood needs a classifier (--checkpoint FILE, or --model "
                         "MODULE:FACTORY --weights FILE), --density (a density model), or both.")
    if args.background is not None and args.density is None:
        raise ValueError("--background is the likelihood-ratio's background model; it needs "
                         "--density too.")
    if args.report_dir is not None:
        check_output_dir(args.report_dir)  # before any scoring, not after it
    device = resolve_device(args.device)
    model = load_cli_model(args, device, required=False)
    density = None if args.density is None else load_model(args.density, device=device)
    background = None if args.background is None else load_model(args.background,
                                                                 device=device)
    if model is not None and args.detectors.strip() == "all":
        _note_skipped(model, density is not None, args.layer)
    if model is not None:
        check_trained_split(model, args.in_data, "--in", args.data_dir)
    print_split(args.in_data, args.data_dir, "in-distribution data", args=args)
    table = run_ood(model, args.in_data, args.out_sets, args.detectors, density=density,
                    density_inputs=density_inputs_for(density), background=background,
                    root=args.data_dir, device=device, batch_size=args.batch_size,
                    fit_split=args.fit_split, fit_size=args.fit_size,
                    detector_params=_parse_detector_params(args.param), layer=args.layer,
                    seed=args.seed, progress=progress_of(args))
    figures = [] if args.report_dir is None else ood_figures(
        table, histograms=not args.no_histograms)
    print_report(args, ood_report(table, figures))  # the report that --report-dir writes
    if args.report_dir is not None:
        files = write_ood_report(table, args.report_dir, histograms=not args.no_histograms)
        say(args, f"wrote {len(files)} files to {args.report_dir} (report: report.html)")
    return 0 if table.rows else 1
