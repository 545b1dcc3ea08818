"""The files of a calibration comparison (``dunno calibrate --out``).

The comparison itself is library code (:func:`uncertainty.calibration.run_calibration`, which
returns a :class:`~uncertainty.calibration.CalibrationResult`); this runner writes it::

    from uncertainty.calibration import run_calibration
    from evaluation.benchmarks.calibration import write_calibration_report
    result = run_calibration(model, "mnist", methods="all")
    files = write_calibration_report(result, "runs/calibration")

**Files**: ``calibration.json`` (everything), ``calibration.csv`` (the table), one
``reliability_<method>.png`` per method (before and after, side by side), the fitted
``calibrator_<method>.pt`` files (:func:`uncertainty.calibration.load_calibrator`) and the
report (:func:`calibration_report`): ``report.md``, ``report.html``, ``report.json``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from dunno.checkpoints import atomic_write_bytes
from dunno.reporting import Figure, Report, Section, write_csv, write_json, write_report
from uncertainty.calibration import CalibrationResult, save_calibrator
from uncertainty.calibration.compare import COLUMNS

__all__ = ["calibration_report", "write_calibration_report"]


def calibration_report(result: CalibrationResult, *, figures: bool = False) -> Report:
    """The report of ``result``: what was fitted on what, the before/after table (rates in
    percent), the fitted temperature, the best methods and, with ``figures``, the reliability
    diagrams that :func:`write_calibration_report` draws."""
    blocks: list = [
        f"Calibration on `{result.data}`: {result.calibration_size} "
        f"`{result.calibration_split}` examples (seed {result.seed}) to fit, "
        f"{result.test_size} `test` examples to evaluate.",
        result.report_table(),
    ]
    if "temperature" in result.fitted:
        blocks.append(f"fitted temperature T = "
                      f"{result.fitted['temperature']['temperature_']:.4f}")
    blocks.append(f"best ECE: {result.best('ece')}; best NLL: {result.best('nll')}")
    sections = [Section("Calibration", blocks)]
    if figures:
        sections.append(Section("Reliability diagrams", [
            Figure(f"reliability_{name}.png", f"uncalibrated (left) and {name} (right)")
            for name in result.calibrators]))
    return Report("calibrate", f"dunno calibrate: {result.data}", sections,
                  {"data": result.data}, primary="calibration")


def write_calibration_report(result: CalibrationResult, out: str | Path) -> list[Path]:
    """Write ``result``'s files (see the module docstring) to the directory ``out``; returns
    their paths, ``calibration.json`` first."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_csv(result.rows(), out / "calibration.csv", COLUMNS)]
    before = torch.softmax(result.test_logits, dim=1)  # (N, C)
    for name, calibrator in result.calibrators.items():
        files.append(save_calibrator(calibrator, out / f"calibrator_{name}.pt"))
        files.append(_reliability_figure(
            before, calibrator.predict_proba(result.test_logits), result.test_labels,
            out / f"reliability_{name}.png",
            (f"{result.data} test: uncalibrated", f"{result.data} test: {name}"),
        ))
    files.insert(0, out / "calibration.json")
    files += write_report(calibration_report(result, figures=True), out)
    write_json({**result.to_dict(), "files": [str(p) for p in files]}, out / "calibration.json")
    return files


def _reliability_figure(before: torch.Tensor, after: torch.Tensor, labels: torch.Tensor,
                        path: Path, titles: tuple[str, str]) -> Path:
    """Reliability diagrams (:func:`evaluation.plots.reliability_diagram`) before and after
    calibration, rendered and placed side by side in one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    from evaluation.plots import reliability_diagram

    panels = []
    for probs, title in zip((before, after), titles, strict=True):
        canvas = FigureCanvasAgg(reliability_diagram(probs, labels, title=title))
        canvas.draw()
        panels.append(np.asarray(canvas.buffer_rgba()))  # (H, W, 4)
    height = max(p.shape[0] for p in panels)
    panels = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255)
              for p in panels]
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(panels, axis=1)).save(buffer, format="PNG")  # (H, W, 4)
    return atomic_write_bytes(buffer.getvalue(), path)
