r"""Mahalanobis distance to the closest class mean (Lee, Lee, Lee & Shin, "A Simple Unified
Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018).

Fit class means :math:`\mu_c` and one shared (tied) covariance :math:`\Sigma` of the
penultimate features :math:`f(x)` of the training data (maximum likelihood, float64):

.. math::

    \mu_c = \frac{1}{N_c}\sum_{y_i = c} f(x_i), \qquad
    \Sigma = \frac1N \sum_i (f(x_i) - \mu_{y_i})(f(x_i) - \mu_{y_i})^\top,

optionally shrunk towards a multiple of the identity,
:math:`\Sigma_\alpha = (1-\alpha)\Sigma + \alpha \tfrac{\operatorname{tr}\Sigma}{F} I`.
ReLU features often have a singular :math:`\Sigma` (units that never fire, more feature
dimensions than examples), so it is inverted by default with the **pseudo-inverse**
:math:`\Sigma^+` of Lee et al.'s reference code (``deep_Mahalanobis_detector``:
scikit-learn's ``EmpiricalCovariance(assume_centered=False)`` fitted on the class-centred
features, whose ``precision_`` is :func:`scipy.linalg.pinvh`; see
:func:`~uncertainty.ood._gaussian.pinv_whitening`): directions without training variance
add nothing to the distance. ``inverse="jitter"`` keeps the earlier rule instead: the
smallest relative diagonal jitter :math:`\epsilon\,\tfrac{\operatorname{tr}\Sigma}{F}`,
:math:`\epsilon \in \{0, 10^{-12}, \dots, 1\}`, that makes :math:`\Sigma` positive definite
(a unit that never fired in training then contributes :math:`f_j^2 / (10^{-12}\,\bar\sigma^2)`,
so scores of inputs that do fire it reach :math:`10^{10}` and more).
The score is the squared distance to the closest class,

.. math::

    s(x) = \min_c\, (f(x) - \mu_c)^\top \Sigma_\alpha^{+} (f(x) - \mu_c)

(Lee et al.'s confidence :math:`M(x)` is :math:`-s(x)`). With ``epsilon > 0`` the input is
first pre-processed to move it towards its closest class,
:math:`\tilde x = x - \varepsilon \operatorname{sign} \nabla_x s(x)`, and :math:`s(\tilde x)`
is returned (Lee et al., Eq. 4); that needs gradients through the model, so it makes its own
passes. The paper's ensemble over layers with a logistic regression fitted on OOD validation
data is not included (it would use OOD data).
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_choice, check_float
from uncertainty.ood._base import OODDetector
from uncertainty.ood._gaussian import (
    INVERSES,
    num_classes_of,
    pinv_whitening,
    projected_sq_distances,
    tied_gaussian,
)
from uncertainty.ood.outputs import LayerSpec, ModelOutputs, forward_outputs, model_device

__all__ = ["Mahalanobis", "mahalanobis_score"]


def mahalanobis_score(
    features: torch.Tensor, means: torch.Tensor, covariance: torch.Tensor
) -> torch.Tensor:
    r"""Squared Mahalanobis distance to the closest class mean,
    :math:`\min_c (f - \mu_c)^\top \Sigma^{+} (f - \mu_c)`, with :math:`\Sigma^{+}` the
    pseudo-inverse (:func:`scipy.linalg.pinvh`'s cutoff; the inverse when :math:`\Sigma` is
    positive definite).

    Args:
        features: ``(N, F)`` features.
        means: ``(C, F)`` class means.
        covariance: ``(F, F)`` positive semi-definite shared covariance.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    means = means.to(torch.float64)
    whitening, _ = pinv_whitening(covariance.to(means.device))
    return projected_sq_distances(features, means, whitening).amin(dim=1)


class Mahalanobis(OODDetector):
    """Mahalanobis detector (Lee et al. 2018), see the module docstring.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier (features from ``model.features`` or ``layer``).
    shrinkage : float
        :math:`\\alpha \\in [0, 1]`, shrinkage of the covariance towards
        :math:`\\frac{\\mathrm{tr}\\,\\Sigma}{F} I` (default 0: the plain estimate).
    epsilon : float
        Input pre-processing step :math:`\\varepsilon \\ge 0` in input units (default 0: none).
        Read only when scoring.
    inverse : {"pinv", "jitter"}
        How :math:`\\Sigma_\\alpha` is inverted: the pseudo-inverse of Lee et al.'s code
        (default) or Cholesky with the smallest working relative jitter (see the module
        docstring).
    layer : str or list of str, optional
        Module whose output are the features.

    Attributes
    ----------
    means_ : Tensor ``(C, F)``; covariance_ : Tensor ``(F, F)`` (shrunk; plus the jitter);
    precision_ : Tensor ``(F, F)``, :math:`\\Sigma_\\alpha^{+}` (as scikit-learn's
    ``precision_``); whitening_ : Tensor ``(F, r)`` with ``precision_ = W W^T``; rank_ : int
    (``r``, the directions kept); jitter_ : float (absolute jitter added; 0 for ``"pinv"``).
    """

    name = "mahalanobis"
    fit_needs_labels = True
    reference = "Lee et al. 2018, NeurIPS"
    fit_needs = frozenset({"features"})
    _state_names = ("means_", "covariance_", "precision_", "whitening_")
    score_time_params = ("epsilon",)

    def __init__(self, model: nn.Module | None = None, *, shrinkage: float = 0.0,
                 epsilon: float = 0.0, inverse: str = "pinv", layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.shrinkage = shrinkage
        self.epsilon = epsilon
        self.inverse = inverse

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        """``{"features"}``, or ``{"input"}`` with input pre-processing."""
        return frozenset({"input"}) if self.epsilon else frozenset({"features"})

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        check_float(self.shrinkage, "shrinkage", owner, low=0.0, high=1.0)
        check_float(self.epsilon, "epsilon", owner, low=0.0)
        check_choice(self.inverse, "inverse", owner, INVERSES)

    def _fit(self, outputs: ModelOutputs) -> None:
        owner = type(self).__name__
        fit = tied_gaussian(outputs.features, outputs.labels,
                            num_classes_of(outputs.logits, outputs.labels, owner), owner,
                            shrinkage=self.shrinkage, inverse=self.inverse)
        self.means_ = fit["means"]
        self.covariance_ = fit["covariance"]
        self.whitening_ = fit["whitening"]
        self.precision_ = self.whitening_ @ self.whitening_.T
        self.rank_ = fit["rank"]
        self.jitter_ = fit["jitter"]

    def _distances(self, feats: torch.Tensor) -> torch.Tensor:
        return projected_sq_distances(feats, self.means_.to(feats.device),
                                      self.whitening_.to(feats.device)).amin(dim=1)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        if not self.epsilon:
            return self._distances(outputs.features)
        self._require_model(self.needs, "score")
        return self._score_preprocessed(outputs.inputs)

    def _score_preprocessed(self, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        model = self.model
        device = model_device(model)
        was_training = model.training
        model.eval()
        scores = []
        try:
            for start in range(0, len(inputs), batch_size):
                x = inputs[start:start + batch_size].to(device).detach().requires_grad_(True)
                with torch.enable_grad():
                    _, feats = forward_outputs(model, x, needs=("features",), layer=self.layer)
                    dist = self._distances(feats)  # (B,)
                    (grad,) = torch.autograd.grad(dist.sum(), x)
                x_tilde = (x - self.epsilon * grad.sign()).detach()
                with torch.no_grad():
                    _, feats = forward_outputs(model, x_tilde, needs=("features",),
                                               layer=self.layer)
                    scores.append(self._distances(feats))
        finally:
            model.train(was_training)
        return torch.cat(scores)
