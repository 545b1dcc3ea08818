r"""A mean-field variational Bayesian neural network in Pyro (Blundell et al., "Weight
Uncertainty in Neural Networks", ICML 2015; Graves 2011).

The model puts independent Gaussian priors on every weight and bias of a ReLU MLP and a
log-normal prior on the observation noise,

.. math::

    w \sim \mathcal{N}(0, s_p^2), \quad \sigma \sim \operatorname{LogNormal}(\log 0.5, 1),
    \quad y_i \mid x_i, w, \sigma \sim \mathcal{N}\big(f_w(x_i), \sigma^2 I\big),

and fits a fully factorised Gaussian guide (:class:`pyro.infer.autoguide.AutoNormal`) by
stochastic variational inference, maximising

.. math::

    \mathcal{L} = \frac{N}{B} \sum_{i \in \text{batch}} \mathbb{E}_q \log p(y_i \mid x_i, w,
    \sigma) - \operatorname{KL}\big(q(w, \sigma)\,\|\,p(w, \sigma)\big)

with ``TraceMeanField_ELBO`` (analytic KL terms where Pyro has them) or ``Trace_ELBO``; the
``N/B`` scaling comes from ``pyro.plate("data", N, subsample_size=B)``, which also draws the
mini-batch. Predictions go through :class:`pyro.infer.Predictive`: ``S`` posterior draws of
the network and the noise give an equal-weight mixture of ``S`` Gaussians.

**Parameter store.** Pyro keeps parameters in one global store keyed by name, so two guides
with the same site names would silently share parameters. Every fit and prediction of
:class:`BayesianMLPRegressor` runs inside its own ``pyro.get_param_store().scope(...)``: the
global store is left as it was, and two models never share parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_value
from pyro.nn import PyroModule, PyroSample
from torch import nn

from dunno.inputs import output_like
from dunno.seeding import sampling_rng
from dunno.training import fit as fit_loop
from dunno.training import seed_everything
from dunno.validation import check_choice, check_float, check_hidden, check_int, check_seed
from uncertainty.predictive._checks import as_features, as_regression_data
from uncertainty.predictive._mlp import stack_training_sets
from uncertainty.predictive.base import Regressor
from uncertainty.predictive.prediction import RegressionPrediction

__all__ = ["BayesianMLP", "BayesianMLPRegressor"]


class BayesianMLP(PyroModule):
    """``S`` independent ReLU MLPs with Gaussian priors on their weights and biases, and
    Gaussian likelihoods with a log-normal prior on each noise scale.

    ``forward(x, y=None, subsample_size=None)`` takes ``x (S, N, D)`` (or ``(N, D)`` when
    ``S = 1``) and ``y`` of shape ``(S, N, O)`` / ``(N, O)``, draws every model's weights
    under ``pyro.plate("models", S)``, the rows under ``pyro.plate("data", N,
    subsample_size)`` (model ``s`` sees its own ``x[s]`` at the same row positions), observes
    ``y`` at site ``"obs"`` and returns the outputs ``(S, B, O)``. ``hidden=()`` is Bayesian
    linear regression.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
                 prior_scale: float = 1.0, num_models: int = 1) -> None:
        super().__init__()
        widths = [in_features, *hidden, out_features]
        layers = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            layer = PyroModule[nn.Linear](fan_in, fan_out)
            layer.weight = PyroSample(
                dist.Normal(0.0, prior_scale).expand([fan_out, fan_in]).to_event(2))
            layer.bias = PyroSample(dist.Normal(0.0, prior_scale).expand([fan_out]).to_event(1))
            layers.append(layer)
        self.layers = PyroModule[nn.ModuleList](layers)
        self.out_features = out_features
        self.num_models = num_models

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                subsample_size: int | None = None) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(0).expand(self.num_models, -1, -1)
            y = None if y is None else y.unsqueeze(0).expand(self.num_models, -1, -1)
        models = pyro.plate("models", self.num_models, dim=-2)
        with models:
            # global latent variables, batch shape (S, 1): drawn once, outside the data plate
            sigma = pyro.sample("sigma", dist.LogNormal(math.log(0.5), 1.0))  # (S, 1)
            params = [(layer.weight, layer.bias) for layer in self.layers]
        with models, pyro.plate("data", x.shape[1], subsample_size=subsample_size,
                                dim=-1) as index:
            h = x[:, index]  # (S, B, D)
            last = len(params) - 1
            for i, (weight, bias) in enumerate(params):
                # weight (S, 1, out, in), bias (S, 1, out)
                h = torch.baddbmm(bias[:, 0].unsqueeze(1), h, weight[:, 0].transpose(1, 2))
                if i < last:
                    h = torch.relu(h)
            obs = None if y is None else y[:, index]
            pyro.sample("obs", dist.Normal(h, sigma.unsqueeze(-1)).to_event(1), obs=obs)
        return h  # (S, B, O)


def _initial_weights(model: BayesianMLP) -> dict[str, torch.Tensor]:
    """Guide means to start from: :class:`torch.nn.Linear`'s initialisation (drawn from the
    seeded global generator) and noise scale 0.5. Starting every weight at the prior median
    (0) would leave all hidden units identical, and starting at prior draws gives huge
    activations; either way SVI crawls."""
    s = model.num_models
    values = {"sigma": torch.full((s, 1), 0.5)}
    for i, layer in enumerate(model.layers):
        fan_out, fan_in = layer.out_features, layer.in_features
        bound = 1.0 / math.sqrt(fan_in)
        values[f"layers.{i}.weight"] = torch.empty(s, 1, fan_out, fan_in).uniform_(-bound, bound)
        values[f"layers.{i}.bias"] = torch.empty(s, 1, fan_out).uniform_(-bound, bound)
    return values


class BayesianMLPRegressor(Regressor):
    """Mean-field variational BNN regressor trained with SVI (see the module docstring).

    Parameters
    ----------
    hidden : int or sequence of int
        Hidden layer widths; ``()`` for Bayesian linear regression.
    prior_scale : float
        Standard deviation of the weight and bias priors.
    elbo : {"meanfield", "trace"}
        ``TraceMeanField_ELBO`` (analytic KL) or ``Trace_ELBO``.
    epochs : int
        Each epoch is ``ceil(N / batch_size)`` SVI steps on random mini-batches.
    batch_size, lr : mini-batch size and ClippedAdam learning rate.
    init_scale : float
        Initial standard deviation of the guide.
    num_samples : int
        ``S`` posterior draws for prediction.
    seed : int

    Attributes
    ----------
    model_ : BayesianMLP
    guide_ : AutoNormal
    param_state_ : dict
        This model's Pyro parameters (its own param-store scope; copies fitted together by
        :meth:`fit_many` share one scope holding one independent model per training set,
        ``model_index_`` says which).
    history_ : History
        Per-epoch mean ELBO loss per training row (``elbo``).
    """

    name = "bnn"
    _state_names = ("param_state_",)

    def __init__(self, hidden=50, *, prior_scale: float = 1.0, elbo: str = "meanfield",
                 epochs: int = 40, batch_size: int = 100, lr: float = 1e-2,
                 init_scale: float = 0.1, num_samples: int = 200, seed: int = 0) -> None:
        self.hidden = hidden
        self.prior_scale = prior_scale
        self.elbo = elbo
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.init_scale = init_scale
        self.num_samples = num_samples
        self.seed = seed

    def _validate_params(self) -> None:
        check_hidden(self.hidden, self, allow_empty=True)
        check_float(self.prior_scale, "prior_scale", self, low=0.0, low_open=True)
        check_choice(self.elbo, "elbo", self, ("meanfield", "trace"))
        check_int(self.epochs, "epochs", self, low=1)
        check_int(self.batch_size, "batch_size", self, low=1)
        check_float(self.lr, "lr", self, low=0.0, low_open=True)
        check_float(self.init_scale, "init_scale", self, low=0.0, low_open=True)
        check_int(self.num_samples, "num_samples", self, low=1)
        check_seed(self.seed, self)

    def _fit_jointly(self, estimators, data, on_epoch_end=None) -> None:
        hidden = check_hidden(self.hidden, self, allow_empty=True)
        xs, ys = stack_training_sets(  # (S, N, D), (S, N, O)
            type(self).__name__, [as_regression_data(x, y) for x, y in data])
        s_count, n = xs.shape[0], xs.shape[1]
        batch = min(self.batch_size, n)
        seed_everything(self.seed)
        with pyro.get_param_store().scope() as state:
            model = BayesianMLP(xs.shape[2], hidden, ys.shape[2], prior_scale=self.prior_scale,
                                num_models=s_count)
            guide = AutoNormal(model, init_loc_fn=init_to_value(values=_initial_weights(model)),
                               init_scale=self.init_scale)
            loss = TraceMeanField_ELBO() if self.elbo == "meanfield" else Trace_ELBO()
            svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": self.lr}), loss)

            def step(_):
                return {"elbo": svi.step(xs, ys, batch) / (n * s_count)}

            history = fit_loop(step, range(math.ceil(n / batch)), epochs=self.epochs,
                               progress_by="epochs", desc=type(self).__name__,
                               on_epoch_end=on_epoch_end)
        for s, est in enumerate(estimators):
            est.model_, est.guide_, est.param_state_ = model, guide, state
            est.model_index_ = s
            est.history_ = history
            est.n_features_in_, est.n_outputs_ = xs.shape[2], ys.shape[2]

    def sample(self, x, *, seed: int | None = None, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``S`` posterior draws: network outputs ``(S, N, O)`` and noise scales ``(S,)``
        (numpy for numpy ``x``); ``seed`` / ``generator`` make them reproducible
        (:mod:`dunno.seeding`)."""
        return output_like(self._sample(x, seed, generator, "BayesianMLPRegressor.sample"), x)

    @torch.no_grad()
    def _sample(self, x, seed, generator, owner: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_fitted()
        x = as_features(x, num_features=self.n_features_in_, owner=owner)
        with pyro.get_param_store().scope(self.param_state_), \
                sampling_rng(seed, generator, owner=owner):
            predictive = Predictive(self.model_, guide=self.guide_,
                                    num_samples=self.num_samples,
                                    return_sites=("_RETURN", "sigma"))
            draws = predictive(x)
        k = self.model_index_
        out = draws["_RETURN"].reshape(self.num_samples, self.model_.num_models, x.shape[0], -1)
        sigma = draws["sigma"].reshape(self.num_samples, self.model_.num_models)
        return out[:, k], sigma[:, k]

    def predict(self, x, *, seed: int | None = None, generator: torch.Generator | None = None
                ) -> RegressionPrediction:
        r"""Equal-weight mixture of the ``S`` draws :math:`\mathcal{N}(f_s(x), \sigma_s^2)`
        (``seed`` / ``generator``: as :meth:`sample`)."""
        means, sigma = self._sample(x, seed, generator, "BayesianMLPRegressor.predict")
        means = means.double()
        var = (sigma.double() ** 2).view(-1, 1, 1).expand_as(means)
        return RegressionPrediction.from_samples(means, var)
