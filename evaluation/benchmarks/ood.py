"""The files of an OOD run (``dunno ood --report-dir``), and the density models' inputs.

The suite itself is library code (:func:`uncertainty.ood.run_ood`, which returns an
:class:`~uncertainty.ood.OODTable`); this runner writes what it measured::

    from uncertainty.ood import run_ood
    from evaluation.benchmarks.ood import write_ood_report
    table = run_ood(model, "mnist", "fashion-mnist,gaussian-noise")
    files = write_ood_report(table, "runs/ood-mnist")

**Files**: ``ood.json`` (everything but the scores), ``ood.csv`` (the long table with the mean
rows), ``auroc.csv`` (detector x set, AUROC as a fraction like every data file),
``roc_<set>.png`` (ROC and PR curves of every detector on that set),
``hist_<detector>_<set>.png`` (score histograms) and the report
(:func:`ood_report`): ``report.md``, ``report.html``, ``report.json``.

:func:`density_inputs_for` is where the generative models meet :mod:`uncertainty.ood`: the
``density_inputs`` of :func:`~uncertainty.ood.run_ood` for a density model of this project.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from dunno.reporting import Figure, Report, Section, write_csv, write_json, write_report
from uncertainty.ood import OODTable
from uncertainty.ood.suite import DensityInputs
from uncertainty.ood.table import COLUMNS

__all__ = ["density_inputs_for", "ood_figures", "ood_report", "write_ood_report"]


def ood_figures(table: OODTable, *, histograms: bool = True) -> list[Figure]:
    """The figures :func:`write_ood_report` draws, by file name: ``roc_<set>.png`` per OOD
    set and, with ``histograms``, ``hist_<detector>_<set>.png``."""
    figures = []
    for set_name in table.out_sets:
        figures.append(Figure(f"roc_{_slug(set_name)}.png",
                              f"ROC and PR curves: {table.in_data} vs {set_name}"))
        if histograms:
            figures += [Figure(f"hist_{det}_{_slug(set_name)}.png",
                               f"{det} scores: {table.in_data} (test) vs {set_name}")
                        for det in table.detectors]
    return figures


def ood_report(table: OODTable, figures: list[Figure] | tuple = ()) -> Report:
    """The report of ``table``: the fit and test data, the long table (every metric in
    percent, with the means), the AUROC pivot, the time of the shared passes and the
    ``figures`` (ROC curves ``roc_*`` and histograms ``hist_*``, paths inside the run
    directory)."""
    acc = "n/a" if table.accuracy is None else f"{100 * table.accuracy:.2f}%"
    t = table.timings
    long, pivot = table.report_tables()
    sections = [Section("OOD detection", [
        f"In-distribution `{table.in_data}` (test n={table.n_test}, accuracy {acc}); "
        f"detectors fitted on `{table.fit_split}` (n={table.n_fit}); higher score = more OOD.",
        long, pivot,
        f"shared forward passes {t['shared_forward_total']:.1f}s; total {t['total']:.1f}s; "
        f"own passes: {', '.join(table.own_passes) or 'none'}",
    ])]
    roc = [f for f in figures if f.path.startswith("roc_")]
    hist = [f for f in figures if f.path.startswith("hist_")]
    if roc:
        sections.append(Section("ROC and PR curves", roc))
    if hist:
        sections.append(Section("Score histograms", hist))
    return Report("ood", f"dunno ood: {table.in_data}", sections, {"in_data": table.in_data},
                  primary="ood")


def density_inputs_for(density) -> DensityInputs | None:
    """How ``density`` sees a split of the data: the fixed seeded binarisation of
    :func:`generative.pixels.prepare_images` for a binary model
    (``density.pixels == "binary"``; the same draw as the ``X-binary`` test files for the test
    split), integers 0..255 for an 8-bit one; ``None`` (the data unchanged) for a model
    without ``pixels``."""
    pixels = getattr(density, "pixels", None)
    if pixels not in ("binary", "8bit"):
        return None
    from generative.pixels import prepare_images

    def transform(dataset, split: str):
        return prepare_images(dataset, pixels, split, "fixed")

    return transform


def _slug(name: str) -> str:
    base = Path(name).name if ("/" in name or "\\" in name) and ":" not in name else name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "set"


def write_ood_report(table: OODTable, out: str | Path, *, histograms: bool = True
                     ) -> list[Path]:
    """Write ``table``'s files (see the module docstring) to the directory ``out``; returns
    their paths, ``ood.json`` last. ``histograms=False`` skips the per-detector score
    histograms."""
    from evaluation.plots import ood_score_histogram, roc_pr_curves

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [
        write_csv(table.table_rows(), out / "ood.csv", COLUMNS),
        write_csv(table.pivot("auroc", scale=1.0), out / "auroc.csv"),  # fractions, as ood.csv
    ]
    for set_name in table.out_sets:
        pairs = {d: (table.scores[d]["in"], table.scores[d][set_name]) for d in table.detectors}
        path = out / f"roc_{_slug(set_name)}.png"
        roc_pr_curves(pairs, title=f"{table.in_data} vs {set_name}", path=path)
        files.append(path)
        if histograms:
            for det in table.detectors:
                path = out / f"hist_{det}_{_slug(set_name)}.png"
                with warnings.catch_warnings():
                    # matplotlib warns when placing a loc="best" legend takes long (a busy
                    # machine); the figure is still right.
                    warnings.filterwarnings("ignore", "Creating legend with loc=", UserWarning)
                    ood_score_histogram(
                        table.scores[det]["in"], table.scores[det][set_name],
                        in_label=f"{table.in_data} (test)", out_label=set_name,
                        title=f"{det}", path=path,
                    )
                files.append(path)
    files += write_report(ood_report(table, ood_figures(table, histograms=histograms)), out)
    files.append(out / "ood.json")
    write_json({**table.to_dict(), "files": [str(p) for p in files]}, out / "ood.json")
    return files
