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

Fitting needs labels (to know which training examples are correctly classified).

**A class the classifier never gets right.** The paper's :math:`S_c` is undefined when
:math:`T_c` is empty (its code would give NaN): a briefly trained network, or a small fit
subset of a dataset with many classes (ImageNet with 5 examples per class at 76% accuracy
leaves a class with none about once in 1250 classes). Such a class's pattern is the mean
feature of *all* its training examples instead, and the class is listed in
``fallback_classes_`` (empty for every classifier that gets each class right at least once,
where the score is exactly the paper's). A class with no training example at all is refused.
"""

from __future__ import annotations

import torch

from dunno.validation import as_labels
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import ModelOutputs

__all__ = ["SHE", "she_patterns", "she_score"]


def she_patterns(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                 owner: str = "she_patterns") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Stored patterns :math:`S_c`: the mean feature of the correctly classified examples
    of each class (of all its examples for a class with none correctly classified).

    Args:
        features: ``(N, F)`` penultimate features of in-distribution training data.
        logits: ``(N, C)`` the classifier's outputs on the same data.
        labels: ``(N,)`` class labels in ``[0, C)``; every class needs an example.
        owner: named in error messages.

    Returns:
        ``(patterns (C, F) float64, counts (C,) int64, fallback (C,) bool)``: ``counts[c]``
        examples averaged, :math:`|T_c|` where ``fallback[c]`` is False, all examples of
        class ``c`` where it is True (:math:`T_c` empty).
    """
    num_classes = logits.shape[1]
    labels = as_labels(labels, len(features), num_classes, rows_of="features")
    labels = labels.to(features.device)
    present = torch.bincount(labels, minlength=num_classes)  # (C,)
    empty = torch.nonzero(present == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"{owner} stores one pattern per class and needs at least one training example of "
            f"every class; classes {empty} have none."
        )
    correct = logits.argmax(dim=1).to(features.device) == labels  # (N,)
    fallback = torch.bincount(labels[correct], minlength=num_classes) == 0  # (C,)
    kept = correct | fallback[labels]  # T_c, or every example of a class with T_c empty
    f = features.to(torch.float64)[kept]  # (N_kept, F)
    counts = torch.bincount(labels[kept], minlength=num_classes)  # (C,)
    sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64, device=f.device)
    sums.index_add_(0, labels[kept], f)
    return sums / counts[:, None].to(torch.float64), counts, fallback


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
    pattern_counts_ : Tensor ``(C,)``, how many examples each averages;
    fallback_classes_ : list of int, the classes without a correctly classified training
    example, whose pattern averages all their examples (see the module docstring).
    """

    name = "she"
    fit_needs_labels = True
    reference = "Zhang et al. 2023, ICLR"
    needs = frozenset({"features", "logits"})
    fit_needs = frozenset({"features", "logits"})
    _state_names = ("patterns_", "pattern_counts_", "fallback_classes_")

    def _fit(self, outputs: ModelOutputs) -> None:
        owner = type(self).__name__
        if outputs.labels is None:
            raise ValueError(
                f"{owner} stores one pattern per class from the correctly classified training "
                "examples and needs labelled training data; the outputs have no labels."
            )
        self.patterns_, self.pattern_counts_, fallback = she_patterns(
            outputs.features, outputs.logits, outputs.labels, owner)
        self.fallback_classes_ = torch.nonzero(fallback).flatten().tolist()

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
