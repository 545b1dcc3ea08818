r"""Platt scaling (Platt, 1999) and beta calibration (Kull et al., 2017) for binary classifiers.

Both take the logits ``(N, 2)`` of a two-class model, whose log-odds for class 1 are
:math:`s = z_1 - z_0` and whose probability for class 1 is :math:`\sigma(s)`, and fit a
logistic regression of the label on a transform of :math:`s`:

.. math::

    \text{Platt:}\quad \operatorname{logit} \hat p = a\, s + b,
    \qquad
    \text{beta:}\quad \operatorname{logit} \hat p = a \log \sigma(s) - b \log(1 - \sigma(s)) + c .

Beta calibration's family contains the identity (:math:`a = b = 1, c = 0`) and, unlike
Platt's sigmoid, maps that are not symmetric around 1/2. As in Kull et al. the fit keeps
:math:`a, b \ge 0` (so the map is monotone): if the unconstrained fit gives a negative
:math:`a` (or :math:`b`) that coefficient is fixed to 0 and the others refitted.

Platt (1999) fits to smoothed targets :math:`t_+ = (N_+ + 1)/(N_+ + 2)` and
:math:`t_- = 1/(N_- + 2)` rather than 0/1, which keeps the fit finite on separable data;
``smooth_targets=False`` uses the raw labels. Fitting is full-batch L-BFGS in float64.

``transform`` returns the calibrated logits :math:`(0, \operatorname{logit} \hat p)`.

References: J. Platt, "Probabilistic outputs for support vector machines and comparisons to
regularized likelihood methods", 1999. M. Kull, T. Silva Filho, P. Flach, "Beta calibration:
a well-founded and easily implemented improvement on logistic calibration for binary
classifiers", AISTATS 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dunno.validation import check_bool, check_float, check_int
from uncertainty.calibration._base import Calibrator
from uncertainty.calibration._optim import minimize_lbfgs

__all__ = ["BetaCalibration", "PlattScaling"]


def _fit_logistic(features: torch.Tensor, targets: torch.Tensor, *, max_iter: int,
                  tol: float) -> tuple[torch.Tensor, float, int, bool]:
    """Unregularised logistic regression ``targets ~ features @ w + c`` (targets in [0, 1]).

    ``features (N, F)``. Each column is divided by its largest magnitude (when above 1) before
    the fit, and the weights scaled back after: the optimum is the same, but extreme inputs
    (|log-odds| of 1e4 and more) keep the solver's steps finite. Starts from ``w = 1, c = 0``
    on the scaled columns. Returns ``(w, c, n_iter, converged)``.
    """
    opts = {"dtype": torch.float64, "device": features.device}
    scale = features.abs().amax(dim=0).clamp(min=1.0)  # (F,)
    scaled = features / scale  # (N, F), entries in [-1, 1] where the column was larger
    w = torch.ones(features.shape[1], **opts).requires_grad_(True)
    c = torch.zeros((), **opts).requires_grad_(True)

    def loss_fn():
        return F.binary_cross_entropy_with_logits(scaled @ w + c, targets)

    n_iter, converged = minimize_lbfgs([w, c], loss_fn, max_iter=max_iter, tol=tol)
    return w.detach() / scale, float(c.detach()), n_iter, converged


class _Binary(Calibrator):
    binary_only = True

    def __init__(self, *, max_iter: int = 200, tol: float = 1e-8):
        self.max_iter = max_iter
        self.tol = tol

    def _validate_params(self) -> None:
        check_int(self.max_iter, "max_iter", self, low=1)
        check_float(self.tol, "tol", self, low=0.0, low_open=True)

    @staticmethod
    def _log_odds(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, 1] - logits[:, 0]  # (N,)

    @staticmethod
    def _as_logits(log_odds: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros_like(log_odds), log_odds], dim=1)  # (N, 2)


class PlattScaling(_Binary):
    r"""Platt scaling: :math:`\hat p(y=1) = \sigma(a s + b)` with :math:`s = z_1 - z_0`.

    Parameters
    ----------
    smooth_targets : bool
        Fit to Platt's smoothed targets (default) instead of the 0/1 labels.
    max_iter : int
        L-BFGS iterations (>= 1).
    tol : float
        Stop when the largest gradient entry is below ``tol``.

    Attributes
    ----------
    slope_ : float
        :math:`a`.
    intercept_ : float
        :math:`b`.
    n_iter_ : int
    converged_ : bool
    num_classes_ : int
        Always 2.
    """

    name = "platt"
    _state_names = ("slope_", "intercept_", "n_iter_", "converged_")

    def _state_spec(self, num_classes: int) -> dict:
        """:meth:`Calibrator._state_spec` plus this method's learned values."""
        return {**super()._state_spec(num_classes), "slope_": float, "intercept_": float}

    def __init__(self, *, smooth_targets: bool = True, max_iter: int = 200, tol: float = 1e-8):
        super().__init__(max_iter=max_iter, tol=tol)
        self.smooth_targets = smooth_targets

    def _validate_params(self) -> None:
        super()._validate_params()
        check_bool(self.smooth_targets, "smooth_targets", self)

    def _fit(self, logits, labels):
        y = labels.to(torch.float64)
        if self.smooth_targets:
            n_pos = float(y.sum())
            n_neg = float(len(y)) - n_pos
            y = torch.where(labels == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        s = self._log_odds(logits)[:, None]  # (N, 1)
        w, c, self.n_iter_, self.converged_ = _fit_logistic(
            s, y, max_iter=self.max_iter, tol=self.tol
        )
        self.slope_, self.intercept_ = float(w[0]), c

    def _transform(self, logits):
        return self._as_logits(self.slope_ * self._log_odds(logits) + self.intercept_)


class BetaCalibration(_Binary):
    r"""Beta calibration (the three-parameter "abm" family of Kull et al., 2017).

    :math:`\operatorname{logit} \hat p(y=1) = a \log \sigma(s) - b \log(1 - \sigma(s)) + c`
    with :math:`s = z_1 - z_0` and :math:`a, b \ge 0`.

    Parameters
    ----------
    max_iter : int
        L-BFGS iterations (>= 1).
    tol : float
        Stop when the largest gradient entry is below ``tol``.

    Attributes
    ----------
    a_, b_, c_ : float
        The fitted coefficients.
    n_iter_ : int
    converged_ : bool
    num_classes_ : int
        Always 2.
    """

    name = "beta"
    _state_names = ("a_", "b_", "c_", "n_iter_", "converged_")

    def _state_spec(self, num_classes: int) -> dict:
        """:meth:`Calibrator._state_spec` plus this method's learned values."""
        return {**super()._state_spec(num_classes), "a_": float, "b_": float, "c_": float}

    @staticmethod
    def _features(logits: torch.Tensor) -> torch.Tensor:
        s = logits[:, 1] - logits[:, 0]
        return torch.stack([F.logsigmoid(s), -F.logsigmoid(-s)], dim=1)  # (N, 2)

    def _fit(self, logits, labels):
        x = self._features(logits)
        y = labels.to(torch.float64)

        def fit(cols):
            return _fit_logistic(x[:, cols], y, max_iter=self.max_iter, tol=self.tol)

        w, c, n_iter, converged = fit([0, 1])
        a, b = float(w[0]), float(w[1])
        if a < 0:  # refit with a = 0
            w, c, n_iter, converged = fit([1])
            a, b = 0.0, max(float(w[0]), 0.0)
        elif b < 0:  # refit with b = 0
            w, c, n_iter, converged = fit([0])
            a, b = max(float(w[0]), 0.0), 0.0
        self.a_, self.b_, self.c_ = a, b, c
        self.n_iter_, self.converged_ = n_iter, converged

    def _transform(self, logits):
        x = self._features(logits)
        return self._as_logits(self.a_ * x[:, 0] + self.b_ * x[:, 1] + self.c_)
