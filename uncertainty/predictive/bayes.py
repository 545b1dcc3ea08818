r"""A mean-field variational Bayesian neural network in Pyro ("Bayes by Backprop": Blundell
et al., "Weight Uncertainty in Neural Networks", ICML 2015; Graves 2011).

**Model.** A ReLU MLP with independent Gaussian priors on its weights and biases and a
homoscedastic Gaussian likelihood whose noise scale is learned, with a log-normal prior,

.. math::

    W^{(l)}_{jk} \sim \mathcal{N}\!\big(0, s_p^2 / d_{l-1}\big), \quad
    b^{(l)}_k \sim \mathcal{N}(0, s_p^2), \quad
    \sigma \sim \operatorname{LogNormal}(\log 0.5, 1), \quad
    y_i \mid x_i, W, \sigma \sim \mathcal{N}\big(f_W(x_i), \sigma^2 I\big),

where :math:`d_{l-1}` is the fan-in of layer :math:`l`. The :math:`1/d_{l-1}` scaling (Neal
1996, "Bayesian Learning for Neural Networks") keeps the prior over functions of order one
whatever the width; a flat :math:`\mathcal{N}(0, 1)` prior on every weight of a 50-unit layer
puts most of its mass on functions with output scale ~5 standard deviations, and the
mean-field posterior of a weight that the data do not pin down falls back to that prior width,
which drowned the predictions in epistemic noise (the BNN underfitted every UCI set).

**Guide.** A fully factorised Gaussian :math:`q(W) = \prod \mathcal{N}(\mu, \operatorname{
softplus}(\rho)^2)` (Blundell et al.'s parameterisation of the scale) and a log-normal
:math:`q(\sigma)`. The means start at :class:`torch.nn.Linear`'s initialisation, the scales
at ``init_scale`` (small, 1e-3: Blundell et al. start near-deterministic, so SVI first fits
the data and then grows the variances the KL term asks for; starting at the prior width makes
the early likelihood gradients pure noise), and :math:`\sigma` at ``noise_init``.

**Objective.** The ELBO

.. math::

    \mathcal{L} = \frac{N}{B} \sum_{i \in \text{batch}} \mathbb{E}_q \log p(y_i \mid x_i, W,
    \sigma) - \operatorname{KL}\big(q(W, \sigma)\,\|\,p(W, \sigma)\big),

maximised by :class:`pyro.infer.SVI` with ``TraceMeanField_ELBO`` (the KL terms in closed form)
or ``Trace_ELBO`` (Monte-Carlo KL); ``pyro.plate("data", N, subsample=index)`` scales the
mini-batch by ``N/B``. ClippedAdam with an exponential learning-rate decay from ``lr`` to
``lr * lr_decay`` over the run (a decaying step size, as stochastic approximation requires;
Robbins & Monro 1951).

**Local reparameterisation** (Kingma, Salimans & Welling, "Variational Dropout and the Local
Reparameterization Trick", NeurIPS 2015), ``local_reparam=True``, training only: for a
Gaussian :math:`q(W)` the pre-activations of a row, :math:`a = hW + b`, are Gaussian with mean
:math:`h\mu_W + \mu_b` and variance :math:`h^2 s_W^2 + s_b^2`, so the expected
log-likelihood is estimated by drawing :math:`a` for every row independently instead of one
:math:`W` per mini-batch. The estimate is unbiased (each row's marginal is unchanged) and its
variance shrinks like :math:`1/B`. The weights stay sample sites of the model and guide (the
KL terms are those of :math:`q(W)`); the model reads the guide's means and scales from the
parameter store to draw the pre-activations. Predictions always draw whole networks.

**Prediction** goes through :class:`pyro.infer.Predictive`: ``S`` posterior draws of the
network and the noise give an equal-weight mixture of ``S`` Gaussians.

**Several training sets at once.** ``fit_many`` trains ``M`` independent networks (e.g. the 20
UCI splits) in one SVI run: every site carries a leading ``M`` axis (``W`` is ``(M, in, out)``),
and since the ELBO is a sum of the networks' ELBOs each one's gradient is its own.

**Parameter store.** Pyro keeps parameters in one global store keyed by name, so two models
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
import torch.nn.functional as F
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO

from dunno.inputs import output_like
from dunno.seeding import sampling_rng
from dunno.training import fit as fit_loop
from dunno.training import seed_everything
from dunno.validation import (
    check_bool,
    check_choice,
    check_float,
    check_hidden,
    check_int,
    check_seed,
)
from uncertainty.predictive._checks import as_features, as_regression_data
from uncertainty.predictive._mlp import IndexBatches, stack_training_sets
from uncertainty.predictive.base import Regressor
from uncertainty.predictive.prediction import RegressionPrediction

__all__ = ["BayesianMLP", "BayesianMLPRegressor"]

#: Prior of the observation noise scale (standardised targets): LogNormal(log 0.5, 1).
NOISE_PRIOR = (math.log(0.5), 1.0)


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class BayesianMLP:
    r"""``M`` independent ReLU MLPs with Gaussian weight priors and learned Gaussian noise,
    and their mean-field Gaussian guide (module docstring), as a Pyro ``model`` / ``guide``
    pair.

    Sites: ``w{l}`` ``(M, in, out)``, ``b{l}`` ``(M, 1, out)``, ``sigma`` ``(M,)`` and
    ``obs`` (rows under ``pyro.plate("data", N, subsample=index)``). Guide parameters:
    ``w{l}.loc`` / ``w{l}.rho`` (scale ``softplus(rho)``), the same for ``b{l}``, and
    ``sigma.loc`` / ``sigma.rho`` (:math:`\log\sigma \sim \mathcal{N}(loc,
    \operatorname{softplus}(rho)^2)`).

    ``model(x, y=None, index=None, local_reparam=False)`` takes ``x`` ``(M, B, D)`` (the rows
    ``index`` of the ``N``-row training sets, or every row when ``index`` is None) or ``(B,
    D)`` (shared by all networks), ``y`` ``(M, B, O)`` or ``(B, O)``, and returns the
    network outputs ``(M, B, O)``; ``guide`` takes the same arguments. ``hidden=()`` is
    Bayesian linear regression.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
                 num_train: int, prior_scale: float = 1.0, num_models: int = 1,
                 init_scale: float = 1e-3, noise_init: float = 0.5) -> None:
        self.widths = [in_features, *hidden, out_features]
        self.num_layers = len(self.widths) - 1
        self.out_features = out_features
        self.num_models = num_models
        self.num_train = num_train
        self.prior_scale = prior_scale
        self.init_scale = init_scale
        self.noise_init = noise_init

    # ------------------------------------------------------------------ priors and guide
    def _prior(self, name: str) -> dist.Distribution:
        m = self.num_models
        layer = int(name[1:])
        fan_in, fan_out = self.widths[layer], self.widths[layer + 1]
        if name[0] == "w":
            scale = self.prior_scale / math.sqrt(fan_in)
            return dist.Normal(0.0, scale).expand([m, fan_in, fan_out]).to_event(3)
        return dist.Normal(0.0, self.prior_scale).expand([m, 1, fan_out]).to_event(3)

    def _site_names(self) -> list[str]:
        return [f"{kind}{layer}" for layer in range(self.num_layers) for kind in ("w", "b")]

    def _initial_loc(self, name: str) -> torch.Tensor:
        """:class:`torch.nn.Linear`'s initialisation, ``U(\u00b11/sqrt(fan_in))``, from the
        seeded global generator: starting every mean at the prior median (0) would leave all
        hidden units identical."""
        layer = int(name[1:])
        fan_in, fan_out = self.widths[layer], self.widths[layer + 1]
        shape = (self.num_models, fan_in, fan_out) if name[0] == "w" else (
            self.num_models, 1, fan_out)
        bound = 1.0 / math.sqrt(fan_in)
        return torch.empty(shape).uniform_(-bound, bound)

    def _q_params(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "sigma":
            loc = pyro.param("sigma.loc", lambda: torch.full((self.num_models,),
                                                             math.log(self.noise_init)))
        else:
            loc = pyro.param(f"{name}.loc", lambda: self._initial_loc(name))
        rho = pyro.param(f"{name}.rho", lambda: torch.full_like(
            loc, _inverse_softplus(self.init_scale)))
        return loc, F.softplus(rho)

    def guide(self, x, y=None, index=None, local_reparam: bool = False) -> None:
        for name in self._site_names():
            loc, scale = self._q_params(name)
            pyro.sample(name, dist.Normal(loc, scale).to_event(3))
        loc, scale = self._q_params("sigma")
        pyro.sample("sigma", dist.LogNormal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ model
    def model(self, x, y=None, index=None, local_reparam: bool = False) -> torch.Tensor:
        m = self.num_models
        if x.ndim == 2:
            x = x.unsqueeze(0).expand(m, -1, -1)
            y = None if y is None else y.unsqueeze(0).expand(m, -1, -1)
        params = {name: pyro.sample(name, self._prior(name)) for name in self._site_names()}
        sigma = pyro.sample("sigma", dist.LogNormal(*NOISE_PRIOR).expand([m]).to_event(1))
        h = x  # (M, B, D)
        for layer in range(self.num_layers):
            w, b = params[f"w{layer}"], params[f"b{layer}"]
            if local_reparam:
                w_loc, w_scale = self._q_params(f"w{layer}")
                b_loc, b_scale = self._q_params(f"b{layer}")
                mean = torch.baddbmm(b_loc, h, w_loc)
                var = torch.baddbmm(b_scale.square(), h.square(), w_scale.square())
                h = mean + var.sqrt() * torch.randn_like(mean)
            else:
                h = torch.baddbmm(b, h, w)  # (M, B, out)
            if layer < self.num_layers - 1:
                h = torch.relu(h)
        rows = x.shape[1]
        with pyro.plate("data", self.num_train if index is not None else rows,
                        subsample=index):
            obs = None if y is None else y.transpose(0, 1)
            pyro.sample("obs", dist.Normal(h.transpose(0, 1), sigma.view(1, m, 1))
                        .to_event(2), obs=obs)  # rows first: (B, M, O)
        return h


class BayesianMLPRegressor(Regressor):
    """Mean-field variational BNN regressor trained with SVI (see the module docstring).

    Parameters
    ----------
    hidden : int or sequence of int
        Hidden layer widths; ``()`` for Bayesian linear regression.
    prior_scale : float
        ``s_p``: weights into a layer of fan-in ``d`` have prior ``N(0, s_p^2 / d)``,
        biases ``N(0, s_p^2)`` (Neal 1996).
    elbo : {"meanfield", "trace"}
        ``TraceMeanField_ELBO`` (analytic KL) or ``Trace_ELBO``.
    local_reparam : bool
        Train with the local reparameterisation trick (Kingma et al. 2015).
    epochs : int
        Each epoch is ``ceil(N / batch_size)`` SVI steps on shuffled mini-batches.
    batch_size : int
    lr, lr_decay : float
        ClippedAdam's learning rate decays exponentially from ``lr`` to ``lr * lr_decay``
        (``lr_decay`` in (0, 1]; 1 keeps it constant).
    init_scale : float
        Initial standard deviation of every weight in the guide (Blundell et al. 2015).
    noise_init : float
        Initial noise scale ``sigma`` of the guide (standardised units).
    num_samples : int
        ``S`` posterior draws for prediction.
    seed : int

    Attributes
    ----------
    model_ : BayesianMLP
    param_state_ : dict
        This model's Pyro parameters (its own param-store scope; copies fitted together by
        :meth:`fit_many` share one scope holding one independent network per training set,
        ``model_index_`` says which).
    history_ : History
        Per-epoch mean negative ELBO per training row (``elbo``).
    """

    name = "bnn"
    _state_names = ("param_state_",)

    def __init__(self, hidden=50, *, prior_scale: float = 1.0, elbo: str = "meanfield",
                 local_reparam: bool = True, epochs: int = 40, batch_size: int = 100,
                 lr: float = 1e-2, lr_decay: float = 0.1, init_scale: float = 1e-3,
                 noise_init: float = 0.5, num_samples: int = 200, seed: int = 0) -> None:
        self.hidden = hidden
        self.prior_scale = prior_scale
        self.elbo = elbo
        self.local_reparam = local_reparam
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_decay = lr_decay
        self.init_scale = init_scale
        self.noise_init = noise_init
        self.num_samples = num_samples
        self.seed = seed

    def _validate_params(self) -> None:
        check_hidden(self.hidden, self, allow_empty=True)
        check_float(self.prior_scale, "prior_scale", self, low=0.0, low_open=True)
        check_choice(self.elbo, "elbo", self, ("meanfield", "trace"))
        check_bool(self.local_reparam, "local_reparam", self)
        check_int(self.epochs, "epochs", self, low=1)
        check_int(self.batch_size, "batch_size", self, low=1)
        check_float(self.lr, "lr", self, low=0.0, low_open=True)
        check_float(self.lr_decay, "lr_decay", self, low=0.0, high=1.0, low_open=True)
        check_float(self.init_scale, "init_scale", self, low=0.0, low_open=True)
        check_float(self.noise_init, "noise_init", self, low=0.0, low_open=True)
        check_int(self.num_samples, "num_samples", self, low=1)
        check_seed(self.seed, self)

    def _fit_jointly(self, estimators, data, on_epoch_end=None) -> None:
        hidden = check_hidden(self.hidden, self, allow_empty=True)
        xs, ys = stack_training_sets(  # (M, N, D), (M, N, O)
            type(self).__name__, [as_regression_data(x, y) for x, y in data])
        m_count, n = xs.shape[0], xs.shape[1]
        batch = min(self.batch_size, n)
        seed_everything(self.seed)
        loader = IndexBatches(n, batch, seed=self.seed)
        steps = self.epochs * len(loader)
        with pyro.get_param_store().scope() as state:
            model = BayesianMLP(xs.shape[2], hidden, ys.shape[2], num_train=n,
                                prior_scale=self.prior_scale, num_models=m_count,
                                init_scale=self.init_scale, noise_init=self.noise_init)
            loss = TraceMeanField_ELBO() if self.elbo == "meanfield" else Trace_ELBO()
            optim = pyro.optim.ClippedAdam({"lr": self.lr,
                                            "lrd": self.lr_decay ** (1.0 / steps)})
            svi = SVI(model.model, model.guide, optim, loss)

            def step(index):
                value = svi.step(xs[:, index], ys[:, index], index, self.local_reparam)
                return {"elbo": value / (n * m_count)}

            history = fit_loop(step, loader, epochs=self.epochs, progress_by="epochs",
                               desc=type(self).__name__, on_epoch_end=on_epoch_end)
        for s, est in enumerate(estimators):
            est.model_, est.param_state_ = model, state
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
            predictive = Predictive(self.model_.model, guide=self.model_.guide,
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
