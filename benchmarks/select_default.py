"""Choose the default OOD detector from in-distribution data alone: the anchor LeNet-5s on MNIST
and on Fashion-MNIST, every candidate detector against synthetic outliers.

::

    python benchmarks/select_default.py --out runs/ood-benchmark          # trains both LeNet-5s
    python benchmarks/select_default.py --checkpoint mnist=A.pt --checkpoint fashion-mnist=B.pt

**Procedure** (:func:`uncertainty.ood.selection.select_detector`, per model): the detectors
are fitted on the 55 000-image ``train`` split (one seeded 20% of it held out as the p-value
references of ``combined``) and scored on the disjoint 5 000-image ``val`` split as
in-distribution, and on the outliers :mod:`dunno.data.outliers` makes from those ``val``
images (permuted pixels, shuffled 7 x 7 and 14 x 14 patches, eroded and dilated strokes, pixel
noise, overlaid pairs, spliced halves) as OOD. No test split and no OOD set is loaded. The
candidates are every applicable registered classifier detector alone and every pair and
triple of them under Fisher's sum and under the maximum of conformal p-values
(:func:`~uncertainty.ood.selection.component_candidates`). **One** default is chosen for both
models: the best worst-case AUROC over both models and all outlier kinds, ties (within one
standard error of the best worst case) by the mean
(:func:`~uncertainty.ood.selection.merge_selections`).

The models are the anchor table's (``benchmarks/ood_table.py``: LeNet-5, 5 epochs Adam 1e-3,
batch 128, seed 0), trained into ``out/lenet5-<data>-seed<seed>/`` or reused from there, so
that this script and ``ood_table.py`` with the same ``--out`` share them. Writes
``out/selection-seed<seed>.md`` (the top candidates per model and merged) and ``.json`` (every
candidate's numbers).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.checkpoints import atomic_write_text, load_model  # noqa: E402
from dunno.data import load_dataset  # noqa: E402
from dunno.devices import resolve_device  # noqa: E402
from dunno.reporting import write_json  # noqa: E402
from uncertainty.ood.selection import (  # noqa: E402
    Selection,
    label_free,
    merge_selections,
    select_detector,
)

__all__ = ["ANCHOR_DATA", "main", "run_selection"]

#: The in-distribution sets of the anchor models.
ANCHOR_DATA = ("mnist", "fashion-mnist")


def _train_lenet(*args, **kwargs):
    """:func:`train_lenet` of ``ood_table.py`` next to this file (the anchor recipe)."""
    path = Path(__file__).resolve().parent / "ood_table.py"
    spec = importlib.util.spec_from_file_location("ood_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.train_lenet(*args, **kwargs)


def run_selection(
    out: str | Path = "runs/ood-benchmark",
    *,
    seed: int = 0,
    data: tuple[str, ...] = ANCHOR_DATA,
    checkpoints: dict[str, str] | None = None,
    device: str = "cpu",
    root=None,
    max_size: int = 3,
    top: int = 15,
    quiet: bool = False,
    **selection_options: Any,
) -> dict[str, Any]:
    """Select on each model of ``data`` and merge (module docstring); returns the report
    written to ``out/selection-seed<seed>.json`` (the Markdown next to it)."""
    out = Path(out)
    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - set(data))
    if unknown:
        raise ValueError(f"--checkpoint names data sets that are not selected on: {unknown}; "
                         f"the models are those of {list(data)}.")
    device = str(resolve_device(device))
    t_start = time.perf_counter()
    selections: dict[str, Selection] = {}
    report: dict[str, Any] = {"seed": seed, "training": {}, "seconds": {}}
    for name in data:
        t0 = time.perf_counter()
        if name in checkpoints:
            model, metrics = load_model(checkpoints[name], device=device), {
                "loaded": checkpoints[name]}
        else:
            model, metrics = _train_lenet(name, out / f"lenet5-{name}-seed{seed}", seed=seed,
                                          device=device, root=root)
        report["training"][name] = {**metrics, "seconds": time.perf_counter() - t0}
        model = model.to(device).eval()
        fit, heldout = load_dataset(name, "train", root), load_dataset(name, "val", root)
        t0 = time.perf_counter()
        selections[name] = select_detector(model, fit, heldout.x, max_size=max_size,
                                           **selection_options)
        report["seconds"][name] = time.perf_counter() - t0
        if not quiet:
            print(f"{name}: {len(selections[name].rows)} candidates, "
                  f"{report['seconds'][name]:.0f} s; best here: "
                  f"{selections[name].selected['candidate']}", flush=True)
    merged = merge_selections(selections)
    report["selections"] = {k: s.to_dict() for k, s in selections.items()}
    report["merged"] = merged.to_dict()
    report["default"] = {"candidate": merged.selected["candidate"],
                         **{k: list(v) if isinstance(v, tuple) else v
                            for k, v in merged.detector_params().items()}}
    free = label_free(merged)  # the default for fit data without labels
    report["default_unlabelled"] = {"candidate": free.selected["candidate"],
                                    **{k: list(v) if isinstance(v, tuple) else v
                                       for k, v in free.detector_params().items()}}
    report["minutes"] = (time.perf_counter() - t_start) / 60
    text = _markdown(report, selections, merged, top)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"selection-seed{seed}"
    write_json(report, stem.with_suffix(".json"))
    atomic_write_text(text, stem.with_suffix(".md"))
    if not quiet:
        print(text)
    return report


def _markdown(report: dict[str, Any], selections: dict[str, Selection], merged: Selection,
              top: int) -> str:
    best = merged.selected
    parts = [f"# Default OOD detector, chosen from in-distribution data (seed {report['seed']}, "
             f"{report['minutes']:.1f} min)", "",
             f"Selected: **{best['candidate']}** (worst case {100 * best['worst']:.2f}, mean "
             f"{100 * best['mean']:.2f} AUROC % over {len(merged.kinds)} model x kind pairs; "
             f"{len(merged.rows)} candidates). Without labels: "
             f"**{report['default_unlabelled']['candidate']}** (the best candidate that needs "
             "no labels, by the same rule).", "",
             "## Both models (the rule's ranking)", "", merged.to_markdown(top), ""]
    for name, selection in selections.items():
        info = selection.info
        parts += [f"## {name} alone (components fitted on {info['n_fit']}, references "
                  f"{info['n_reference']}, held-out {info['n_heldout']})", "",
                  selection.to_markdown(top), ""]
        singles = Selection(selection.kinds, [r for r in selection.rows if r["size"] == 1],
                            selection.tie)
        parts += [f"Single detectors on {name} (by the same rule):", "",
                  singles.to_markdown(None), ""]
    return "\n".join(parts)


def _checkpoint(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--checkpoint must look like DATA=PATH (e.g. "
                                         f"mnist=runs/lenet/model.pt). Got {text!r}.")
    return name, path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python benchmarks/select_default.py --out runs/ood-benchmark``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ood-benchmark")
    parser.add_argument("--seed", type=int, default=0, help="seed of the anchor models")
    parser.add_argument("--checkpoint", type=_checkpoint, action="append", default=[],
                        metavar="DATA=PATH", help="use this model for DATA instead of training "
                        "one (repeatable: mnist=..., fashion-mnist=...)")
    parser.add_argument("--max-size", type=int, default=3,
                        help="largest number of components in a candidate")
    parser.add_argument("--top", type=int, default=15, help="rows shown per table")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    return run_selection(args.out, seed=args.seed, checkpoints=dict(args.checkpoint),
                         device=args.device, root=args.data_dir, max_size=args.max_size,
                         top=args.top)


if __name__ == "__main__":
    main()
