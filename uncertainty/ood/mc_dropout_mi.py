r"""MC-Dropout mutual information (Gal & Ghahramani, "Dropout as a Bayesian Approximation",
ICML 2016; as an OOD score: Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image
Data", ICML 2017 -- BALD).

With :math:`T` stochastic passes :math:`p_t = \mathrm{softmax}(f_{\theta_t}(x))`,
:math:`\theta_t \sim q(\theta)` (dropout switched on, everything else in eval mode), the
epistemic part of the predictive uncertainty is the mutual information between the label and
the weights,

.. math::

    I[y; \theta \mid x] = \mathbb{H}\Big[\frac1T \sum_t p_t\Big] - \frac1T \sum_t
    \mathbb{H}[p_t] \in [0, \log C],

high where the passes disagree: away from the training data. Higher = more OOD. The sampling
is :class:`uncertainty.predictive.MCDropout` (``mode="fast"`` runs the trunk once per batch
for models whose dropout sits in the head); scores repeat exactly for the same ``seed``.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_int, check_num_samples, check_seed
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs, model_device

__all__ = ["MCDropoutMI", "mutual_information_score"]


def mutual_information_score(probs: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathbb{H}[\bar p] - \overline{\mathbb{H}[p_t]}` of sampled class probabilities.

    Args:
        probs: ``(T, N, C)`` class probabilities of ``T`` samples (passes or members).

    Returns:
        ``(N,)`` float64 scores in nats, clamped to ``[0, H[mean]]`` against rounding;
        higher = more OOD.
    """
    p = probs.to(torch.float64)  # (T, N, C)

    def entropy(q):
        return -(q * torch.log(q.clamp_min(1e-300))).sum(-1)

    total = entropy(p.mean(0))  # (N,)
    return (total - entropy(p).mean(0)).clamp(min=0.0).minimum(total)


class MCDropoutMI(OODDetector):
    """MC-Dropout mutual-information detector: :func:`mutual_information_score` of ``T``
    stochastic passes. ``fit`` is a no-op.

    Parameters: ``model`` (a classifier with dropout layers), ``num_samples`` (``T``),
    ``mode`` (``"full"`` or ``"fast"``, see :class:`uncertainty.predictive.MCDropout`),
    ``seed`` (the passes' random draws), ``batch_size`` (inputs per sampling chunk).
    """

    name = "mc-dropout"
    reference = "Gal & Ghahramani 2016, ICML; Gal et al. 2017, ICML"
    needs = frozenset({"input"})

    def __init__(self, model: nn.Module | None = None, *, num_samples: int = 20,
                 mode: str = "full", seed: int = 0, batch_size: int = 256,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.num_samples = num_samples
        self.mode = mode
        self.seed = seed
        self.batch_size = batch_size

    @classmethod
    def applies_to(cls, model: nn.Module | None) -> bool:
        """Models with a dropout layer of rate ``p > 0``."""
        from uncertainty.predictive.mc_dropout import dropout_layers

        return isinstance(model, nn.Module) and any(
            getattr(layer, "p", 0) > 0 for _, layer in dropout_layers(model))

    @classmethod
    def _cannot_score_reason(cls) -> str:
        return ("has no dropout layer with rate p > 0, so every pass gives the same output "
                "and every score would be 0. Use a model trained with dropout "
                "(dunno.nets backbones take dropout=p), or another detector.")

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        if self.model is not None and not self.applies_to(self.model):
            self.check_model()
        check_num_samples(self.num_samples, owner)  # at most MAX_NUM_SAMPLES
        check_seed(self.seed, owner)
        check_int(self.batch_size, "batch_size", owner, low=1)
        if self.mode not in ("full", "fast"):
            raise ValueError(f"The 'mode' parameter of {owner} must be 'full' or 'fast'. "
                             f"Got {self.mode!r} instead.")

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        from uncertainty.predictive import MCDropout

        self._require_model(self.needs, "score_outputs")
        sampler = MCDropout(self.model, self.num_samples, mode=self.mode)
        device = model_device(self.model)
        x = outputs.inputs
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            scores = [
                mutual_information_score(torch.softmax(
                    sampler.sample(x[i:i + self.batch_size].to(device)).double(), dim=-1))
                for i in range(0, len(x), self.batch_size)
            ]
        return torch.cat(scores)
