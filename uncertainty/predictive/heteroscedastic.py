r"""Heteroscedastic models (Kendall & Gal, "What Uncertainties Do We Need in Bayesian Deep
Learning for Computer Vision?", NeurIPS 2017), combined with MC-Dropout to split aleatoric
from epistemic uncertainty.

**Regression.** The network predicts a mean and a log-variance
:math:`s = \log\sigma^2(x)` per output and is trained with the Gaussian negative
log-likelihood

.. math::

    \ell = \tfrac12 \log 2\pi + \tfrac12 s + \tfrac12 (y - \mu)^2 e^{-s},

averaged over all ``N·D`` entries. This is :class:`torch.nn.GaussianNLLLoss` with
``full=True`` (the constant :math:`\tfrac12\log 2\pi` included) and ``reduction="mean"``,
called with ``var = exp(s)``. With ``beta > 0`` each entry is weighted by
:math:`\operatorname{stopgrad}(\sigma^{2\beta})` (β-NLL, Seitzer et al., "On the Pitfalls of
Heteroscedastic Uncertainty Estimation with Probabilistic Neural Networks", ICLR 2022;
β = 0.5 is their recommendation, β = 1 gives the mean-squared error's gradients for the mean).

With dropout kept on at prediction, ``T`` passes give means :math:`\mu_t` and variances
:math:`\sigma^2_t`; the prediction is their equal-weight mixture, with aleatoric variance
:math:`\frac1T\sum_t\sigma^2_t` and epistemic variance :math:`\operatorname{Var}_t[\mu_t]`
(Kendall & Gal eq. 9).

**Classification.** The network predicts logits :math:`f` and a log-variance :math:`s` per
logit; logits are corrupted by Gaussian noise and the loss is the sampled softmax (Kendall &
Gal eq. 12):

.. math::

    \hat x_t = f + e^{s/2} \odot \epsilon_t,\ \epsilon_t \sim \mathcal{N}(0, I), \qquad
    \ell = -\log \frac1{T'} \sum_{t=1}^{T'} \operatorname{softmax}(\hat x_t)_y .

A prediction averages the softmax over noise samples in each of ``T`` dropout passes; the
expected entropy then holds the aleatoric part and the mutual information across passes the
epistemic part.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dunno.data.base import ArrayDataset, DatasetInfo
from dunno.data.loaders import make_loader
from dunno.estimator import Estimator
from dunno.inputs import as_arrays
from dunno.seeding import make_generator
from dunno.training import fit as fit_loop
from dunno.training import seed_everything
from dunno.validation import as_labels, check_float, check_hidden, check_int, check_seed
from uncertainty.predictive._checks import as_features, as_regression_data
from uncertainty.predictive._mlp import mlp, stack_training_sets, train_stacked
from uncertainty.predictive.base import Regressor, check_training_params
from uncertainty.predictive.mc_dropout import MCDropout
from uncertainty.predictive.prediction import ClassificationPrediction, RegressionPrediction

__all__ = [
    "LOG_VAR_BOUNDS",
    "HeteroscedasticClassifier",
    "HeteroscedasticRegressor",
    "gaussian_nll_loss",
    "sampled_softmax_loss",
]

_LOG_2PI = math.log(2.0 * math.pi)

#: Predicted log-variances are clamped to this range (variances 2e-9 .. 5e8) for stability.
LOG_VAR_BOUNDS = (-20.0, 20.0)


def gaussian_nll_loss(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, *,
                      beta: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    r"""Gaussian negative log-likelihood with a predicted log-variance, optionally β-NLL.

    Per entry :math:`\tfrac12(\log 2\pi + s + (y - \mu)^2 e^{-s})`, times
    :math:`\operatorname{stopgrad}(e^{\beta s})` when ``beta > 0``. ``reduction`` "mean"
    averages over all entries (equal to ``torch.nn.GaussianNLLLoss(full=True)(mean, target,
    log_var.exp())`` for ``beta = 0``), "sum" sums, "none" returns the entries.

    Args:
        mean, log_var, target: tensors of one shape, e.g. ``(N, D)``.
        beta: β in [0, 1].
        reduction: "mean", "sum" or "none".
    """
    if mean.shape != log_var.shape or mean.shape != target.shape:
        raise ValueError(
            f"gaussian_nll_loss needs mean, log_var and target of one shape. Got "
            f"{tuple(mean.shape)}, {tuple(log_var.shape)}, {tuple(target.shape)}."
        )
    beta = check_float(beta, "beta", "gaussian_nll_loss", low=0.0, high=1.0)
    nll = 0.5 * (_LOG_2PI + log_var + (target - mean) ** 2 * torch.exp(-log_var))
    if beta > 0:
        nll = nll * torch.exp(beta * log_var).detach()
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    if reduction == "none":
        return nll
    raise ValueError(
        f"The 'reduction' parameter of gaussian_nll_loss must be one of 'mean', 'sum', 'none'. "
        f"Got {reduction!r} instead."
    )


def sampled_softmax_loss(logits: torch.Tensor, log_var: torch.Tensor, labels: torch.Tensor,
                         *, num_samples: int = 10, reduction: str = "mean") -> torch.Tensor:
    r"""Kendall & Gal's heteroscedastic classification loss (eq. 12), in nats:
    :math:`-\log \frac1{T}\sum_t \operatorname{softmax}(f + e^{s/2}\epsilon_t)_y`, computed
    with log-sum-exp over ``T = num_samples`` noise draws.

    Args:
        logits: ``(N, C)`` logit means :math:`f`.
        log_var: ``(N, C)`` or ``(N, 1)`` logit log-variances :math:`s`.
        labels: ``(N,)`` integer labels.
        num_samples: ``T >= 1``.
        reduction: "mean", "sum" or "none" (``(N,)``).
    """
    num_samples = check_int(num_samples, "num_samples", "sampled_softmax_loss", low=1)
    if logits.ndim != 2 or log_var.ndim != 2 or log_var.shape[0] != logits.shape[0] or (
            log_var.shape[1] not in (1, logits.shape[1])):
        raise ValueError(
            f"sampled_softmax_loss needs logits (N, C) and log_var (N, C) or (N, 1). Got "
            f"{tuple(logits.shape)} and {tuple(log_var.shape)}."
        )
    std = torch.exp(0.5 * log_var).unsqueeze(0)  # (1, N, C)
    eps = torch.randn(num_samples, *logits.shape, dtype=logits.dtype, device=logits.device)
    noisy = logits.unsqueeze(0) + std * eps  # (T, N, C)
    log_p = F.log_softmax(noisy, dim=-1)  # (T, N, C)
    index = labels.view(1, -1, 1).expand(num_samples, -1, 1)
    picked = log_p.gather(-1, index).squeeze(-1)  # (T, N)
    nll = -(torch.logsumexp(picked, dim=0) - math.log(num_samples))  # (N,)
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    if reduction == "none":
        return nll
    raise ValueError(
        f"The 'reduction' parameter of sampled_softmax_loss must be one of 'mean', 'sum', "
        f"'none'. Got {reduction!r} instead."
    )


class HeteroscedasticRegressor(Regressor):
    """A ReLU MLP with mean and log-variance outputs, Gaussian (β-)NLL, and MC-Dropout.

    The last layer outputs ``2 * O`` columns: ``O`` means, then ``O`` log-variances (clamped
    to :data:`LOG_VAR_BOUNDS`).

    Parameters
    ----------
    hidden : int or sequence of int
        Hidden layer widths.
    dropout : float
        Dropout rate after every hidden layer, in ``[0, 1)``; 0 gives a purely aleatoric
        model (one Gaussian, zero epistemic variance).
    beta : float
        β of β-NLL in [0, 1]; 0 is the plain Gaussian NLL.
    num_samples : int
        ``T`` MC-Dropout passes at prediction (1 is used when ``dropout == 0``).
    epochs, batch_size, lr, weight_decay : training budget (Adam; L2 on the weights).
    seed : int

    Attributes
    ----------
    model_ : nn.Sequential
        The trained network (eval mode).
    history_ : History
    """

    name = "heteroscedastic"
    _state_names = ("model_",)

    def __init__(self, hidden=50, dropout: float = 0.05, *, beta: float = 0.0,
                 num_samples: int = 100, epochs: int = 40, batch_size: int = 100,
                 lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.beta = beta
        self.num_samples = num_samples
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def _validate_params(self) -> None:
        check_hidden(self.hidden, self)
        check_float(self.dropout, "dropout", self, low=0.0, high=1.0, high_open=True)
        check_float(self.beta, "beta", self, low=0.0, high=1.0)
        check_int(self.num_samples, "num_samples", self, low=1)
        check_training_params(self)
        check_seed(self.seed, self)

    def _fit_jointly(self, estimators, data, on_epoch_end=None) -> None:
        hidden = check_hidden(self.hidden, self)
        xs, ys = stack_training_sets(
            type(self).__name__, [as_regression_data(x, y) for x, y in data])
        s_count, o = xs.shape[0], ys.shape[2]

        def loss_fn(out, y):  # out (M, B, 2 O), y (M, B, O)
            mean, log_var = out[..., :o], out[..., o:].clamp(*LOG_VAR_BOUNDS)
            nll = gaussian_nll_loss(mean, log_var, y, beta=self.beta, reduction="none")
            return nll.mean(dim=(1, 2))

        decay = torch.full((s_count,), self.weight_decay) if self.weight_decay > 0 else None
        net, history = train_stacked(
            xs, ys, list(range(s_count)), hidden=hidden, out_features=2 * o, loss_fn=loss_fn,
            group_rates=[self.dropout] * s_count, mask_groups=list(range(s_count)),
            decay=decay, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            seed=self.seed, on_epoch_end=on_epoch_end,
        )
        for s, est in enumerate(estimators):
            est.model_ = net.member(s)
            est.history_ = history
            est.n_features_in_, est.n_outputs_ = xs.shape[2], o

    def _outputs(self, x, seed=None, generator=None) -> torch.Tensor:
        """``(T, N, 2 O)`` outputs of ``T`` dropout passes (one pass without dropout)."""
        self.check_fitted()
        x = as_features(x, num_features=self.n_features_in_,
                        owner="HeteroscedasticRegressor.predict")
        if self.dropout == 0:
            with torch.no_grad():
                return self.model_.eval()(x).unsqueeze(0)
        return MCDropout(self.model_, self.num_samples, task="regression").sample(
            x, seed=seed, generator=generator)

    def predict(self, x, *, seed: int | None = None, generator: torch.Generator | None = None
                ) -> RegressionPrediction:
        """The mixture of the ``T`` passes' Gaussians :math:`\\mathcal{N}(\\mu_t, \\sigma^2_t)`
        (``seed`` / ``generator``: the dropout masks, :mod:`dunno.seeding`)."""
        out = self._outputs(x, seed, generator).double()
        o = self.n_outputs_
        var = out[..., o:].clamp(*LOG_VAR_BOUNDS).exp()
        return RegressionPrediction.from_samples(out[..., :o], var)


class HeteroscedasticClassifier(Estimator):
    """A ReLU MLP classifier with Gaussian noise on its logits (Kendall & Gal 2017) and
    MC-Dropout, for vector inputs ``(N, D)``.

    The last layer outputs ``2 * C`` columns: ``C`` logit means, then ``C`` logit
    log-variances.

    Parameters
    ----------
    hidden : int or sequence of int
    dropout : float
        Dropout rate after every hidden layer in ``[0, 1)``.
    noise_samples : int
        ``T'`` logit-noise draws in the loss and per pass at prediction.
    num_samples : int
        ``T`` MC-Dropout passes at prediction (1 when ``dropout == 0``).
    epochs, batch_size, lr, weight_decay, seed : training (Adam).

    Attributes
    ----------
    model_ : nn.Sequential
    classes_ : int
        Number of classes ``C``.
    history_ : History
    """

    _state_names = ("model_",)

    def __init__(self, hidden=64, dropout: float = 0.1, *, noise_samples: int = 20,
                 num_samples: int = 50, epochs: int = 40, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.noise_samples = noise_samples
        self.num_samples = num_samples
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def _validate_params(self) -> None:
        check_hidden(self.hidden, self)
        check_float(self.dropout, "dropout", self, low=0.0, high=1.0, high_open=True)
        check_int(self.noise_samples, "noise_samples", self, low=1)
        check_int(self.num_samples, "num_samples", self, low=1)
        check_training_params(self)
        check_seed(self.seed, self)

    def fit(self, x, labels=None) -> HeteroscedasticClassifier:
        """Train on ``x (N, D)`` and integer ``labels (N,)``; returns ``self``. ``x`` may be
        any kind read by :mod:`dunno.inputs` (a pair, Dataset or loader with
        ``labels=None``); NaN / inf are refused."""
        self._validate_params()
        hidden = check_hidden(self.hidden, self)
        x, labels = as_arrays(x, labels=labels, label_name="labels", require_labels=True,
                              owner="HeteroscedasticClassifier.fit")
        x = as_features(x, owner="HeteroscedasticClassifier.fit")
        y = as_labels(labels, x.shape[0])
        c = max(int(y.max()) + 1, 2)
        seed_everything(self.seed)
        model = mlp(x.shape[1], hidden, 2 * c, dropout=self.dropout)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr,
                                     weight_decay=self.weight_decay)
        data = ArrayDataset(x, y, DatasetInfo("heteroscedastic-fit", "vector", (x.shape[1],), c))
        loader = make_loader(data, self.batch_size, shuffle=True, seed=self.seed)

        def step(batch):
            out = model(batch[0])  # (B, 2C)
            log_var = out[:, c:].clamp(*LOG_VAR_BOUNDS)
            loss = sampled_softmax_loss(out[:, :c], log_var, batch[1],
                                        num_samples=self.noise_samples)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return {"loss": loss.detach()}

        self.history_ = fit_loop(step, loader, epochs=self.epochs, state={"model": model},
                                 progress_by="epochs", desc=type(self).__name__)
        self.model_ = model.eval()
        self.classes_ = c
        self.n_features_in_ = x.shape[1]
        return self

    @torch.no_grad()
    def predict(self, x, *, seed: int | None = None, generator: torch.Generator | None = None
                ) -> ClassificationPrediction:
        """``samples (T, N, C)``: per dropout pass, the softmax averaged over noise draws.
        ``seed`` / ``generator`` make the dropout masks and the noise reproducible
        (:mod:`dunno.seeding`)."""
        self.check_fitted()
        x = as_features(x, num_features=self.n_features_in_,
                        owner="HeteroscedasticClassifier.predict")
        generator = make_generator(seed, generator, owner="HeteroscedasticClassifier.predict")
        if self.dropout == 0:
            out = self.model_.eval()(x).unsqueeze(0)
        else:
            out = MCDropout(self.model_, self.num_samples, task="regression").sample(
                x, generator=generator)
        c = self.classes_
        out = out.double()
        std = torch.exp(0.5 * out[..., c:].clamp(*LOG_VAR_BOUNDS))  # (T, N, C)
        eps = torch.randn(self.noise_samples, *out[..., :c].shape, dtype=out.dtype,
                          generator=generator)
        probs = torch.softmax(out[..., :c].unsqueeze(0) + std.unsqueeze(0) * eps, dim=-1)
        return ClassificationPrediction.from_samples(probs.mean(dim=0))  # (T, N, C)
