r"""Monte Carlo dropout for regression (Gal & Ghahramani, "Dropout as a Bayesian
Approximation", ICML 2016): :class:`MCDropoutRegressor`, the UCI regressor of Gal's
``DropoutUncertaintyExps``, a ReLU MLP with dropout on the input and hidden layers, trained
with the squared error plus the weight decay implied by the prior length-scale :math:`l` and
model precision :math:`\tau`,

.. math::

    \lambda = \frac{l^2 (1 - p)}{2 N \tau},

with the test log-likelihood of the mixture of ``T`` Gaussians
:math:`\mathcal{N}(\hat y_t, \tau^{-1})`. **Units of** :math:`\tau`: a precision of the
targets the network is fitted to, so on standardised targets (the UCI runs) a precision
:math:`\tau` of the original ones is :math:`\tau s_y^2`, in the decay too. Gal's code keeps
original units in the decay (:math:`s_y^2` times ours); at :math:`l = 10^{-2}` its penalty is
at most :math:`3.4 \cdot 10^{-5}` of the loss on the nine UCI sets, ours at most
:math:`4.3 \cdot 10^{-7}` (table: ``benchmarks/README.md``). Given grids of dropout rates
and precisions it selects the pair with the best validation log-likelihood on the last 20% of
the training rows (all grid networks are trained jointly as one stacked network) and refits
on all rows (Gal's script tests the best grid network itself, trained on 80% of the rows).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dunno.inputs import output_like
from dunno.validation import (
    check_bool,
    check_float,
    check_hidden,
    check_int,
    check_seed,
)
from uncertainty.predictive._checks import as_features, as_regression_data
from uncertainty.predictive._mlp import stack_training_sets, train_stacked
from uncertainty.predictive.base import Regressor
from uncertainty.predictive.mc_dropout import MCDropout
from uncertainty.predictive.prediction import RegressionPrediction

__all__ = ["MCDropoutRegressor"]

_LOG_2PI = math.log(2.0 * math.pi)


def _as_grid(owner, name: str, value: Any, low: float, high: float, high_open: bool
             ) -> tuple[float, ...]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise ValueError(
            f"The '{name}' parameter of {type(owner).__name__} must be a float or a non-empty "
            f"sequence of floats. Got {value!r} instead."
        )
    return tuple(
        check_float(v, name, owner, low=low, high=high, low_open=name == "tau", high_open=high_open)
        for v in values
    )


class MCDropoutRegressor(Regressor):
    r"""Gal & Ghahramani's (2016) MC-Dropout MLP for regression, with its grid search.

    Parameters
    ----------
    hidden : int or sequence of int
        Hidden layer widths (UCI: 50; 100 for protein).
    dropout : float or sequence of float
        Dropout rate ``p`` in ``[0, 1)`` of every layer (inputs included); a sequence is a
        grid searched on a validation split.
    tau : float or sequence of float
        Model precision :math:`\tau > 0` (inverse observation-noise variance) in the units of
        the targets passed to :meth:`fit` (module docstring); a sequence is a grid.
    lengthscale : float
        Prior length-scale :math:`l` of the weight decay :math:`l^2(1-p)/(2N\tau)` (Gal:
        1e-2).
    epochs, batch_size, lr : training budget (Adam; Gal: 40 x 10 epochs, batch 128, 1e-3).
    num_samples : int
        ``T`` MC passes at prediction.
    val_samples : int
        ``T`` for the validation log-likelihood of the grid search.
    val_fraction : float
        Fraction of the training rows (the last ones, as in Gal's code) held out when a grid
        is searched.
    input_dropout : bool
        Dropout on the inputs too (Gal's networks do).
    share_tau : bool
        In the grid search, train one network per dropout rate (weight decay from the
        geometric mean of the ``tau`` grid) and score every ``tau`` on it, instead of one
        network per ``(p, tau)`` pair as Gal did. ``tau`` enters training only through the
        weight decay, which with ``l = 1e-2`` is tiny (about 1e-6 to 1e-10 on UCI), so this
        selects essentially the same pair at a third of the cost; ``tau`` then acts as the
        post-hoc noise precision it is at test time. The final network uses the selected
        ``tau``.
    seed : int
        Seed of the initialisation, shuffling and dropout masks.

    Attributes
    ----------
    model_ : nn.Sequential
        The trained network (eval mode).
    dropout_, tau_ : float
        The selected dropout rate and precision.
    grid_scores_ : dict or None
        ``{(p, tau): validation log-likelihood per point}`` when a grid was searched.
    history_ : History
        Training history of the final network.
    """

    name = "mc-dropout"
    _state_names = ("model_",)
    _per_dataset_params = ("dropout", "tau")

    def __init__(self, hidden=50, dropout=0.05, tau=1.0, *, lengthscale: float = 1e-2,
                 epochs: int = 40, batch_size: int = 128, lr: float = 1e-3,
                 num_samples: int = 1000, val_samples: int = 100, val_fraction: float = 0.2,
                 input_dropout: bool = True, share_tau: bool = True, seed: int = 0) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.tau = tau
        self.lengthscale = lengthscale
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.num_samples = num_samples
        self.val_samples = val_samples
        self.val_fraction = val_fraction
        self.input_dropout = input_dropout
        self.share_tau = share_tau
        self.seed = seed

    def _grids(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The dropout-rate and precision grids (one value each without a search)."""
        return (_as_grid(self, "dropout", self.dropout, 0.0, 1.0, True),
                _as_grid(self, "tau", self.tau, 0.0, math.inf, False))

    def _validate_params(self) -> None:
        check_hidden(self.hidden, self)
        self._grids()
        check_float(self.lengthscale, "lengthscale", self, low=0.0)
        check_int(self.epochs, "epochs", self, low=1)
        check_int(self.batch_size, "batch_size", self, low=1)
        check_float(self.lr, "lr", self, low=0.0, low_open=True)
        check_int(self.num_samples, "num_samples", self, low=1)
        check_int(self.val_samples, "val_samples", self, low=1)
        check_float(self.val_fraction, "val_fraction", self, low=0.0, high=1.0, low_open=True,
                    high_open=True)
        check_bool(self.input_dropout, "input_dropout", self)
        check_bool(self.share_tau, "share_tau", self)
        check_seed(self.seed, self)

    # ------------------------------------------------------------------ training
    def _train(self, xs, ys, split_of, configs, group_rates, mask_groups, on_epoch_end=None):
        """Train one stacked network: member ``m`` learns split ``split_of[m]`` of ``xs (S, N,
        D)``, ``ys (S, N, O)`` with ``configs[m] = (p, tau)``: squared error plus the weight
        decay ``l^2 (1 - p) / (2 N tau)``."""
        n = xs.shape[1]
        decay = torch.tensor(
            [self.lengthscale**2 * (1 - p) / (2 * n * tau) for p, tau in configs]
        )  # (M,)

        def mse(out, y):
            return (out - y).pow(2).mean(dim=(1, 2))  # (M,)

        return train_stacked(
            xs, ys, split_of, hidden=check_hidden(self.hidden, self), out_features=ys.shape[2],
            loss_fn=mse, group_rates=group_rates, mask_groups=mask_groups,
            input_dropout=self.input_dropout, decay=decay, epochs=self.epochs,
            batch_size=self.batch_size, lr=self.lr, seed=self.seed, on_epoch_end=on_epoch_end,
        )

    @torch.no_grad()
    def _val_log_likelihood(self, net, x, y, taus: torch.Tensor) -> torch.Tensor:
        """Mean validation log-likelihood ``(M, K)`` of member ``m`` under each of its
        precisions ``taus (M, K)`` (Gal's logsumexp estimate over ``val_samples`` passes);
        ``x (M, N, D)``, ``y (M, N, O)``."""
        t = self.val_samples
        acc = None
        tau = taus.double()[None, :, :, None]  # (1, M, K, 1)
        for start in range(0, t, 50):
            k = min(50, t - start)
            out = torch.stack([net(x, sample=True) for _ in range(k)]).double()  # (k, M, N, O)
            sq = ((y.double() - out) ** 2).sum(-1)  # (k, M, N)
            ll = -0.5 * tau * sq.unsqueeze(2)  # (k, M, K, N)
            chunk = torch.logsumexp(ll, dim=0)
            acc = chunk if acc is None else torch.logaddexp(acc, chunk)
        d = y.shape[2]
        per_point = acc - math.log(t) + d * (0.5 * tau[0].log() - 0.5 * _LOG_2PI)
        return per_point.mean(dim=2)

    def _fit_jointly(self, estimators, data, on_epoch_end=None) -> None:
        grids = [est._grids() for est in estimators]  # (rates, taus) per dataset
        if len({(len(r), len(t)) for r, t in grids}) != 1:
            raise ValueError("MCDropoutRegressor.fit_many needs grids of one size per dataset.")
        xs, ys = stack_training_sets(  # (S, N, D), (S, N, O)
            type(self).__name__, [as_regression_data(x, y) for x, y in data])
        s_count, n = xs.shape[0], xs.shape[1]
        n_rates, n_taus = len(grids[0][0]), len(grids[0][1])
        configs = [[(p, tau) for p in rates for tau in taus] for rates, taus in grids]
        scores = None
        if n_rates * n_taus > 1:
            n_train = int(math.floor((1 - self.val_fraction) * n))
            if n_train < 1 or n_train == n:
                raise ValueError(
                    f"MCDropoutRegressor cannot hold out a validation split of "
                    f"val_fraction={self.val_fraction} from {n} rows for its grid search."
                )
            if self.share_tau:
                # one network per (split, p), weight decay from the grid's geometric-mean tau;
                # every tau of the grid is scored on it.
                members = [(p, math.exp(sum(math.log(t) for t in taus) / n_taus))
                           for rates, taus in grids for p in rates]
                val_taus = torch.tensor([list(taus) for rates, taus in grids
                                         for _ in rates])  # (M, K)
                split_of = [s for s in range(s_count) for _ in range(n_rates)]
                groups = list(range(len(members)))
            else:
                members = [c for grid in configs for c in grid]
                val_taus = torch.tensor([[tau] for _, tau in members])  # (M, 1)
                split_of = [s for s in range(s_count) for _ in range(n_rates * n_taus)]
                # members of one split with the same rate share masks (one group each)
                groups = [s * n_rates + rates.index(p) for s, (rates, _) in enumerate(grids)
                          for p in rates for _ in range(n_taus)]
            net, _ = self._train(xs[:, :n_train], ys[:, :n_train], split_of, members,
                                 [p for rates, _ in grids for p in rates], groups)
            scores = self._val_log_likelihood(
                net, xs[split_of, n_train:], ys[split_of, n_train:], val_taus
            ).reshape(s_count, n_rates * n_taus)
            best = [configs[s][int(scores[s].argmax())] for s in range(s_count)]
        else:
            best = [grid[0] for grid in configs]
        net, history = self._train(xs, ys, list(range(s_count)), best, [p for p, _ in best],
                                   list(range(s_count)), on_epoch_end)
        for s, est in enumerate(estimators):
            est.grid_scores_ = None if scores is None else {
                c: float(v) for c, v in zip(configs[s], scores[s], strict=True)}
            est.model_ = net.member(s)
            est.dropout_, est.tau_ = best[s]
            est.history_ = history
            est.n_features_in_, est.n_outputs_ = xs.shape[2], ys.shape[2]

    def _sampler(self) -> MCDropout:
        self.check_fitted()
        return MCDropout(self.model_, self.num_samples, task="regression",
                         noise_variance=1.0 / self.tau_)

    @torch.no_grad()
    def _deterministic(self, xs: torch.Tensor) -> torch.Tensor:
        """The one output ``(1, N, O)`` of a network selected with dropout rate 0 (every MC
        pass would be the same)."""
        return self.model_.eval()(xs).unsqueeze(0)

    def sample(self, x, *, seed: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``T`` MC outputs ``(T, N, O)`` (network means, without observation noise); numpy
        for numpy ``x``; ``seed`` / ``generator`` as :meth:`MCDropout.sample`. With the
        selected dropout rate 0 the ``T`` outputs are the network's one output."""
        sampler = self._sampler()
        xs = as_features(x, num_features=self.n_features_in_, owner="MCDropoutRegressor.sample")
        if self.dropout_ == 0:
            out = self._deterministic(xs).expand(self.num_samples, -1, -1)
            return output_like(out, x)
        return output_like(sampler.sample(xs, seed=seed, generator=generator), x)

    def predict(self, x, *, seed: int | None = None, generator: torch.Generator | None = None
                ) -> RegressionPrediction:
        r"""Mixture of the ``T`` passes, each :math:`\mathcal{N}(\hat y_t, \tau^{-1})`;
        ``seed`` / ``generator`` as :meth:`MCDropout.sample`. With the selected dropout rate
        0 it is the one Gaussian :math:`\mathcal{N}(\hat y, \tau^{-1})` (zero epistemic
        variance: the network is deterministic)."""
        sampler = self._sampler()
        xs = as_features(x, num_features=self.n_features_in_,
                         owner="MCDropoutRegressor.predict")
        if self.dropout_ == 0:
            return RegressionPrediction.from_samples(self._deterministic(xs).double(),
                                                     1.0 / self.tau_)
        return sampler.predict(xs, seed=seed, generator=generator)
