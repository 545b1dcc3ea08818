r"""Isotonic regression calibration (Zadrozny & Elkan, 2002), one-vs-rest for multi-class.

For each class :math:`k` a non-decreasing step function :math:`f_k` is fitted by least
squares to the indicators :math:`[y_i = k]` as a function of the model's score for class
:math:`k` (pool-adjacent-violators, via :class:`sklearn.isotonic.IsotonicRegression`):

.. math::

    f_k = \arg\min_{f \text{ non-decreasing}} \sum_i \big([y_i = k] - f(s_{ik})\big)^2,
    \qquad
    \hat p_k(x) = \frac{\max(f_k(s_k(x)), \epsilon)}{\sum_j \max(f_j(s_j(x)), \epsilon)} .

The score is the log-softmax :math:`s_{ik} = \log \operatorname{softmax}(z_i)_k` in float64:
isotonic regression is invariant to monotone transforms of its input, and log-probabilities
keep resolution where float probabilities saturate at 1. Between the fitted thresholds the
map interpolates linearly, beyond them it is constant (scikit-learn's
``out_of_bounds="clip"``). The per-class outputs are floored at ``eps`` and renormalised
(Guo et al., 2017). :meth:`IsotonicCalibration.transform` returns log-probabilities.

References: B. Zadrozny, C. Elkan, "Transforming classifier scores into accurate multiclass
probability estimates", KDD 2002. C. Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017.
"""

from __future__ import annotations

import numpy as np
import torch

from dunno.validation import check_float
from uncertainty.calibration._base import Calibrator
from uncertainty.calibration.histogram import renormalise

__all__ = ["IsotonicCalibration"]


class IsotonicCalibration(Calibrator):
    r"""One-vs-rest isotonic regression on the log-softmax scores, renormalised.

    Parameters
    ----------
    eps : float
        Floor of each one-vs-rest probability before renormalising, in (0, 0.5].

    Attributes
    ----------
    x_thresholds_ : list of Tensor
        Per class, the increasing scores at which the fitted step function is known.
    y_thresholds_ : list of Tensor
        Per class, the fitted values at those scores (in [0, 1]).
    num_classes_ : int
    """

    name = "isotonic"
    _state_names = ("x_thresholds_", "y_thresholds_")

    def _state_spec(self, num_classes: int) -> dict:
        """:meth:`Calibrator._state_spec` plus this method's learned values."""
        return {**super()._state_spec(num_classes), "x_thresholds_": ("tensors", num_classes),
                "y_thresholds_": ("tensors", num_classes)}

    def __init__(self, *, eps: float = 1e-6):
        self.eps = eps

    def _validate_params(self) -> None:
        check_float(self.eps, "eps", self, low=0.0, high=0.5, low_open=True)

    def _fit(self, logits, labels):
        from sklearn.isotonic import IsotonicRegression  # imported on use: sklearn is slow

        scores = torch.log_softmax(logits, dim=1).cpu().numpy()  # (N, C)
        y = labels.cpu().numpy()
        xs, ys = [], []
        for k in range(scores.shape[1]):
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True,
                                     out_of_bounds="clip")
            iso.fit(scores[:, k], (y == k).astype(np.float64))
            xs.append(torch.from_numpy(np.asarray(iso.X_thresholds_, dtype=np.float64)))
            ys.append(torch.from_numpy(np.asarray(iso.y_thresholds_, dtype=np.float64)))
        self.x_thresholds_, self.y_thresholds_ = xs, ys

    def _transform(self, logits):
        scores = torch.log_softmax(logits, dim=1).cpu().numpy()  # (N, C)
        q = np.empty_like(scores)
        for k, (xk, yk) in enumerate(zip(self.x_thresholds_, self.y_thresholds_, strict=True)):
            q[:, k] = np.interp(scores[:, k], xk.numpy(), yk.numpy())
        q = torch.from_numpy(q).to(logits.device)
        return renormalise(q, float(self.eps))
