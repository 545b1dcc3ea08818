"""``dunno demo``: the end-to-end tour on the bundled ``digits`` data.

Steps, each reported in ``OUT/report.md`` with its figures:

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dunno.checkpoints import atomic_write_text
from dunno.classify import ClassifierConfig, train_classifier
from dunno.data import load_dataset, make_loader
from dunno.devices import resolve_device
from dunno.outputs import check_output_dir
from dunno.progress import reporting
from dunno.reporting import format_table, markdown_table, write_json
from dunno.training import predict_logits

__all__ = ["DemoResult", "run_demo"]


@dataclass
class Section:
    title: str
    available: bool
    text: str = ""
    figures: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: report path and per-step metrics."""

    report: Path
    sections: list[Section]

    def metrics(self) -> dict[str, dict]:
        return {s.title: s.metrics for s in self.sections if s.available}


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
        figures = ["training.png", "reliability.png"]
    except ImportError:  # pragma: no cover - plots land with the evaluation suite
        pass
    row = {"test accuracy": metrics["accuracy"], "NLL (nats)": metrics["nll"],
           "ECE (15 bins)": metrics["ece"], "Brier": metrics["brier"],
           "epochs": len(result.history.epochs), "minutes": result.metrics["minutes"]}
    text = (
        f"LeNet-5 trained on `digits` (1257 training images, 8x8), best epoch "
        f"{result.history.best_epoch} by validation NLL; checkpoint "
        f"`{result.checkpoint.relative_to(ctx['out'])}`.\n\n" + markdown_table([row])
    )
    return Section("Classifier", True, text, figures, {**metrics, **result.metrics})


def _calibration_step(ctx: dict) -> Section:
    from evaluation.benchmarks.calibration import write_calibration_report
    from uncertainty.calibration import run_calibration

    result = run_calibration(ctx["model"], "digits", methods="all", device=ctx["device"])
    write_calibration_report(result, ctx["out"] / "calibration")
    rows = result.rows() if hasattr(result, "rows") else result
    figures = [str(p.relative_to(ctx["out"])) for p in sorted(
        (ctx["out"] / "calibration").glob("*.png"))]
    return Section("Calibration", True, markdown_table(rows), figures,
                   {"rows": rows})


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
    figures = [str(p.relative_to(ctx["out"])) for p in sorted(out.glob("roc*.png"))]
    text = ("Detectors around the same LeNet-5 (higher score = more OOD); in-distribution: "
            "the `digits` test split. AUROC %:\n\n" + table.to_markdown("auroc"))
    return Section("OOD detection", True, text, figures, {"rows": table.rows})


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
    row = {"test NLL (nats)": summary["nll_nats"], "bits/dim": summary["bits_per_dim"],
           "epochs": len(history.epochs)}
    text = ("NADE (Larochelle & Murray 2011) fitted to the `digits` images binarised by a fixed "
            "seeded Bernoulli draw (64 binary pixels); exact test log-likelihood:\n\n"
            + markdown_table([row]))
    figures = [str(p.relative_to(ctx["out"])) for p in sorted(out.glob("*.png"))]
    return Section("Density model", True, text, figures, summary)


STEPS: list[tuple[str, str, Callable[[dict], Section] | None]] = [
    ("Classifier", "dunno.nets", _classifier_step),
    ("Calibration", "uncertainty.calibration", _calibration_step),
    ("OOD detection", "uncertainty.ood", _ood_step),
    ("Density model", "generative.training", _density_step),
]


def run_demo(out: str | Path = "runs/demo", *, device: str = "auto",
             progress: bool | None = None, smoke: bool = False, root=None) -> DemoResult:
    """Run every available step and write ``out/report.md`` (+ ``summary.json``, figures);
    ``progress`` reports the steps' training and passes on stderr (:mod:`dunno.progress`)."""
    out = check_output_dir(out)  # a clear OSError now, not after the first step
    with reporting(progress, owner="run_demo"):
        return _run_demo(out, device, smoke, root)


def _run_demo(out: Path, device: str, smoke: bool, root) -> DemoResult:
    ctx = {"out": out, "device": resolve_device(device), "smoke": smoke, "root": root}
    sections: list[Section] = []
    for title, module, step in STEPS:
        if step is None or not _has(module):
            sections.append(Section(title, False, f"Not yet available: `{module}` has not "
                                    "landed in this version of dunno."))
            print(f"[demo] {title}: not yet available")
            continue
        t0 = time.perf_counter()
        print(f"[demo] {title} ...", flush=True)
        section = step(ctx)
        section.seconds = time.perf_counter() - t0
        sections.append(section)
        print(f"[demo] {title}: done in {section.seconds:.1f} s")

    lines = ["# dunno demo report", "",
             f"Data: scikit-learn's bundled `digits`. Device: `{ctx['device']}`."
             + (" Smoke budgets (tests only)." if smoke else ""), ""]
    for s in sections:
        lines += [f"## {s.title}", "", s.text, ""]
        lines += [f"![{fig}]({fig})" for fig in s.figures]
        if s.figures:
            lines.append("")
    report = atomic_write_text("\n".join(lines), out / "report.md")
    write_json({s.title: {"available": s.available, "seconds": s.seconds, **s.metrics}
                for s in sections}, out / "summary.json")
    summary = [{"step": s.title, "status": "done" if s.available else "not yet available",
                "seconds": round(s.seconds, 1)} for s in sections]
    print()
    print(format_table(summary))
    print(f"\nreport: {report}")
    return DemoResult(report, sections)
