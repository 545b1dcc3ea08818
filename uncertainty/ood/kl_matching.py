r"""KL matching (Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt & Song, "Scaling
Out-of-Distribution Detection for Real-World Settings", ICML 2022).

Each class :math:`k` gets a *template*, the typical posterior of the in-distribution inputs
the classifier assigns to it,

.. math::

    d_k = \frac{1}{\lvert S_k \rvert} \sum_{i \in S_k} p(y \mid x_i), \qquad
    S_k = \{\, i : \arg\max_c p(c \mid x_i) = k \,\},

(the *predicted* class, so no labels are needed), and an input is scored by how far its
posterior is from the closest template,

.. math::

    s(x) = \min_k \operatorname{KL}\bigl[p(y \mid x) \,\Vert\, d_k\bigr]
         = \min_k \sum_c p_c \,(\log p_c - \log d_{k,c}),

with :math:`p = \operatorname{softmax}(z(x))`. The paper estimates the templates on
in-distribution validation data; here they come from the data ``fit`` is given (the
in-distribution training split in :func:`~uncertainty.ood.run_ood`, never OOD data). A class
that no fit example is predicted as has no template and takes no part in the minimum.
:math:`\log d_{k,c}` is computed in log space
(:math:`\operatorname{logsumexp}_{i \in S_k} \log p_c(x_i) - \log\lvert S_k\rvert`), so a
template entry never rounds to zero and the divergence stays finite.
"""

from __future__ import annotations

import math

import torch

from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import ModelOutputs

__all__ = ["KLMatching", "class_log_templates", "kl_matching_score"]


def class_log_templates(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Log-templates :math:`\log d_k` of the predicted classes of ``logits``.

    Args:
        logits: ``(N, C)`` classifier outputs of in-distribution data, ``N >= 1``.

    Returns:
        ``(log_templates (K, C) float64, classes (K,) int64)``: one row per class predicted
        at least once (``K <= C``), in increasing class order;
        ``log_templates[k] = log mean_{i: argmax z_i = classes[k]} softmax(z_i)``.
    """
    log_p = torch.log_softmax(logits.to(torch.float64), dim=1)  # (N, C)
    predicted = log_p.argmax(dim=1)  # (N,)
    classes = torch.unique(predicted)  # (K,), sorted
    rows = []
    for k in classes.tolist():
        members = log_p[predicted == k]  # (N_k, C)
        rows.append(torch.logsumexp(members, dim=0) - math.log(len(members)))
    return torch.stack(rows), classes


def kl_matching_score(logits: torch.Tensor, log_templates: torch.Tensor) -> torch.Tensor:
    r"""Smallest divergence :math:`\min_k \mathrm{KL}[\mathrm{softmax}(z) \Vert d_k]` to the
    templates.

    Args:
        logits: ``(N, C)`` raw classifier outputs.
        log_templates: ``(K, C)`` :math:`\log d_k` of ``K >= 1`` templates (each row the log
            of a probability vector, see :func:`class_log_templates`).

    Returns:
        ``(N,)`` float64 divergences in nats, :math:`\ge 0`; higher = more OOD.
    """
    log_p = torch.log_softmax(logits.to(torch.float64), dim=1)  # (N, C)
    p = log_p.exp()
    log_d = log_templates.to(device=p.device, dtype=torch.float64)  # (K, C)
    neg_entropy = (p * log_p).sum(dim=1, keepdim=True)  # (N, 1); 0 log 0 = 0 via underflow
    kl = neg_entropy - p @ log_d.T  # (N, K)
    return kl.amin(dim=1).clamp_min(0.0)


class KLMatching(OODDetector):
    """KL-matching detector (Hendrycks et al. 2022), see the module docstring.

    ``fit`` reads the logits of in-distribution data (no labels: templates are per predicted
    class). Parameters: ``model`` (the classifier), ``layer`` (unused: logits only).

    Attributes
    ----------
    log_templates_ : Tensor ``(K, C)`` float64, :math:`\\log d_k`;
    templates_ : Tensor ``(K, C)`` float64, :math:`d_k` (rows sum to 1);
    template_classes_ : Tensor ``(K,)`` int64, the class of each template.
    """

    name = "kl-matching"
    reference = "Hendrycks et al. 2022, ICML"
    needs = frozenset({"logits"})
    fit_needs = frozenset({"logits"})
    _state_names = ("log_templates_", "templates_", "template_classes_")

    def _fit(self, outputs: ModelOutputs) -> None:
        log_templates, classes = class_log_templates(outputs.logits)
        self.log_templates_ = log_templates
        self.templates_ = log_templates.exp()
        self.template_classes_ = classes

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return kl_matching_score(outputs.logits, self.log_templates_)
