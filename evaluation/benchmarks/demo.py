"""``dunno demo``: the end-to-end tour on the bundled ``digits`` data.

Steps, each reported in ``OUT/report.md`` and the self-contained ``OUT/report.html`` with its
tables and figures (:func:`dunno.reporting.write_report`; ``report.json`` records them):

1. train a small CNN (LeNet-5) and report accuracy and calibration metrics;
2. calibrate it post hoc (temperature scaling and friends) -- when
   :mod:`uncertainty.calibration` is available;
3. run the OOD benchmark (noise, shifts, unseen classes) -- when :mod:`uncertainty.ood`
   is available;
4. fit a density model -- when :mod:`generative.autoregressive` is available.

A step whose package has not landed is listed as "not yet available"; nothing is faked.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dunno.classify import ClassifierConfig, train_classifier
from dunno.data import load_dataset, make_loader
from dunno.devices import resolve_device
from dunno.outputs import check_output_dir
from dunno.progress import reporting
from dunno.reporting import Figure, Report, write_json, write_report
from dunno.reporting import Section as ReportSection
from dunno.tables import Column, Table, metric_column
from dunno.training import predict_logits

__all__ = ["DemoResult", "demo_summary_table", "run_demo"]


@dataclass
class Section:
    """One step of the demo: its report blocks (paragraphs, tables, figure paths relative to
    the demo's output directory), its metrics and its time."""

    title: str
    available: bool
    blocks: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def figures(self) -> list[str]:
        return [b.path for b in self.blocks if isinstance(b, Figure)]


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: the report path, the steps and the report itself."""

    report: Path
    sections: list[Section]
    document: Report | None = None

    def metrics(self) -> dict[str, dict]:
        return {s.title: s.metrics for s in self.sections if s.available}


def _figures(out: Path, paths) -> list[Figure]:
    """Report figures for the files ``paths`` inside the run directory ``out`` (absolute, or
    relative to the working directory as ``out`` is), recorded relative to ``out``."""
    base = Path(out).resolve()
    return [Figure(Path(p).resolve().relative_to(base).as_posix()) for p in paths]


def _has(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _classifier_step(ctx: dict) -> Section:
    from evaluation.metrics import calibration_metrics

    smoke = ctx["smoke"]
    config = ClassifierConfig(
        backbone="lenet5", data="digits", epochs=2 if smoke else 40, batch_size=32,
        lr=1e-3, seed=0, device=str(ctx["device"]),
    )
    result = train_classifier(config, out=ctx["out"] / "classifier")
    model = result.model
    ctx["model"], ctx["checkpoint"] = model, result.checkpoint
    test = load_dataset("digits", "test")
    logits, labels = predict_logits(model, make_loader(test, 512), device=ctx["device"])
    probs = torch.softmax(logits.double(), dim=1)
    metrics = calibration_metrics(probs, labels)
    figures = []
    try:
        from evaluation.plots import plot_training_history, reliability_diagram

        plot_training_history(result.history, path=ctx["out"] / "training.png")
        reliability_diagram(probs, labels, path=ctx["out"] / "reliability.png",
                            title="LeNet-5 on digits (test)")
        figures = [ctx["out"] / "training.png", ctx["out"] / "reliability.png"]
    except ImportError:  # pragma: no cover - plots land with the evaluation suite
        pass
    row = {**metrics, "epochs": len(result.history.epochs),
           "minutes": result.metrics["minutes"]}
    table = Table("classifier", [metric_column("accuracy", header="test accuracy"),
                                 metric_column("nll"),
                                 metric_column("ece"),
                                 metric_column("brier"), Column("epochs", "epochs"),
                                 Column("minutes", "minutes", digits=2)], [row])
    text = (
        f"LeNet-5 trained on `digits` (1257 training images, 8x8), best epoch "
        f"{result.history.best_epoch} by validation NLL; checkpoint "
        f"`{result.checkpoint.relative_to(ctx['out'])}`; test metrics (ECE over 15 "
        "equal-width bins of the top-label confidence):"
    )
    return Section("Classifier", True, [text, table, *_figures(ctx["out"], figures)],
                   {**metrics, **result.metrics})


def _calibration_step(ctx: dict) -> Section:
    from evaluation.benchmarks.calibration import write_calibration_report
    from uncertainty.calibration import run_calibration

    result = run_calibration(ctx["model"], "digits", methods="all", device=ctx["device"])
    write_calibration_report(result, ctx["out"] / "calibration")
    figures = sorted((ctx["out"] / "calibration").glob("*.png"))
    text = ("Post-hoc calibrators fitted on the held-out `val` split, evaluated on `test` "
            "(full report: `calibration/report.html`).")
    return Section("Calibration", True,
                   [text, result.report_table(), *_figures(ctx["out"], figures)],
                   {"rows": result.rows()})


def _ood_step(ctx: dict) -> Section:
    from evaluation.benchmarks.ood import write_ood_report
    from uncertainty.ood import run_ood

    out = ctx["out"] / "ood"
    detectors = ("msp", "energy", "mahalanobis", "knn", "combined")
    if ctx["smoke"]:
        detectors = ("msp", "energy")
    table = run_ood(ctx["model"], "digits", ["gaussian-noise", "digits:rotate=90",
                                             "digits:invert", "digits:blur=1"],
                    detectors, device=ctx["device"])
    write_ood_report(table, out, histograms=False)
    figures = sorted(out.glob("roc*.png"))
    text = ("Detectors around the same LeNet-5 (higher score = more OOD); in-distribution: "
            "the `digits` test split (full report: `ood/report.html`).")
    return Section("OOD detection", True,
                   [text, table.report_tables()[1], *_figures(ctx["out"], figures)],
                   {"rows": table.rows})


def _density_step(ctx: dict) -> Section:
    from generative import draw_samples, score_density, train_density
    from generative.plots import learning_curve_plot, sample_grid

    out = ctx["out"] / "density"
    model, history = train_density(
        "nade", "digits", 2 if ctx["smoke"] else 100, out=out, binarize="fixed",
        batch_size=64, lr=3e-3, device=str(ctx["device"]),
        options={"hidden": 16 if ctx["smoke"] else 64},
    )
    _, summary = score_density(model, "digits", "test", binarize="fixed",
                               device=ctx["device"])
    learning_curve_plot(history.epochs, title="nade on digits", path=out / "learning_curve.png")
    sample_grid(draw_samples(model, 64, seed=0), pixels=model.pixels,
                title=f"{type(model).__name__} samples", path=out / "samples.png")
    row = {**summary, "epochs": len(history.epochs)}
    table = Table("density", [metric_column("nll_nats", header="test NLL"),
                              metric_column("bits_per_dim"), Column("epochs", "epochs")], [row])
    text = ("NADE (Larochelle & Murray 2011) fitted to the `digits` images binarised by a fixed "
            "seeded Bernoulli draw (64 binary pixels); exact test log-likelihood:")
    figures = sorted(out.glob("*.png"))
    return Section("Density model", True, [text, table, *_figures(ctx["out"], figures)],
                   summary)


STEPS: list[tuple[str, str, Callable[[dict], Section] | None]] = [
    ("Classifier", "dunno.nets", _classifier_step),
    ("Calibration", "uncertainty.calibration", _calibration_step),
    ("OOD detection", "uncertainty.ood", _ood_step),
    ("Density model", "generative.training", _density_step),
]


def demo_summary_table(sections: list[Section]) -> Table:
    """The steps of the demo: status and seconds."""
    rows = [{"step": s.title, "status": "done" if s.available else "not yet available",
             "seconds": s.seconds} for s in sections]
    return Table("demo_steps", [Column("step", "step"), Column("status", "status"),
                                Column("seconds", "seconds", digits=1)], rows,
                 index=("step",))


def run_demo(out: str | Path = "runs/demo", *, device: str = "auto",
             progress: bool | None = None, smoke: bool = False, root=None) -> DemoResult:
    """Run every available step and write ``out/report.md``, ``out/report.html`` and
    ``out/report.json`` (+ ``summary.json``, figures); ``progress`` reports the steps'
    training and passes on stderr (:mod:`dunno.progress`), as do the step lines; nothing is
    printed on stdout (``dunno demo`` prints the report's tables)."""
    out = check_output_dir(out)  # a clear OSError now, not after the first step
    with reporting(progress, owner="run_demo"):
        return _run_demo(out, device, smoke, root)


def _run_demo(out: Path, device: str, smoke: bool, root) -> DemoResult:
    ctx = {"out": out, "device": resolve_device(device), "smoke": smoke, "root": root}
    sections: list[Section] = []
    for title, module, step in STEPS:
        if step is None or not _has(module):
            sections.append(Section(title, False, [f"Not yet available: `{module}` has not "
                                    "landed in this version of dunno."]))
            print(f"[demo] {title}: not yet available", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        print(f"[demo] {title} ...", file=sys.stderr, flush=True)
        section = step(ctx)
        section.seconds = time.perf_counter() - t0
        sections.append(section)
        print(f"[demo] {title}: done in {section.seconds:.1f} s", file=sys.stderr)

    intro = (f"Data: scikit-learn's bundled `digits`. Device: `{ctx['device']}`."
             + (" Smoke budgets (tests only)." if smoke else ""))
    document = Report("demo", "dunno demo report",
                      [ReportSection("", [intro, demo_summary_table(sections)])]
                      + [ReportSection(s.title, list(s.blocks)) for s in sections],
                      {"device": str(ctx["device"]), "smoke": smoke}, primary="demo_steps")
    write_report(document, out)
    write_json({s.title: {"available": s.available, "seconds": s.seconds, **s.metrics}
                for s in sections}, out / "summary.json")
    return DemoResult(out / "report.md", sections, document)
