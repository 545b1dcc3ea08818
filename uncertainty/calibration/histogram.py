r"""Histogram binning (Zadrozny & Elkan, 2001), one-vs-rest for multi-class.

For each class :math:`k` the softmax probabilities :math:`p_{ik}` of the calibration set are
split into :math:`M` bins :math:`B_{k1}, \dots, B_{kM}` with edges
:math:`0 = a_0 < a_1 < \dots < a_M = 1` (bins :math:`(a_{m-1}, a_m]`, 0 in the first), and
each bin predicts the fraction of its examples that belong to class :math:`k`:

.. math::

    \theta_{km} = \frac{\sum_{i : p_{ik} \in B_{km}} [y_i = k]}{|\{i : p_{ik} \in B_{km}\}|},
    \qquad
    \hat p_k(x) = \frac{\max(\theta_{k, m_k(x)}, \epsilon)}
                        {\sum_j \max(\theta_{j, m_j(x)}, \epsilon)},

where :math:`m_k(x)` is the bin of :math:`p_k(x)`. The one-vs-rest estimates are floored at
``eps`` (so a bin without positives does not give probability 0 and infinite NLL) and
renormalised to sum to 1, as in Guo et al. (2017). ``strategy="uniform"`` uses equal-width bins
(Guo et al.); ``strategy="quantile"`` equal-mass bins from the calibration set's quantiles
(Zadrozny & Elkan's choice). A bin that receives no calibration example predicts its midpoint.

:meth:`HistogramBinning.transform` returns log-probabilities.

References: B. Zadrozny, C. Elkan, "Obtaining calibrated probability estimates from decision
trees and naive Bayesian classifiers", ICML 2001. C. Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017.
"""

from __future__ import annotations

import torch

from dunno.validation import check_choice, check_float, check_n_bins
from uncertainty.calibration._base import Calibrator, tensor_on

__all__ = ["HistogramBinning"]


def renormalise(q: torch.Tensor, eps: float) -> torch.Tensor:
    """Floor one-vs-rest probabilities ``q (N, C)`` at ``eps``; return row-normalised logs."""
    q = q.clamp(min=eps, max=1.0)
    return q.log() - q.sum(dim=1, keepdim=True).log()


class HistogramBinning(Calibrator):
    r"""One-vs-rest histogram binning of the softmax probabilities.

    Parameters
    ----------
    n_bins : int
        Bins per class, in ``[1, MAX_BINS]`` with ``C * n_bins <= MAX_BIN_CELLS``
        (:mod:`dunno.validation`).
    strategy : {"uniform", "quantile"}
        Equal-width or equal-mass bins.
    eps : float
        Floor of each one-vs-rest probability before renormalising, in (0, 1/C].

    Attributes
    ----------
    bin_edges_ : Tensor, shape (C, n_bins + 1)
        Per-class edges, from 0 to 1.
    bin_values_ : Tensor, shape (C, n_bins)
        Per-class, per-bin frequency of the class.
    bin_counts_ : Tensor, shape (C, n_bins)
        Calibration examples per bin.
    num_classes_ : int
    """

    name = "histogram"
    _state_names = ("bin_edges_", "bin_values_", "bin_counts_")

    def _state_spec(self, num_classes: int) -> dict:
        """:meth:`Calibrator._state_spec` plus this method's learned values."""
        c, m = num_classes, self.n_bins
        return {**super()._state_spec(c), "bin_edges_": (c, m + 1), "bin_values_": (c, m),
                "bin_counts_": (c, m)}

    def __init__(self, *, n_bins: int = 15, strategy: str = "uniform", eps: float = 1e-6):
        self.n_bins = n_bins
        self.strategy = strategy
        self.eps = eps

    def _validate_params(self) -> None:
        check_n_bins(self.n_bins, self)
        check_choice(self.strategy, "strategy", self, ("uniform", "quantile"))
        check_float(self.eps, "eps", self, low=0.0, high=0.5, low_open=True)

    @staticmethod
    def _bin_index(probs: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """Bin of every ``probs (N, C)`` entry under per-class ``edges (C, M + 1)``: (lo, hi]."""
        inner = edges[:, 1:-1].contiguous()  # (C, M - 1)
        return torch.searchsorted(inner, probs.T.contiguous(), side="left").T  # (N, C)

    def _fit(self, logits, labels):
        c, m = logits.shape[1], self.n_bins
        check_n_bins(m, self, num_classes=c)  # (C, n_bins) state
        if self.eps > 1.0 / c:  # every class floored above 1/C: the output tends to uniform
            raise ValueError(f"The 'eps' parameter of HistogramBinning must be in (0, 1/C] = "
                             f"(0, {1.0 / c:g}] for C = {c} classes. Got {self.eps!r} instead.")
        probs = torch.softmax(logits, dim=1).cpu()  # (N, C)
        if self.strategy == "uniform":
            edges = torch.linspace(0.0, 1.0, m + 1, dtype=torch.float64).repeat(c, 1)
        else:
            levels = torch.linspace(0.0, 1.0, m + 1, dtype=torch.float64)
            edges = torch.quantile(probs.T, levels, dim=1).T.contiguous()  # (C, M + 1)
            edges[:, 0], edges[:, -1] = 0.0, 1.0
            edges = torch.cummax(edges, dim=1).values
        index = self._bin_index(probs, edges)  # (N, C)
        onehot = torch.nn.functional.one_hot(labels.cpu(), c).to(torch.float64)  # (N, C)
        counts = torch.zeros(c, m, dtype=torch.float64)
        hits = torch.zeros(c, m, dtype=torch.float64)
        counts.scatter_add_(1, index.T, torch.ones_like(onehot.T))
        hits.scatter_add_(1, index.T, onehot.T)
        midpoints = 0.5 * (edges[:, 1:] + edges[:, :-1])
        values = torch.where(counts > 0, hits / counts.clamp(min=1), midpoints)
        self.bin_edges_, self.bin_values_, self.bin_counts_ = edges, values, counts

    def _transform(self, logits):
        probs = torch.softmax(logits, dim=1)
        edges = tensor_on(self.bin_edges_, logits)
        index = self._bin_index(probs, edges)  # (N, C)
        values = tensor_on(self.bin_values_, logits)
        q = values.T.gather(0, index)  # (N, C): q[i, k] = values[k, index[i, k]]
        return renormalise(q, float(self.eps))
