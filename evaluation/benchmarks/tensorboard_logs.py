"""What the training commands add to TensorBoard next to the per-epoch scalars that
:class:`dunno.runlog.RunLog` writes (``--tensorboard DIR``).

* ``dunno train classifier``: at the end, the validation reliability diagram
  (``reliability/val``, :func:`evaluation.plots.reliability_diagram`), the training curves
  (``training``) and the final metrics (``final/test_acc``, ...) -- :func:`log_classifier_end`;
* ``dunno density train``: at the end, a grid of samples (``samples``), for a model with
  ``reconstruct`` (VAE, AAE) validation images above their reconstructions
  (``reconstructions``), the learning curve and the final metrics -- :func:`log_density_end`;
* ``dunno gan train``: after every epoch, the samples of one fixed latent batch (``samples``;
  a scatter plot over the data for 2-D sets) and, for an InfoGAN, one code sweep per
  continuous code (``infogan/c1``, ...) -- :class:`GANEpochImages`;
* ``dunno uci``: the scores of every dataset (``<dataset>/rmse``, ``<dataset>/test_ll``,
  ``<dataset>/cov95``) and the table as text -- :func:`log_uci_table`.

Images are logged with values in [0, 1] (a model's 0..255 pixels are divided by 255);
figures are rendered matplotlib figures. The step of end-of-run entries is the last epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from dunno.runlog import TensorBoardLog

__all__ = [
    "GANEpochImages",
    "log_classifier_end",
    "log_density_end",
    "log_metrics",
    "log_uci_table",
    "unit_range",
]


def unit_range(images: torch.Tensor, pixels: str) -> torch.Tensor:
    """Images ``(N, C, H, W)`` of a model's ``pixels`` (``"8bit"``: 0..255, else [0, 1]) as
    float values in [0, 1], clamped."""
    images = images.detach().float().cpu()
    if pixels == "8bit":
        images = images / 255.0
    return images.clamp(0.0, 1.0)


def log_metrics(tb: TensorBoardLog, metrics: Mapping[str, Any], step: int,
                prefix: str = "final/") -> None:
    """Every finite number of ``metrics`` as the scalar ``prefix + name`` at ``step``."""
    tb.scalars(step, metrics, prefix=prefix)


def log_classifier_end(tb: TensorBoardLog, model: torch.nn.Module, data: str, history, *,
                       metrics: Mapping[str, Any], root=None, device="cpu") -> None:
    """The end of a classifier run: reliability diagram of the validation split of ``data``
    (the split that selected the epoch, never the test split), the training curves of
    ``history`` and ``metrics`` as ``final/...`` scalars, at the last epoch."""
    from dunno.data import load_dataset, make_loader
    from dunno.training import predict_logits
    from evaluation.plots import plot_training_history, reliability_diagram

    step = int(history.epochs[-1]["epoch"]) if history.epochs else 0
    logits, labels = predict_logits(model, make_loader(load_dataset(data, "val", root), 1000),
                                    device=device, desc=f"logits {data} (val)")
    probs = torch.softmax(logits.double(), dim=1).numpy()  # (N, C)
    tb.figure("reliability/val", reliability_diagram(
        probs, labels.numpy(), title=f"{data} (val), epoch {step}"), step)
    tb.figure("training", plot_training_history(history, title=f"{data}"), step)
    log_metrics(tb, metrics, step)


def log_density_end(tb: TensorBoardLog, model, history, *, data: str, root=None,
                    num_samples: int = 64, seed: int = 0) -> None:
    """The end of a density-model run: ``num_samples`` seeded samples, for a model with
    ``reconstruct`` the first 32 validation images (row-wise) above their reconstructions,
    the learning curve and the run's ``history.metrics`` as ``final/...`` scalars."""
    from generative.pixels import evaluation_images
    from generative.plots import learning_curve_plot
    from generative.scoring import draw_samples

    step = int(history.epochs[-1]["epoch"]) if history.epochs else 0
    device = next(model.parameters()).device
    if num_samples:
        images = draw_samples(model, num_samples, seed=seed)  # (n, C, H, W)
        tb.images("samples", unit_range(images, model.pixels), step)
    if callable(getattr(model, "reconstruct", None)):
        val = evaluation_images(data, "val", model.pixels, root)
        x = val.x[:32].to(device)  # (n, C, H, W)
        with torch.no_grad():
            recon = model.reconstruct(x)
        pairs = torch.cat([unit_range(x, model.pixels), unit_range(recon, "grey")])
        tb.images("reconstructions", pairs, step)
    tb.figure("learning_curve", learning_curve_plot(history.epochs, title=data), step)
    log_metrics(tb, getattr(history, "metrics", {}), step)


class GANEpochImages:
    """An ``on_epoch_end(model, epoch, record)`` for :func:`~generative.train_gan` that logs
    the samples of :class:`~generative.plots.EpochSamplePlots`' fixed latent batch
    (``samples``: an image grid, or a scatter plot over the data for 2-D models) and, for an
    InfoGAN, its code sweeps (``infogan/cK``) at step ``epoch``. Shares the latents of
    ``plots`` so that TensorBoard shows the images the PNG files hold."""

    def __init__(self, tb: TensorBoardLog, plots) -> None:
        self.tb, self.plots = tb, plots

    def __call__(self, model, epoch: int, record: Mapping[str, float]) -> None:
        from generative.adversarial import InfoGAN
        from generative.plots import infogan_code_grid, sample_plot

        if not self.plots.grid:
            return
        with torch.no_grad():
            samples = self.plots.fixed_samples(model).detach().cpu()
        if samples.dim() == 4:
            self.tb.images("samples", samples.clamp(0.0, 1.0), epoch)
        else:
            self.tb.figure("samples", sample_plot(samples, title=f"epoch {epoch}",
                                                  data=self.plots.data_points), epoch)
        if isinstance(model, InfoGAN):
            for code in range(model.continuous):
                self.tb.figure(f"infogan/c{code + 1}",
                               infogan_code_grid(model, code=code, seed=self.plots.seed), epoch)


def log_uci_table(tb: TensorBoardLog, table) -> None:
    """The scores of a :class:`~uncertainty.predictive.uci.UCITable`: per dataset
    ``<folder>/rmse``, ``<folder>/test_ll``, ``<folder>/cov95`` (step 0) and the table as
    Markdown text (``uci/<method>``)."""
    for row in table.rows:
        values = {k: row[k] for k in ("rmse", "test_ll", "cov95")
                  if isinstance(row.get(k), float) and math.isfinite(row[k])}
        tb.scalars(0, values, prefix=f"{row['folder']}/")
    tb.text(f"uci/{table.method}", table.to_markdown())
