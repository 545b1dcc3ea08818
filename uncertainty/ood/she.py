r"""Simplified Hopfield energy (Zhang, Fu, Luo, Zhao, Zhang & Wang, "Out-of-Distribution
Detection based on In-Distribution Data Patterns Memorization with Modern Hopfield Energy",
ICLR 2023).

The in-distribution training data is memorised as one *stored pattern* per class: the mean
penultimate feature of the training examples of class :math:`c` that the classifier gets
right,

.. math::

    S_c = \frac{1}{\lvert T_c \rvert} \sum_{i \in T_c} f(x_i), \qquad
    T_c = \{\, i : y_i = c,\ \arg\max_k z_k(x_i) = c \,\}.

A test input is compared with the pattern of its predicted class
:math:`\hat c = \arg\max_k z_k(x)` by the simplified Hopfield energy, the inner product
(large for in-distribution inputs), negated so that higher = more OOD:

.. math::

    s(x) = -\,f(x)^\top S_{\hat c}.

Fitting needs labels (to know which training examples are correctly classified); a class
with no correctly classified training example has no pattern and is refused.
"""

from __future__ import annotations

import torch

from dunno.validation import as_labels
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import ModelOutputs

__all__ = ["SHE", "she_patterns", "she_score"]


def she_patterns(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                 owner: str = "she_patterns") -> tuple[torch.Tensor, torch.Tensor]:
    r"""Stored patterns :math:`S_c`: the mean feature of the correctly classified examples
    of each class.

    Args:
        features: ``(N, F)`` penultimate features of in-distribution training data.
        logits: ``(N, C)`` the classifier's outputs on the same data.
        labels: ``(N,)`` class labels in ``[0, C)``.
        owner: named in error messages.

    Returns:
        ``(patterns (C, F) float64, counts (C,) int64)``, ``counts[c] = |T_c|``.
    """
    num_classes = logits.shape[1]
    labels = as_labels(labels, len(features), num_classes, rows_of="features")
    labels = labels.to(features.device)
    correct = logits.argmax(dim=1).to(features.device) == labels  # (N,)
    kept = labels[correct]
    counts = torch.bincount(kept, minlength=num_classes)  # (C,)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"{owner} stores the mean feature of the correctly classified training examples "
            f"of every class; classes {empty} have none (the classifier gets none of their "
            "training examples right). Fit on more data, or use a classifier that predicts "
            "every class."
        )
    f = features.to(torch.float64)[correct]  # (N_correct, F)
    sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64, device=f.device)
    sums.index_add_(0, kept, f)
    return sums / counts[:, None].to(torch.float64), counts


def she_score(features: torch.Tensor, logits: torch.Tensor,
              patterns: torch.Tensor) -> torch.Tensor:
    r"""Negative inner product :math:`-f^\top S_{\hat c}` with the stored pattern of the
    predicted class :math:`\hat c = \arg\max_k z_k`.

    Args:
        features: ``(N, F)`` penultimate features.
        logits: ``(N, C)`` classifier outputs (only their argmax is used).
        patterns: ``(C, F)`` stored patterns.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    f = features.to(torch.float64)  # (N, F)
    patterns = patterns.to(device=f.device, dtype=torch.float64)
    predicted = logits.argmax(dim=1).to(f.device)  # (N,)
    return -(f * patterns[predicted]).sum(dim=1)


class SHE(OODDetector):
    """Simplified-Hopfield-energy detector (Zhang et al. 2023), see the module docstring.

    ``fit`` reads the features, logits and labels of in-distribution training data.
    Parameters: ``model`` (the classifier; features from ``model.features`` or ``layer``),
    ``layer``.

    Attributes
    ----------
    patterns_ : Tensor ``(C, F)`` float64, the stored patterns :math:`S_c`;
    pattern_counts_ : Tensor ``(C,)``, how many correctly classified examples each averages.
    """

    name = "she"
    fit_needs_labels = True
    reference = "Zhang et al. 2023, ICLR"
    needs = frozenset({"features", "logits"})
    fit_needs = frozenset({"features", "logits"})
    _state_names = ("patterns_", "pattern_counts_")

    def _fit(self, outputs: ModelOutputs) -> None:
        owner = type(self).__name__
        if outputs.labels is None:
            raise ValueError(
                f"{owner} stores one pattern per class from the correctly classified training "
                "examples and needs labelled training data; the outputs have no labels."
            )
        self.patterns_, self.pattern_counts_ = she_patterns(
            outputs.features, outputs.logits, outputs.labels, owner)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        if outputs.logits.shape[1] != len(self.patterns_):
            raise ValueError(
                f"{type(self).__name__} was fitted on {len(self.patterns_)} classes; the "
                f"logits have {outputs.logits.shape[1]}."
            )
        if outputs.features.shape[1] != self.patterns_.shape[1]:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.patterns_.shape[1]} features per "
                f"example; the features have {outputs.features.shape[1]}."
            )
        return she_score(outputs.features, outputs.logits, self.patterns_)
