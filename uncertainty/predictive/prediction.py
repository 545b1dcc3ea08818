r"""Prediction objects returned by every predictive-uncertainty method.

:class:`ClassificationPrediction` holds the predictive distribution ``probs (N, C)`` and,
when the method draws them (MC-Dropout passes, ensemble members, noise samples), the
per-sample distributions ``samples (T, N, C)``. From them it derives the usual decomposition
of total uncertainty (Houlsby et al. 2011, "Bayesian Active Learning for Classification and
Preference Learning"; Gal 2016, thesis §3.3; Depeweg et al. 2018):

.. math::

    \underbrace{\mathbb{H}\big[\bar p\big]}_{\text{entropy (total)}}
    = \underbrace{\tfrac1T \textstyle\sum_t \mathbb{H}[p_t]}_{\text{expected entropy
    (aleatoric)}} + \underbrace{\mathbb{I}[y; \theta]}_{\text{mutual information
    (epistemic, BALD)}},
    \qquad \bar p = \tfrac1T \textstyle\sum_t p_t .

:class:`RegressionPrediction` holds a predictive mean and the two variance components
(law of total variance):

.. math::

    \operatorname{Var}[y] = \underbrace{\mathbb{E}_\theta[\sigma^2_\theta(x)]}_{\text{aleatoric}}
    + \underbrace{\operatorname{Var}_\theta[\mu_\theta(x)]}_{\text{epistemic}},

and, when the method is a mixture (MC samples, ensemble members, MDN components), the mixture
itself so that :meth:`RegressionPrediction.log_prob` is the *exact* mixture log-density rather
than that of the moment-matched Gaussian.

All derived quantities are computed in float64 and returned as float64 tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from evaluation.metrics import crps_mixture
from uncertainty.predictive._checks import check_finite_rows

__all__ = ["ClassificationPrediction", "RegressionPrediction"]

_LOG_2PI = math.log(2.0 * math.pi)
# Rows of a probability matrix must sum to 1 within float32 rounding.
_PROB_ATOL = 1e-4


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last axis, with 0 log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(dim=-1)


def _float_tensor(value, name: str, owner: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"The '{name}' argument of {owner} must be a torch.Tensor. "
            f"Got {type(value).__name__} instead."
        )
    if not value.is_floating_point():
        raise ValueError(
            f"The '{name}' argument of {owner} must be a floating-point tensor. "
            f"Got dtype {value.dtype}."
        )
    return value.detach()


@dataclass(frozen=True)
class ClassificationPrediction:
    """A predictive distribution over ``C`` classes, optionally with its samples.

    Attributes
    ----------
    probs : Tensor ``(N, C)``
        Predictive probabilities :math:`\\bar p` (the mean of ``samples`` when they are given).
    samples : Tensor ``(T, N, C)`` or None
        Per-sample probabilities :math:`p_t` (MC-Dropout passes, ensemble members, ...).
        Without samples the prediction is a single distribution: expected entropy equals the
        entropy and the mutual information is zero.
    """

    probs: torch.Tensor
    samples: torch.Tensor | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        probs = _float_tensor(self.probs, "probs", owner)
        if probs.ndim != 2 or probs.shape[1] < 1:
            raise ValueError(
                f"The 'probs' argument of {owner} must have shape (N, C). "
                f"Got {tuple(probs.shape)} instead."
            )
        rows = probs.double().sum(dim=1)
        if (
            not bool(torch.isfinite(probs).all())
            or bool((probs < 0).any())
            or bool(((rows - 1).abs() > _PROB_ATOL).any())
        ):
            raise ValueError(
                f"The 'probs' argument of {owner} must hold probabilities: finite, >= 0, rows "
                f"summing to 1 (tolerance {_PROB_ATOL:g})."
            )
        object.__setattr__(self, "probs", probs)
        if self.samples is not None:
            samples = _float_tensor(self.samples, "samples", owner)
            if samples.ndim != 3 or tuple(samples.shape[1:]) != tuple(probs.shape):
                raise ValueError(
                    f"The 'samples' argument of {owner} must have shape (T, N, C) = "
                    f"(T, {probs.shape[0]}, {probs.shape[1]}). Got {tuple(samples.shape)}."
                )
            if samples.shape[0] < 1:
                raise ValueError(f"The 'samples' argument of {owner} holds no samples (T = 0).")
            gap = (samples.double().mean(dim=0) - probs.double()).abs().max()
            if float(gap) > _PROB_ATOL:
                raise ValueError(
                    f"The 'probs' argument of {owner} must be the mean of 'samples' over the "
                    f"first axis (largest difference {float(gap):.3g}); use "
                    f"{owner}.from_samples(samples)."
                )
            object.__setattr__(self, "samples", samples)

    @classmethod
    def from_samples(cls, samples: torch.Tensor) -> ClassificationPrediction:
        """The prediction whose ``probs`` is the mean of ``samples (T, N, C)``."""
        samples = _float_tensor(samples, "samples", cls.__name__)
        if samples.ndim != 3:
            raise ValueError(
                f"The 'samples' argument of {cls.__name__} must have shape (T, N, C). "
                f"Got {tuple(samples.shape)} instead."
            )
        return cls(samples.mean(dim=0), samples)

    # ------------------------------------------------------------------ derived quantities
    @property
    def num_samples(self) -> int:
        """``T`` (1 when there are no samples)."""
        return 1 if self.samples is None else int(self.samples.shape[0])

    @property
    def predictions(self) -> torch.Tensor:
        """Predicted labels ``argmax_c probs`` ``(N,)``."""
        return self.probs.argmax(dim=1)

    @property
    def confidence(self) -> torch.Tensor:
        """Top-label confidence ``max_c probs`` ``(N,)``."""
        return self.probs.double().max(dim=1).values

    @property
    def entropy(self) -> torch.Tensor:
        r"""Total uncertainty :math:`\mathbb{H}[\bar p]` in nats ``(N,)``."""
        return _entropy(self.probs.double())

    @property
    def expected_entropy(self) -> torch.Tensor:
        r"""Aleatoric uncertainty :math:`\frac1T\sum_t \mathbb{H}[p_t]` in nats ``(N,)``."""
        if self.samples is None:
            return self.entropy
        return _entropy(self.samples.double()).mean(dim=0)

    @property
    def mutual_information(self) -> torch.Tensor:
        r"""Epistemic uncertainty (BALD) :math:`\mathbb{H}[\bar p] - \frac1T\sum_t
        \mathbb{H}[p_t]` in nats ``(N,)``.

        Non-negative by the concavity of entropy and at most :math:`\mathbb{H}[\bar p] \le
        \log C`; float rounding below 0 is clamped to 0.
        """
        if self.samples is None:
            return torch.zeros(self.probs.shape[0], dtype=torch.float64)
        total = self.entropy
        return (total - self.expected_entropy).clamp(min=0.0).minimum(total)

    @property
    def variation_ratio(self) -> torch.Tensor:
        r"""Variation ratio :math:`1 - f_m / T` ``(N,)``, where :math:`f_m` is the number of
        samples whose top label is the modal one (Freeman 1965; Gal 2016). Without samples it
        is :math:`1 - \max_c \bar p_c`, the probability that a draw from the predictive
        distribution differs from its mode."""
        if self.samples is None:
            return 1.0 - self.confidence
        votes = self.samples.argmax(dim=2)  # (T, N)
        counts = torch.nn.functional.one_hot(votes, self.probs.shape[1]).sum(dim=0)  # (N, C)
        return 1.0 - counts.max(dim=1).values.double() / votes.shape[0]

    def to_numpy(self) -> dict[str, np.ndarray | None]:
        """The prediction as numpy arrays (for numpy users): ``probs``, ``samples`` (or None),
        ``predictions``, ``confidence``, ``entropy``, ``expected_entropy``,
        ``mutual_information``."""
        names = ("probs", "samples", "predictions", "confidence", "entropy",
                 "expected_entropy", "mutual_information")
        return {n: _numpy(getattr(self, n)) for n in names}


def _numpy(value):
    return None if value is None else value.detach().cpu().numpy()


@dataclass(frozen=True)
class RegressionPrediction:
    r"""A predictive distribution over ``D`` real outputs.

    Attributes
    ----------
    mean : Tensor ``(N, D)``
        Predictive mean.
    aleatoric_var : Tensor ``(N, D)``
        Expected observation-noise variance :math:`\mathbb{E}_\theta[\sigma^2_\theta(x)]`.
    epistemic_var : Tensor ``(N, D)``
        Variance of the mean over the model's samples/members/components
        :math:`\operatorname{Var}_\theta[\mu_\theta(x)]`.
    component_weights : Tensor ``(N, K)`` or None
        Mixture weights (rows sum to 1) when the prediction is a mixture of ``K`` diagonal
        Gaussians; then ``component_means`` and ``component_vars`` are ``(N, K, D)``.
    """

    mean: torch.Tensor
    aleatoric_var: torch.Tensor
    epistemic_var: torch.Tensor
    component_weights: torch.Tensor | None = None
    component_means: torch.Tensor | None = None
    component_vars: torch.Tensor | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        mean = _float_tensor(self.mean, "mean", owner)
        if mean.ndim != 2:
            raise ValueError(
                f"The 'mean' argument of {owner} must have shape (N, D). "
                f"Got {tuple(mean.shape)} instead."
            )
        for name in ("aleatoric_var", "epistemic_var"):
            var = _float_tensor(getattr(self, name), name, owner)
            if var.shape != mean.shape:
                raise ValueError(
                    f"The '{name}' argument of {owner} must have the shape of 'mean' "
                    f"{tuple(mean.shape)}. Got {tuple(var.shape)} instead."
                )
            if not bool((var >= 0).all()):  # also rejects NaN
                raise ValueError(f"The '{name}' argument of {owner} must be >= 0 everywhere.")
            object.__setattr__(self, name, var)
        object.__setattr__(self, "mean", mean)
        parts = (self.component_weights, self.component_means, self.component_vars)
        if all(p is None for p in parts):
            return
        if any(p is None for p in parts):
            raise ValueError(
                f"{owner} takes 'component_weights', 'component_means' and 'component_vars' "
                "together or not at all."
            )
        w = _float_tensor(self.component_weights, "component_weights", owner)
        mu = _float_tensor(self.component_means, "component_means", owner)
        var = _float_tensor(self.component_vars, "component_vars", owner)
        n, d = mean.shape
        k = w.shape[1] if w.ndim == 2 else -1
        if w.ndim != 2 or w.shape[0] != n or mu.shape != (n, k, d) or var.shape != mu.shape:
            raise ValueError(
                f"{owner} needs component_weights (N, K) and component_means / component_vars "
                f"(N, K, D) with N={n}, D={d}. Got {tuple(w.shape)}, {tuple(mu.shape)}, "
                f"{tuple(var.shape)}."
            )
        if bool((w < 0).any()) or bool(((w.double().sum(dim=1) - 1).abs() > _PROB_ATOL).any()):
            raise ValueError(
                f"The 'component_weights' argument of {owner} must be >= 0 with rows summing "
                "to 1."
            )
        if not bool((var > 0).all()):
            raise ValueError(f"The 'component_vars' argument of {owner} must be > 0 everywhere.")
        object.__setattr__(self, "component_weights", w)
        object.__setattr__(self, "component_means", mu)
        object.__setattr__(self, "component_vars", var)

    @classmethod
    def from_components(cls, weights: torch.Tensor, means: torch.Tensor,
                        variances: torch.Tensor) -> RegressionPrediction:
        r"""The prediction of a mixture of diagonal Gaussians.

        ``weights (N, K)`` or ``(K,)``, ``means`` and ``variances (N, K, D)``. The moments are

        .. math::

            \mu = \textstyle\sum_k \pi_k \mu_k, \quad
            \text{aleatoric} = \textstyle\sum_k \pi_k \sigma^2_k, \quad
            \text{epistemic} = \textstyle\sum_k \pi_k (\mu_k - \mu)^2 .
        """
        if means.ndim != 3:
            raise ValueError(
                f"The 'means' argument of {cls.__name__}.from_components must have shape "
                f"(N, K, D). Got {tuple(means.shape)} instead."
            )
        if weights.ndim == 1:
            weights = weights.expand(means.shape[0], -1)
        w = weights.unsqueeze(-1)  # (N, K, 1)
        mean = (w * means).sum(dim=1)  # (N, D)
        aleatoric = (w * variances).sum(dim=1)
        epistemic = (w * (means - mean.unsqueeze(1)) ** 2).sum(dim=1)
        return cls(mean, aleatoric, epistemic.clamp(min=0.0), weights, means, variances)

    @classmethod
    def from_samples(cls, means: torch.Tensor, variances: torch.Tensor | float
                     ) -> RegressionPrediction:
        """The equal-weight mixture of ``T`` Gaussian samples: ``means (T, N, D)`` (e.g. MC
        passes or ensemble members) with ``variances`` of the same shape or one number (a
        homoscedastic observation noise variance > 0)."""
        if means.ndim != 3:
            raise ValueError(
                f"The 'means' argument of {cls.__name__}.from_samples must have shape "
                f"(T, N, D). Got {tuple(means.shape)} instead."
            )
        if not isinstance(variances, torch.Tensor):
            variances = torch.full_like(means, float(variances))
        t = means.shape[0]
        weights = torch.full((means.shape[1], t), 1.0 / t, dtype=means.dtype)
        return cls.from_components(weights, means.transpose(0, 1), variances.transpose(0, 1))

    # ------------------------------------------------------------------ derived quantities
    @property
    def is_mixture(self) -> bool:
        """Whether the mixture components are kept (then :meth:`log_prob` is exact)."""
        return self.component_weights is not None

    @property
    def variance(self) -> torch.Tensor:
        """Total predictive variance, aleatoric + epistemic ``(N, D)``."""
        return self.aleatoric_var + self.epistemic_var

    @property
    def std(self) -> torch.Tensor:
        """Predictive standard deviation ``(N, D)``."""
        return self.variance.sqrt()

    def _targets(self, y, method: str) -> torch.Tensor:
        """``y`` as finite float64 ``(N, D)`` of the prediction's shape (``(N,)`` read as
        ``(N, 1)``); a ValueError naming ``method`` otherwise."""
        if not isinstance(y, torch.Tensor):
            y = np.asarray(y)
            if y.dtype.kind not in "biuf":
                raise ValueError(
                    f"The 'y' argument of {method} must hold real numbers. Got dtype "
                    f"{y.dtype} instead."
                )
        y = torch.as_tensor(y).detach()
        if y.is_complex():
            raise ValueError(
                f"The 'y' argument of {method} must hold real numbers. Got dtype {y.dtype}."
            )
        if y.ndim == 1:
            y = y[:, None]
        if tuple(y.shape) != tuple(self.mean.shape):
            raise ValueError(
                f"The 'y' argument of {method} must have the shape of the prediction "
                f"{tuple(self.mean.shape)}. Got {tuple(y.shape)} instead."
            )
        y = y.double().to(self.mean.device)
        check_finite_rows(y, f"The 'y' argument of {method}")
        return y

    def log_prob(self, y) -> torch.Tensor:
        r"""Predictive log-density of targets ``y (N, D)`` (or ``(N,)`` when ``D = 1``) in
        nats, summed over the ``D`` outputs; float64 ``(N,)``.

        With mixture components this is the exact mixture density, computed with
        log-sum-exp,

        .. math::

            \log p(y) = \log \textstyle\sum_k \pi_k \prod_d \mathcal{N}(y_d;\,
            \mu_{kd}, \sigma^2_{kd}),

        which for MC-Dropout is Gal's test log-likelihood
        :math:`\operatorname{logsumexp}_t \log\mathcal{N}(y; \hat y_t, \tau^{-1}) - \log T`.
        Without components it is the Gaussian :math:`\mathcal{N}(y; \mu, \sigma^2)` with the
        total variance (the moment-matched approximation).
        """
        y = self._targets(y, "log_prob")
        if self.is_mixture:
            w = self.component_weights.double()
            mu, var = self.component_means.double(), self.component_vars.double()
            per_dim = -0.5 * (_LOG_2PI + var.log() + (y.unsqueeze(1) - mu) ** 2 / var)
            log_terms = torch.log(w) + per_dim.sum(dim=2)  # (N, K); log 0 = -inf drops out
            return torch.logsumexp(log_terms, dim=1)
        var = self.variance.double()
        if not bool((var > 0).all()):
            raise ValueError(
                "log_prob needs a predictive variance > 0 everywhere; this prediction has "
                "zero variance somewhere (no observation noise and no spread between samples)."
            )
        mu = self.mean.double()
        return (-0.5 * (_LOG_2PI + var.log() + (y - mu) ** 2 / var)).sum(dim=1)

    def crps(self, y) -> torch.Tensor:
        r"""Continuous ranked probability score of targets ``y (N, D)`` (or ``(N,)`` when
        ``D = 1``), per entry: float64 ``(N, D)``, in the units of ``y``; lower is better.

        With mixture components (MC samples, ensemble members, MDN components, posterior
        draws) it is the closed form of the mixture of each output's component marginals,
        :func:`evaluation.metrics.crps_mixture` (cost :math:`O(N K^2 D)`); without, that of
        the Gaussian :math:`\mathcal{N}(\mu, \sigma^2)` with the total variance.
        """
        y = self._targets(y, "crps")
        if self.is_mixture:
            parts = (self.component_weights, self.component_means, self.component_vars)
        else:
            var = self.variance
            if not bool((var > 0).all()):
                raise ValueError("crps needs a predictive variance > 0 everywhere; this "
                                 "prediction has zero variance somewhere.")
            parts = (torch.ones(y.shape[0], 1), self.mean[:, None], var[:, None])
        w, mu, var = (p.detach().double().cpu().numpy() for p in parts)
        out = crps_mixture(w, mu, var, y.double().cpu().numpy(), reduction="none")
        return torch.from_numpy(out)

    def to_numpy(self) -> dict[str, np.ndarray]:
        """The prediction as numpy arrays (for numpy users): ``mean``, ``aleatoric_var``,
        ``epistemic_var``, ``variance``, ``std``."""
        names = ("mean", "aleatoric_var", "epistemic_var", "variance", "std")
        return {n: _numpy(getattr(self, n)) for n in names}

    def scaled(self, loc, scale) -> RegressionPrediction:
        """The prediction for ``loc + scale * y`` (e.g. back to original units from
        standardised targets: ``loc = y_mean``, ``scale = y_std``); ``loc`` and ``scale > 0``
        are numbers or ``(D,)`` tensors. Log-densities shift by ``-sum(log scale)``."""
        loc = torch.as_tensor(loc, dtype=self.mean.dtype).reshape(-1)
        scale = torch.as_tensor(scale, dtype=self.mean.dtype).reshape(-1)
        if not bool((scale > 0).all()) or not bool(torch.isfinite(scale).all()):
            raise ValueError("The 'scale' argument of scaled must be finite and > 0.")
        if not bool(torch.isfinite(loc).all()):
            raise ValueError("The 'loc' argument of scaled must be finite (no NaN or inf).")
        s2 = scale**2
        if not self.is_mixture:
            return RegressionPrediction(
                self.mean * scale + loc, self.aleatoric_var * s2, self.epistemic_var * s2
            )
        return RegressionPrediction(
            self.mean * scale + loc, self.aleatoric_var * s2, self.epistemic_var * s2,
            self.component_weights, self.component_means * scale + loc, self.component_vars * s2,
        )
