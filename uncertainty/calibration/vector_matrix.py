r"""Vector and matrix scaling (Guo et al., 2017) with optional ODIR (Kull et al., 2019).

Both learn an affine map of the logits by minimising the mean NLL on a calibration set:

.. math::

    \text{matrix scaling:}\quad \tilde z = W z + b,\qquad W \in \mathbb{R}^{C \times C},
    \qquad
    \text{vector scaling:}\quad \tilde z = w \odot z + b,\qquad w \in \mathbb{R}^{C},

    \min_{W, b}\; -\frac{1}{N} \sum_i \log \operatorname{softmax}(W z_i + b)_{y_i}
    \;+\; \frac{\lambda}{C (C - 1)} \sum_{j \ne k} W_{jk}^2
    \;+\; \frac{\mu}{C} \sum_k b_k^2 .

The last two terms are the *off-diagonal and intercept regularisation* (ODIR) of Kull et al.
(2019): they shrink matrix scaling towards vector scaling (and its intercepts towards 0)
without penalising the diagonal, which keeps the map free to rescale confidence.
``off_diagonal_reg = intercept_reg = 0`` (the default) is plain Guo et al. matrix scaling;
with :math:`C^2 + C` parameters it overfits small calibration sets, which is what ODIR is
for. Vector scaling has no off-diagonal weights, so only ``intercept_reg`` applies.
Unlike temperature scaling, neither map is guaranteed to keep the argmax.

The maps start at the identity (:math:`W = I`, :math:`w = 1`, :math:`b = 0`) and are fitted
with full-batch L-BFGS in float64 (deterministic); ``max_iter=0`` keeps the identity.

References: C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017. M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song,
P. Flach, "Beyond temperature scaling: Obtaining well-calibrated multi-class probabilities
with Dirichlet calibration", NeurIPS 2019.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dunno.validation import check_float, check_int
from uncertainty.calibration._base import Calibrator, tensor_on
from uncertainty.calibration._optim import minimize_lbfgs

__all__ = ["MatrixScaling", "VectorScaling"]


class MatrixScaling(Calibrator):
    r"""Matrix scaling: calibrated logits :math:`W z + b` (optionally ODIR-regularised).

    Parameters
    ----------
    off_diagonal_reg : float
        :math:`\lambda \ge 0`, the weight of the mean squared off-diagonal entry of :math:`W`.
    intercept_reg : float
        :math:`\mu \ge 0`, the weight of the mean squared intercept.
    max_iter : int
        L-BFGS iterations (>= 0; 0 keeps the identity map).
    tol : float
        Stop when the largest gradient entry is below ``tol``.

    Attributes
    ----------
    weight_ : Tensor, shape (C, C)
    bias_ : Tensor, shape (C,)
    n_iter_ : int
    converged_ : bool
    num_classes_ : int
    """

    name = "matrix"
    _state_names = ("weight_", "bias_", "n_iter_", "converged_")

    def _state_spec(self, num_classes: int) -> dict:
        """:meth:`Calibrator._state_spec` plus this method's learned values."""
        return {**super()._state_spec(num_classes), "weight_": (num_classes, num_classes),
                "bias_": (num_classes,)}

    def __init__(self, *, off_diagonal_reg: float = 0.0, intercept_reg: float = 0.0,
                 max_iter: int = 500, tol: float = 1e-7):
        self.off_diagonal_reg = off_diagonal_reg
        self.intercept_reg = intercept_reg
        self.max_iter = max_iter
        self.tol = tol

    def _validate_params(self) -> None:
        check_float(self.off_diagonal_reg, "off_diagonal_reg", self, low=0.0)
        check_float(self.intercept_reg, "intercept_reg", self, low=0.0)
        check_int(self.max_iter, "max_iter", self, low=0)
        check_float(self.tol, "tol", self, low=0.0, low_open=True)

    def _fit(self, logits, labels):
        c = logits.shape[1]
        opts = {"dtype": torch.float64, "device": logits.device}
        weight = torch.eye(c, **opts).requires_grad_(True)  # (C, C)
        bias = torch.zeros(c, **opts).requires_grad_(True)  # (C,)
        off = 1.0 - torch.eye(c, **opts)
        lam, mu = float(self.off_diagonal_reg), float(self.intercept_reg)

        def loss_fn():
            loss = F.cross_entropy(logits @ weight.T + bias, labels)
            if lam > 0:
                loss = loss + lam * (weight * off).square().sum() / (c * (c - 1))
            if mu > 0:
                loss = loss + mu * bias.square().mean()
            return loss

        self.n_iter_, self.converged_ = minimize_lbfgs(
            [weight, bias], loss_fn, max_iter=self.max_iter, tol=self.tol
        )
        self.weight_ = weight.detach().cpu()
        self.bias_ = bias.detach().cpu()

    def _transform(self, logits):
        return logits @ tensor_on(self.weight_, logits).T + tensor_on(self.bias_, logits)


class VectorScaling(Calibrator):
    r"""Vector scaling: calibrated logits :math:`w \odot z + b` (one scale and bias per class).

    Parameters
    ----------
    intercept_reg : float
        :math:`\mu \ge 0`, the weight of the mean squared intercept (ODIR's intercept term).
    max_iter : int
        L-BFGS iterations (>= 0; 0 keeps the identity map).
    tol : float
        Stop when the largest gradient entry is below ``tol``.

    Attributes
    ----------
    scale_ : Tensor, shape (C,)
    bias_ : Tensor, shape (C,)
    n_iter_ : int
    converged_ : bool
    num_classes_ : int
    """

    name = "vector"
    _state_names = ("scale_", "bias_", "n_iter_", "converged_")

    def _state_spec(self, num_classes: int) -> dict:
        """:meth:`Calibrator._state_spec` plus this method's learned values."""
        return {**super()._state_spec(num_classes), "scale_": (num_classes,),
                "bias_": (num_classes,)}

    def __init__(self, *, intercept_reg: float = 0.0, max_iter: int = 500, tol: float = 1e-7):
        self.intercept_reg = intercept_reg
        self.max_iter = max_iter
        self.tol = tol

    def _validate_params(self) -> None:
        check_float(self.intercept_reg, "intercept_reg", self, low=0.0)
        check_int(self.max_iter, "max_iter", self, low=0)
        check_float(self.tol, "tol", self, low=0.0, low_open=True)

    def _fit(self, logits, labels):
        c = logits.shape[1]
        opts = {"dtype": torch.float64, "device": logits.device}
        scale = torch.ones(c, **opts).requires_grad_(True)  # (C,)
        bias = torch.zeros(c, **opts).requires_grad_(True)  # (C,)
        mu = float(self.intercept_reg)

        def loss_fn():
            loss = F.cross_entropy(logits * scale + bias, labels)
            if mu > 0:
                loss = loss + mu * bias.square().mean()
            return loss

        self.n_iter_, self.converged_ = minimize_lbfgs(
            [scale, bias], loss_fn, max_iter=self.max_iter, tol=self.tol
        )
        self.scale_ = scale.detach().cpu()
        self.bias_ = bias.detach().cpu()

    def _transform(self, logits):
        return logits * tensor_on(self.scale_, logits) + tensor_on(self.bias_, logits)
