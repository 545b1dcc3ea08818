"""The files of ``dunno density score --out`` and ``dunno gan eval --out``.

The measurements are library code (:func:`generative.score_density`,
:func:`generative.evaluate_gan`); these runners write them:

* density score: ``scores.npy`` (per-image NLL, nats), ``score.json`` and the report
  (:func:`density_score_report`);
* gan eval: ``eval.json``, ``eval.csv`` (image models), ``eval_samples.png`` and the report
  (:func:`gan_eval_report`).

Each report is ``report.md``, ``report.html`` and ``report.json``
(:func:`dunno.reporting.write_report`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from dunno.checkpoints import atomic_write_bytes
from dunno.reporting import Figure, Report, Section, write_csv, write_json, write_report
from dunno.tables import Column, Table, metric_column

__all__ = ["density_score_report", "gan_eval_report", "write_density_score_report",
           "write_gan_eval_report"]

_SCORE_KEYS = ("data", "split", "n", "nll_nats", "bits_per_dim", "recon_nats", "samples_k",
               "images_per_s")


def density_score_report(summary: dict[str, Any]) -> Report:
    """The report of :func:`generative.score_density`'s ``summary``: one row with the data,
    the split, the number of images, the NLL (nats per image), bits/dim (discrete likelihoods
    only; a continuous one gets :data:`generative.scoring.CONTINUOUS_NOTE` instead), the
    VAE's reconstruction cross-entropy and importance samples where they apply, and the
    speed."""
    columns = [Column("data", "data"), Column("split", "split"), Column("n", "n"),
               metric_column("nll_nats")]
    if summary.get("bits_per_dim") is not None:
        columns.append(metric_column("bits_per_dim"))
    if summary.get("recon_nats") is not None:
        columns.append(metric_column("recon_nats"))
    if summary.get("samples_k") is not None:
        columns.append(Column("samples_k", "importance samples"))
    columns.append(Column("images_per_s", "images/s", digits=0))
    row = {k: summary[k] for k in _SCORE_KEYS if k in summary}
    table = Table("density_score", columns, [row], index=("data", "split"))
    model = summary.get("model", "density model")
    blocks: list = [f"{model} on `{summary.get('data')}` ({summary.get('split')} split): "
                    "per-image negative log-likelihood (exact, or the VAE's importance-sampled "
                    "bound).", table]
    if summary.get("likelihood") == "continuous":
        from generative.scoring import CONTINUOUS_NOTE

        blocks.append(f"{model}: {CONTINUOUS_NOTE}.")
    return Report("density score", f"dunno density score: {summary.get('data')}",
                  [Section("Density score", blocks)], {"data": summary.get("data")},
                  primary="density_score")


def write_density_score_report(nll: np.ndarray, summary: dict[str, Any], out: str | Path
                               ) -> list[Path]:
    """Write ``scores.npy`` (``nll``: ``(N,)`` nats), ``score.json`` and the report to the
    directory ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(nll))
    files = [atomic_write_bytes(buffer.getvalue(), out / "scores.npy"),
             write_json(summary, out / "score.json")]
    return files + write_report(density_score_report(summary), out)


def gan_eval_report(report: dict[str, Any], *, figures: bool = False) -> Report:
    """The report of :func:`generative.evaluate_gan`'s ``report`` dict: for image models a
    table per image source (cFID, classifier score, precision and recall in percent, n) with
    the cFID note and the InfoGAN code accuracy; for the ring of Gaussians the modes covered
    and the share of high-quality samples. With ``figures``, the sample figure."""
    from generative import CFID_NOTE

    title = f"dunno gan eval: {report['model']}"
    if "rows" not in report:  # the ring of Gaussians
        table = Table("gan_eval", [
            Column("model", "model"), Column("modes_covered", "modes covered (of 8)"),
            Column("high_quality", "high-quality samples", "%", 2, 100.0),
            Column("num_samples", "samples")], [report], index=("model",))
        blocks: list = [table, "High quality: within 3 standard deviations of a mode."]
    else:
        table = Table("gan_eval", [
            Column("source", "source"), Column("cFID", "cFID", digits=3),
            Column("classifier_score", "classifier score", digits=3),
            Column("precision", "precision", "%", 2, 100.0),
            Column("recall", "recall", "%", 2, 100.0), Column("n", "n")],
            report["rows"], index=("source",))
        floor = report["rows"][-1]
        blocks = [table, f"{CFID_NOTE} Classifier: {report['classifier']}.",
                  f"classifier score of the test images: {floor['classifier_score_test']:.3f}; "
                  f"precision / recall: k = {report['k']} nearest neighbours in feature space"]
        if "code_accuracy" in report:
            blocks.append(f"InfoGAN categorical code -> predicted digit, best one-to-one "
                          f"mapping: accuracy {100 * report['code_accuracy']:.2f}% (mapping "
                          f"{report['code_mapping']})")
    if figures:
        blocks.append(Figure("eval_samples.png", "samples"))
    return Report("gan eval", title, [Section("Sample quality", blocks)],
                  {"model": report["model"], "data": report.get("data")}, primary="gan_eval")


def write_gan_eval_report(result, out: str | Path) -> list[Path]:
    """Write ``eval.json``, ``eval.csv`` (image models), ``eval_samples.png`` and the report of
    a :class:`generative.adversarial.evaluation.GANEvaluation` to the directory ``out``."""
    from generative.plots import sample_plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = result.report
    files = [write_json(report, out / "eval.json")]
    if "rows" in report:
        files.append(write_csv(report["rows"], out / "eval.csv"))
    samples = result.samples if "rows" not in report else result.samples[:64]
    sample_plot(samples, title=report["model"], path=out / "eval_samples.png")
    files.append(out / "eval_samples.png")
    return files + write_report(gan_eval_report(report, figures=True), out)
