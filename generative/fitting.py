r"""Fit a density model on the user's own arrays: the ``fit`` method every density model of
:mod:`generative.autoregressive` and :mod:`generative.latent` shares, and the one training
step per kind of model, which :func:`generative.training.train_density` uses as well.

Example (binary vectors of any length ``D``)::

    import numpy as np, torch
    from generative import NADE
    x = (np.random.default_rng(0).random((1000, 12)) < 0.3).astype(np.float32)  # (N, D)
    nade = NADE(12, hidden=32).fit(x, epochs=20, max_minutes=1)  # NADE(D): (1, 1, D)
    log_p = nade.log_prob(torch.from_numpy(x))                     # (N,) exact, nats
    nade.history_["loss"]                                          # training NLL per epoch

**Inputs.** ``x`` is a numpy array or a tensor of images ``(N, C, H, W)``, or, for a model
built for one channel (``image_shape = (1, H, W)``), of flat vectors ``(N, H * W)`` read
row-major (entry ``r * W + c`` is pixel ``(r, c)``; :func:`generative.pixels.as_images`).
``NADE(D)`` builds a NADE for ``D``-dimensional vectors (``(1, 1, D)``), so any ``D`` works;
for the convolutional and recurrent models build them for the image shape the vectors come
from (``PixelCNN((1, 8, 8))`` for 64-dim vectors of 8x8 images). Multi-channel models take
images only. The values are the model's pixels, never guessed: 0/1 for binary models, whole
numbers 0..255 for ``pixels="8bit"``, [0, 1] for a continuous-Bernoulli VAE or a grey AAE.
``log_prob``, ``loss`` and the other image methods accept the same shapes.

**Training** (:func:`density_step`): Adam on the model's ``loss(x)`` -- the mean negative
log-likelihood in nats for the autoregressive models, the negative ELBO / IWAE bound for a
VAE -- over shuffled mini-batches; a model with its own multi-phase step (the adversarial
autoencoder: ``configure_optimizers`` and ``step``) trains with that. The epochs run in
:func:`dunno.training.fit`: seeded (the weights, the shuffles and the model's own noise all
follow ``seed``, so two fits of the same initial weights repeat exactly), with a time budget
(``max_minutes``: no new step starts once it is spent; every epoch takes at least one) and
the per-epoch :class:`~dunno.training.History` kept in ``history_``. ``fit`` trains the
current weights (a second call continues from them, with fresh optimisers and a new
``history_``). Pyro's global parameter store is not used (a VAE owns its parameters).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from dunno.data import ArrayDataset, DatasetInfo, make_loader
from dunno.inputs import as_arrays
from dunno.progress import progress_enabled
from dunno.training import History, fit
from dunno.validation import check_float, check_int, check_seed

__all__ = ["DensityFitMixin", "density_optimizers", "density_step", "has_own_step"]


def has_own_step(model) -> bool:
    """Whether ``model`` trains with its own multi-phase step (``configure_optimizers(lr)``
    and ``step(batch)``, as the adversarial autoencoder does) instead of Adam on ``loss``."""
    return callable(getattr(model, "configure_optimizers", None)) and callable(
        getattr(model, "step", None))


def density_optimizers(model, lr: float) -> dict[str, torch.optim.Optimizer]:
    """The optimisers of :func:`density_step`, by training-state name: ``{"optimizer": Adam
    over model.parameters()}``, or the model's own (``{"optimizer_recon", "optimizer_disc",
    "optimizer_gen"}`` for the adversarial autoencoder)."""
    if has_own_step(model):
        return {f"optimizer_{k}": v for k, v in model.configure_optimizers(lr=lr).items()}
    return {"optimizer": torch.optim.Adam(model.parameters(), lr=lr)}


def density_step(model, optimizers: dict[str, torch.optim.Optimizer], *,
                 grad_clip: float | None = None,
                 device: str | torch.device | None = None) -> Callable[[Any], dict]:
    """One maximum-likelihood update per batch ``(x, ...)`` for :func:`dunno.training.fit`.

    ``x`` is moved to ``device`` (default: the model's). Likelihood models: ``loss(x)``,
    backward, gradient-norm clipping at ``grad_clip`` (optional), one step of the single
    optimiser of :func:`density_optimizers`; returns ``{"loss"}``. A model with its own step
    (:func:`has_own_step`): ``model.step((x, y))``; returns ``{"loss": recon_loss, ...}``
    with all its named losses.
    """
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    if has_own_step(model):
        def own_step(batch):
            x, y = (batch[0], batch[1]) if isinstance(batch, list | tuple) else (batch, None)
            losses = model.step((x.to(device), y))
            return {"loss": losses["recon_loss"], **losses}

        return own_step
    (optimizer,) = optimizers.values()

    def step(batch):
        x = (batch[0] if isinstance(batch, list | tuple) else batch).to(device)
        loss = model.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return {"loss": loss.detach()}

    return step


class DensityFitMixin(ABC):
    """``fit(x, ...)`` for an ``nn.Module`` density model (see the module docstring).

    A subclass implements ``_fit_images(x, owner)``: its own validation of ``x`` (shape,
    pixel values, NaN/inf), returning float images ``(N, C, H, W)``.
    """

    #: the per-epoch records of the last :meth:`fit` (set by it)
    history_: History

    @abstractmethod
    def _fit_images(self, x: torch.Tensor, owner: str) -> torch.Tensor:
        """Validate ``x`` for this model; float images ``(N, C, H, W)``."""

    def _fit_labels(self, labels: torch.Tensor | None, n: int,
                    owner: str) -> torch.Tensor | None:
        """The labels the training step uses (checked), or None: ignored by default."""
        return None

    def fit(self, x, *, epochs: int = 10, max_minutes: float | None = None,
            batch_size: int = 100, lr: float = 1e-3, seed: int = 0,
            progress: bool | None = None):
        """Train on ``x`` by maximum likelihood (the adversarial autoencoder: its three-phase
        step) and return ``self`` (in eval mode), with the history in ``history_``.

        Parameters
        ----------
        x : numpy array, tensor, ``(x, y)`` pair, Dataset or DataLoader
            Images ``(N, C, H, W)`` or, for a single-channel model, flat vectors
            ``(N, H * W)`` (row-major), holding the model's pixel values (0/1, 0..255 or
            [0, 1]); at least one example. Read whole by :func:`dunno.inputs.as_arrays` and
            checked in full before training starts. Labels ``y`` (of a pair or a labelled
            Dataset) are used only by a semi-supervised adversarial autoencoder (``-1``:
            unlabelled); the other models ignore them.
        epochs : int
            Passes over ``x`` (an upper bound when ``max_minutes`` is given).
        max_minutes : float, optional
            Training-time budget in minutes (time inside the training step): no new step
            starts once it is spent; the epoch under way ends there and
            ``history_.stopped_for_budget`` is set.
        batch_size, lr : int, float
            Mini-batch size and Adam's learning rate.
        seed : int
            Seeds every generator (:func:`dunno.training.seed_everything`) and the shuffles.
        progress : bool, optional
            Report the training on stderr (:mod:`dunno.progress`; ``None``: as the
            enclosing call asked, off by default).

        Returns
        -------
        self
            ``history_`` is a :class:`dunno.training.History`: one record per epoch with the
            mean training ``loss`` (nats per example; the AAE adds ``recon_loss``,
            ``d_loss``, ``g_loss``), ``seconds``, ``train_seconds`` and ``examples``.
        """
        owner = f"{type(self).__name__}.fit"
        epochs = check_int(epochs, "epochs", owner, low=1)
        max_minutes = check_float(max_minutes, "max_minutes", owner, low=0.0, low_open=True,
                                  allow_none=True)
        batch_size = check_int(batch_size, "batch_size", owner, low=1)
        lr = check_float(lr, "lr", owner, low=0.0, low_open=True)
        seed = check_seed(seed, owner)
        progress_enabled(progress, owner)  # None or a bool
        data, labels = as_arrays(x, owner=owner)  # refuses empty data, NaN and inf
        images = self._fit_images(data, owner)  # (N, C, H, W)
        labels = self._fit_labels(labels, images.shape[0], owner)
        info = DatasetInfo(name="x", kind="image", shape=tuple(images.shape[1:]))
        loader = make_loader(ArrayDataset(images.contiguous(), labels, info), batch_size,
                             shuffle=True, seed=seed)
        optimizers = density_optimizers(self, lr)
        self.history_ = fit(
            density_step(self, optimizers), loader, epochs=epochs,
            state={"model": self, **optimizers}, seed=seed, progress=progress,
            desc=type(self).__name__,
            max_seconds=None if max_minutes is None else 60.0 * max_minutes,
        )
        return self
