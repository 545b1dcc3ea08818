r"""Monte Carlo dropout (Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing
Model Uncertainty in Deep Learning", ICML 2016).

A network trained with dropout is an approximate variational posterior
:math:`q(\theta)` over its weights; keeping dropout on at prediction time draws
:math:`\theta_t \sim q`, and the predictive distribution is estimated from ``T`` passes,

.. math::

    p(y \mid x) \approx \frac1T \sum_{t=1}^{T} p(y \mid x, \theta_t).

:class:`MCDropout` wraps any trained ``nn.Module``: during sampling only its dropout layers
are stochastic (everything else, batch norm included, stays in eval mode, so running
statistics never change). Classification returns a
:class:`~uncertainty.predictive.prediction.ClassificationPrediction` (entropy, expected
entropy, mutual information = BALD, variation ratio); regression a
:class:`~uncertainty.predictive.prediction.RegressionPrediction`.

``mode="fast"`` runs the deterministic trunk (everything before the first dropout layer)
once and samples only the layers after it. It draws exactly the same random numbers in the
same order as ``mode="full"``, so with the same seed both return identical samples; it
needs a model whose split point is known: an :class:`torch.nn.Sequential` (split at the first
top-level child that is or holds a dropout layer) or a :mod:`dunno.nets` backbone
(``features`` / ``dropout`` / ``head``) whose only dropout layers are ``model.dropout`` and
those inside ``head``.

:class:`~uncertainty.predictive.mc_dropout_regression.MCDropoutRegressor` (the UCI
regressor of Gal's ``DropoutUncertaintyExps``) is in :mod:`.mc_dropout_regression`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from dunno.estimator import Estimator
from dunno.inputs import as_arrays, model_dtype, output_like
from dunno.seeding import sampling_rng
from dunno.validation import (
    check_choice,
    check_float,
    check_int,
    check_num_samples,
)
from uncertainty.predictive.prediction import ClassificationPrediction, RegressionPrediction

__all__ = [
    "DROPOUT_TYPES",
    "MCDropout",
    "dropout_layers",
    "mc_dropout_mode",
]

#: Module types that MC-Dropout switches to training mode while sampling.
DROPOUT_TYPES = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)

_LOG_2PI = math.log(2.0 * math.pi)


def dropout_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every dropout layer in ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, DROPOUT_TYPES)]


@contextlib.contextmanager
def mc_dropout_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode except its dropout layers (train mode); restore every
    module's previous mode on exit. Batch norm therefore uses, and never updates, its
    running statistics."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        for _, layer in dropout_layers(model):
            layer.train()
        yield model
    finally:
        for m, training in modes.items():
            m.train(training)


def _device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


class MCDropout(Estimator):
    """Sample a trained model with its dropout layers switched on.

    Nothing is learned: the wrapped model is used as it is (there is no ``fit``); the model
    and parameters are checked on the first call.

    Parameters
    ----------
    model : nn.Module
        A trained model with at least one dropout layer of rate ``p > 0`` (one of
        :data:`DROPOUT_TYPES`; the functional ``F.dropout`` cannot be found and is not
        sampled). For classification it
        maps ``x`` to logits ``(N, C)``; for regression to outputs ``(N, D)``.
    num_samples : int
        ``T >= 1`` stochastic passes.
    mode : {"full", "fast"}
        ``"full"`` runs the whole model ``T`` times; ``"fast"`` runs the trunk before the
        first dropout layer once (see the module docstring for the models it supports).
    task : {"classification", "regression"}
        What :meth:`predict` returns.
    noise_variance : float, optional
        Regression only: homoscedastic observation-noise variance :math:`\\tau^{-1}` (> 0).
        With it the prediction is the mixture of ``T`` Gaussians
        :math:`\\mathcal{N}(\\hat y_t, \\tau^{-1})`; without, the aleatoric variance is 0.
    batch_size : int, optional
        Inputs are processed in chunks of this many rows (all at once by default).
    """

    _wrapped_args = ("model",)

    def __init__(self, model: nn.Module, num_samples: int = 100, *, mode: str = "full",
                 task: str = "classification", noise_variance: float | None = None,
                 batch_size: int | None = None) -> None:
        self.model = model
        self.num_samples = num_samples
        self.mode = mode
        self.task = task
        self.noise_variance = noise_variance
        self.batch_size = batch_size

    # ------------------------------------------------------------------ checks
    def _validate_params(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ValueError(
                f"The 'model' parameter of MCDropout must be a torch.nn.Module. "
                f"Got {type(self.model).__name__} instead."
            )
        check_num_samples(self.num_samples, self)  # at most MAX_NUM_SAMPLES
        check_choice(self.mode, "mode", self, ("full", "fast"))
        check_choice(self.task, "task", self, ("classification", "regression"))
        if self.noise_variance is not None:
            if self.task != "regression":
                raise ValueError(
                    "The 'noise_variance' parameter of MCDropout is for task='regression' only."
                )
            check_float(self.noise_variance, "noise_variance", self, low=0.0, low_open=True)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", self, low=1)
        if not dropout_layers(self.model):
            names = ", ".join(t.__name__ for t in DROPOUT_TYPES)
            raise ValueError(
                f"MCDropout needs a model with dropout layers, but the model "
                f"{type(self.model).__name__} has none ({names}). Add a dropout layer "
                f"(dunno.nets backbones take dropout=p) and train with it."
            )
        if not any(getattr(layer, "p", 0) > 0 for _, layer in dropout_layers(self.model)):
            rates = ", ".join(f"{n or 'the model'!r}: p={getattr(layer, 'p', 0)}"
                              for n, layer in dropout_layers(self.model))
            raise ValueError(
                f"MCDropout needs a dropout layer of rate p > 0, but every dropout layer of "
                f"{type(self.model).__name__} has p = 0 ({rates}): all passes would be "
                "identical and the epistemic uncertainty 0. Train the model with dropout "
                "(dunno.nets backbones take dropout=p)."
            )

    def _fast_split(self):
        """``(trunk, tail)``: ``trunk(x)`` is deterministic, ``tail(h)`` holds every dropout."""
        model = self.model
        name = type(model).__name__
        if isinstance(model, nn.Sequential):
            children = list(model)
            first = next(i for i, child in enumerate(children)
                         if isinstance(child, DROPOUT_TYPES) or dropout_layers(child))
            return model[:first], model[first:]
        features, head = getattr(model, "features", None), getattr(model, "head", None)
        drop = getattr(model, "dropout", None)
        if callable(features) and isinstance(head, nn.Module) and isinstance(drop, DROPOUT_TYPES):
            in_head = {id(m) for _, m in dropout_layers(head)}
            others = [n for n, m in dropout_layers(model) if m is not drop and id(m) not in in_head]
            if others:
                raise ValueError(
                    f"MCDropout mode='fast' samples only the layers after the trunk, but "
                    f"{name} has dropout layers inside its trunk ({', '.join(others)}); "
                    "use mode='full'."
                )

            def tail(h):
                return head(drop(h))

            return features, tail
        raise ValueError(
            f"MCDropout mode='fast' needs an nn.Sequential or a model with 'features', "
            f"'dropout' and 'head' (a dunno.nets backbone); {name} is neither. Use mode='full'."
        )

    # ------------------------------------------------------------------ sampling
    def sample(self, x, *, seed: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw model outputs of ``T`` stochastic passes, ``(T, N, ...)``.

        ``x`` is any kind read by :mod:`dunno.inputs` (numpy in, numpy out; NaN / inf
        refused). ``seed`` or ``generator`` makes the dropout masks reproducible
        (:func:`dunno.seeding.sampling_rng`; default: torch's global generator).
        """
        self._validate_params()
        xs, _ = as_arrays(x, owner="MCDropout.sample", dtype=model_dtype(self.model))
        return output_like(self._sample(xs, seed, generator, "MCDropout.sample"), x)

    @torch.no_grad()
    def _sample(self, x: torch.Tensor, seed, generator, owner: str) -> torch.Tensor:
        with sampling_rng(seed, generator, owner=owner, devices=[x.device, _device(self.model)]):
            return self._sample_all(x)

    def _sample_all(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_device(self.model))
        chunk = self.batch_size or x.shape[0]
        parts = [self._sample_chunk(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _sample_chunk(self, x: torch.Tensor) -> torch.Tensor:
        t = self.num_samples
        if self.mode == "full":
            with mc_dropout_mode(self.model) as model:
                return torch.stack([model(x) for _ in range(t)])
        trunk, tail = self._fast_split()
        modes = {m: m.training for m in self.model.modules()}
        try:
            self.model.eval()
            h = trunk(x)  # deterministic: no dropout before the split
            for _, layer in dropout_layers(self.model):
                layer.train()
            return torch.stack([tail(h) for _ in range(t)])
        finally:
            for m, training in modes.items():
                m.train(training)

    def predict(self, x, *, seed: int | None = None, generator: torch.Generator | None = None
                ) -> ClassificationPrediction | RegressionPrediction:
        """The MC predictive distribution of ``x`` (any kind read by :mod:`dunno.inputs`;
        the prediction holds tensors).

        Classification: the softmax of each pass, ``ClassificationPrediction(probs (N, C),
        samples (T, N, C))``. Regression: the ``T`` outputs ``(T, N, D)`` as an equal-weight
        mixture with ``noise_variance`` (or, without it, mean and epistemic variance only).
        ``seed`` / ``generator``: as :meth:`sample`.
        """
        self._validate_params()
        xs, _ = as_arrays(x, owner="MCDropout.predict", dtype=model_dtype(self.model))
        out = self._sample(xs, seed, generator, "MCDropout.predict")
        if self.task == "classification":
            if out.ndim != 3:
                raise ValueError(
                    f"MCDropout(task='classification') needs a model returning logits (N, C); "
                    f"{type(self.model).__name__} returned shape {tuple(out.shape[1:])}."
                )
            return ClassificationPrediction.from_samples(torch.softmax(out.double(), dim=-1))
        out = out.double()
        if out.ndim == 2:
            out = out.unsqueeze(-1)  # (T, N) -> (T, N, 1)
        if out.ndim != 3:
            raise ValueError(
                f"MCDropout(task='regression') needs a model returning outputs (N, D) or "
                f"(N,); {type(self.model).__name__} returned shape {tuple(out.shape[1:])}."
            )
        if self.noise_variance is not None:
            return RegressionPrediction.from_samples(out, float(self.noise_variance))
        mean = out.mean(dim=0)
        return RegressionPrediction(mean, torch.zeros_like(mean), out.var(dim=0, correction=0))
