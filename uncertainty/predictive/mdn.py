r"""Mixture density networks (Bishop, "Mixture Density Networks", 1994), used for uncertainty
as in Choi et al., "Uncertainty-Aware Learning from Demonstration Using Mixture Density
Networks with Sampling-Free Variance Modeling", ICRA 2018.

The network maps ``x`` to a mixture of ``K`` diagonal Gaussians over ``D`` outputs,

.. math::

    p(y \mid x) = \sum_{k=1}^{K} \pi_k(x)\,\prod_{d=1}^{D}
    \mathcal{N}\big(y_d;\ \mu_{kd}(x),\ \sigma^2_{kd}(x)\big),
    \qquad \pi = \operatorname{softmax}(a),\ \ \sigma^2 = e^{s},

trained by the negative log-likelihood, computed stably with log-sum-exp over components:
:math:`-\operatorname{logsumexp}_k\big[\log\pi_k + \sum_d \log\mathcal{N}(y_d;\mu_{kd},
\sigma^2_{kd})\big]`. The predictive variance splits (law of total variance) into the expected
component variance :math:`\sum_k \pi_k\sigma^2_k` (aleatoric) and the variance of the component
means :math:`\sum_k \pi_k(\mu_k - \bar\mu)^2` (epistemic, Choi et al. 2018).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dunno.inputs import output_like
from dunno.seeding import make_generator
from dunno.validation import check_hidden, check_int, check_seed
from uncertainty.predictive._checks import as_features, as_regression_data
from uncertainty.predictive._mlp import stack_training_sets, train_stacked
from uncertainty.predictive.base import Regressor, check_training_params
from uncertainty.predictive.prediction import RegressionPrediction

__all__ = ["MDNRegressor", "mdn_log_prob", "mdn_nll", "split_mdn_output"]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_VAR_BOUNDS = (-20.0, 20.0)


def split_mdn_output(out: torch.Tensor, num_components: int, num_outputs: int):
    """Split raw network outputs ``(..., K + 2 K D)`` into mixture logits ``(..., K)``, means
    and log-variances ``(..., K, D)`` (log-variances clamped to [-20, 20])."""
    k, d = num_components, num_outputs
    if out.shape[-1] != k * (1 + 2 * d):
        raise ValueError(
            f"An MDN with K={k} components over D={d} outputs needs K (1 + 2 D) = "
            f"{k * (1 + 2 * d)} output columns. Got {out.shape[-1]}."
        )
    lead = out.shape[:-1]
    logits = out[..., :k]
    means = out[..., k:k + k * d].reshape(*lead, k, d)
    log_vars = out[..., k + k * d:].reshape(*lead, k, d).clamp(*_LOG_VAR_BOUNDS)
    return logits, means, log_vars


def mdn_log_prob(logits: torch.Tensor, means: torch.Tensor, log_vars: torch.Tensor,
                 y: torch.Tensor) -> torch.Tensor:
    r"""Log-density of ``y (..., D)`` under the mixture with ``logits (..., K)`` and
    ``means``, ``log_vars (..., K, D)``, in nats, ``(...)``; log-sum-exp over components."""
    log_pi = F.log_softmax(logits, dim=-1)  # (..., K)
    z = (y.unsqueeze(-2) - means) ** 2 * torch.exp(-log_vars)  # (..., K, D)
    log_comp = -0.5 * (_LOG_2PI + log_vars + z).sum(dim=-1)  # (..., K)
    return torch.logsumexp(log_pi + log_comp, dim=-1)


def mdn_nll(logits: torch.Tensor, means: torch.Tensor, log_vars: torch.Tensor,
            y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of :func:`mdn_log_prob` over the leading axes."""
    return -mdn_log_prob(logits, means, log_vars, y).mean()


class MDNRegressor(Regressor):
    """A ReLU MLP that outputs a ``K``-component diagonal Gaussian mixture.

    Parameters
    ----------
    hidden : int or sequence of int
        Hidden layer widths.
    num_components : int
        ``K >= 1``.
    epochs, batch_size, lr, weight_decay : training budget (Adam; L2 on the weights).
    seed : int

    Attributes
    ----------
    model_ : nn.Sequential
        The trained network (eval mode), outputs ``K (1 + 2 D)`` columns.
    history_ : History
    """

    name = "mdn"
    _state_names = ("model_",)

    def __init__(self, hidden=50, num_components: int = 5, *, epochs: int = 40,
                 batch_size: int = 100, lr: float = 1e-3, weight_decay: float = 0.0,
                 seed: int = 0) -> None:
        self.hidden = hidden
        self.num_components = num_components
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def _validate_params(self) -> None:
        check_hidden(self.hidden, self)
        check_int(self.num_components, "num_components", self, low=1)
        check_training_params(self)
        check_seed(self.seed, self)

    def _fit_jointly(self, estimators, data, on_epoch_end=None) -> None:
        hidden, k = check_hidden(self.hidden, self), self.num_components
        xs, ys = stack_training_sets(
            type(self).__name__, [as_regression_data(x, y) for x, y in data])
        s_count, d = xs.shape[0], ys.shape[2]

        def loss_fn(out, y):  # out (M, B, K (1 + 2 D)), y (M, B, D)
            return -mdn_log_prob(*split_mdn_output(out, k, d), y).mean(dim=1)  # (M,)

        decay = torch.full((s_count,), self.weight_decay) if self.weight_decay > 0 else None
        net, history = train_stacked(
            xs, ys, list(range(s_count)), hidden=hidden, out_features=k * (1 + 2 * d),
            loss_fn=loss_fn, decay=decay, epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, seed=self.seed, on_epoch_end=on_epoch_end,
        )
        for s, est in enumerate(estimators):
            est.model_ = net.member(s)
            est.history_ = history
            est.n_features_in_, est.n_outputs_ = xs.shape[2], d

    def mixture(self, x) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``weights (N, K)``, ``means (N, K, D)`` and ``variances (N, K, D)`` of ``x``
        (numpy for numpy ``x``)."""
        return output_like(self._mixture(x, "MDNRegressor.mixture"), x)

    @torch.no_grad()
    def _mixture(self, x, owner: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.check_fitted()
        x = as_features(x, num_features=self.n_features_in_, owner=owner)
        out = self.model_.eval()(x).double()
        logits, means, log_vars = split_mdn_output(out, self.num_components, self.n_outputs_)
        return torch.softmax(logits, dim=-1), means, log_vars.exp()

    def predict(self, x) -> RegressionPrediction:
        """The mixture, with mean, aleatoric and epistemic variance (module docstring)."""
        return RegressionPrediction.from_components(*self._mixture(x, "MDNRegressor.predict"))

    def mode(self, x) -> torch.Tensor:
        """Mean of the most probable component, ``(N, D)``: Bishop's (1994) approximation of
        the most likely value, which unlike the mixture mean stays on one branch of a
        multi-valued mapping. Numpy for numpy ``x``."""
        weights, means, _ = self._mixture(x, "MDNRegressor.mode")
        index = weights.argmax(dim=1)  # (N,)
        return output_like(means[torch.arange(means.shape[0]), index], x)

    @torch.no_grad()
    def sample(self, x, num_samples: int = 1, *, seed: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples`` draws from the mixture for each row of ``x``, ``(S, N, D)`` (numpy
        for numpy ``x``); ``seed`` / ``generator`` make them reproducible
        (:mod:`dunno.seeding`)."""
        num_samples = check_int(num_samples, "num_samples", self, low=1)
        generator = make_generator(seed, generator, owner="MDNRegressor.sample")
        weights, means, variances = self._mixture(x, "MDNRegressor.sample")
        n = weights.shape[0]
        comp = torch.multinomial(weights, num_samples, replacement=True,
                                 generator=generator).T  # (S, N)
        rows = torch.arange(n).expand(num_samples, n)
        mu, var = means[rows, comp], variances[rows, comp]  # (S, N, D)
        noise = torch.randn(mu.shape, dtype=mu.dtype, generator=generator)
        return output_like(mu + var.sqrt() * noise, x)
