"""Streaming accumulators: feed batches with ``update``, read the metrics with ``compute``.

* :class:`CalibrationAccumulator` keeps per-bin sums (counts, confidence sums, correct counts,
  and the class-wise ``(C, B)`` tables) plus the NLL / Brier / accuracy sums, so its memory is
  ``O(C * n_bins)`` whatever the data size. It covers the equal-width metrics; the equal-mass
  (adaptive) ECE needs all confidences at once and is one-shot only.
* :class:`OODAccumulator` stores the scores (float64) and ranks them at the end: exact metrics
  need every score.

``compute()`` returns the same dict as the one-shot :func:`~evaluation.metrics.calibration_metrics`
and :func:`~evaluation.metrics.ood_metrics` on the concatenated data: counts are exact
integers, and float sums differ from the one-shot ones only by summation order (relative
difference ~1e-15); the OOD metrics are bit-identical. ``merge(other)`` adds another
accumulator's state (e.g. from another process; ``state_dict()`` gives the arrays to reduce).
"""

from __future__ import annotations

import numpy as np

from dunno.validation import check_int, check_n_bins, check_scores

from ._binning import _classwise_equal_width_stats, _equal_width_edges, _top_label_stats
from .calibration import ReliabilityTable, _brier_sum, _metrics_from_sums, _nll_sum, _validate
from .ood import ood_metrics

__all__ = ["CalibrationAccumulator", "OODAccumulator"]


class CalibrationAccumulator:
    """Streaming equal-width calibration metrics for a ``num_classes``-way classifier.

    Example::

        acc = CalibrationAccumulator(num_classes=10)
        for x, y in loader:
            acc.update(model(x).softmax(-1), y)
        acc.compute()  # {'n': ..., 'accuracy': ..., 'nll': ..., 'ece': ..., ...}

    Args:
        num_classes: number of classes ``C`` (columns of ``probs``).
        n_bins: number of equal-width bins (default 15), binning as in
            :mod:`evaluation.metrics.calibration`.
    """

    def __init__(self, num_classes: int, n_bins: int = 15):
        self.num_classes = check_int(num_classes, "num_classes", "CalibrationAccumulator", low=2)
        self.n_bins = check_n_bins(n_bins, "CalibrationAccumulator",
                                   num_classes=self.num_classes)
        self.reset()

    def reset(self) -> CalibrationAccumulator:
        """Forget all data."""
        c, b = self.num_classes, self.n_bins
        self.n = 0
        self.n_correct = 0
        self.nll_sum = 0.0
        self.brier_sum = 0.0
        self.counts = np.zeros(b, dtype=np.int64)
        self.confidence_sums = np.zeros(b)
        self.correct_counts = np.zeros(b, dtype=np.int64)
        self.classwise_counts = np.zeros((c, b), dtype=np.int64)
        self.classwise_prob_sums = np.zeros((c, b))
        self.classwise_label_counts = np.zeros((c, b), dtype=np.int64)
        return self

    def update(self, probs, labels) -> CalibrationAccumulator:
        """Add a batch: ``probs`` ``(B, C)`` class probabilities, ``labels`` ``(B,)`` integer
        labels (validated as in the one-shot functions)."""
        p, y = _validate(probs, labels, "CalibrationAccumulator.update")
        if p.shape[1] != self.num_classes:
            raise ValueError(
                f"The 'probs' argument must have {self.num_classes} columns (the num_classes of "
                f"this CalibrationAccumulator); got shape {p.shape}."
            )
        counts, conf_sums, correct_counts = _top_label_stats(p, y, self.n_bins, "equal_width")[:3]
        cw_counts, cw_sums, cw_hits = _classwise_equal_width_stats(p, y, self.n_bins)
        self.n += p.shape[0]
        self.n_correct += int(correct_counts.sum())
        self.nll_sum += _nll_sum(p, y)
        self.brier_sum += _brier_sum(p, y)
        self.counts += counts
        self.confidence_sums += conf_sums
        self.correct_counts += correct_counts
        self.classwise_counts += cw_counts
        self.classwise_prob_sums += cw_sums
        self.classwise_label_counts += cw_hits
        return self

    def _require_data(self, what: str) -> None:
        if self.n == 0:
            raise ValueError(
                f"CalibrationAccumulator.{what}() needs data; call update(probs, labels) first."
            )

    def compute(self) -> dict[str, float]:
        """The metrics of all data seen so far: the dict of
        :func:`~evaluation.metrics.calibration_metrics`."""
        self._require_data("compute")
        return _metrics_from_sums(
            n=self.n,
            n_correct=self.n_correct,
            nll_sum=self.nll_sum,
            brier_sum=self.brier_sum,
            counts=self.counts,
            conf_sums=self.confidence_sums,
            correct_counts=self.correct_counts,
            classwise=(
                self.classwise_counts,
                self.classwise_prob_sums,
                self.classwise_label_counts,
            ),
        )

    def reliability_table(self) -> ReliabilityTable:
        """The top-label :class:`~evaluation.metrics.ReliabilityTable` of all data so far."""
        self._require_data("reliability_table")
        edges = _equal_width_edges(self.n_bins)
        return ReliabilityTable(
            edges[:-1].copy(),
            edges[1:].copy(),
            self.counts.copy(),
            self.confidence_sums.copy(),
            self.correct_counts.copy(),
            "equal_width",
        )

    def merge(self, other: CalibrationAccumulator) -> CalibrationAccumulator:
        """Add the state of ``other`` (same ``num_classes`` and ``n_bins``) to this one."""
        if not isinstance(other, CalibrationAccumulator):
            raise TypeError(f"Can only merge a CalibrationAccumulator; got {type(other).__name__}.")
        if (other.num_classes, other.n_bins) != (self.num_classes, self.n_bins):
            raise ValueError(
                "Can only merge a CalibrationAccumulator with the same num_classes and n_bins; "
                f"got ({other.num_classes}, {other.n_bins}) into "
                f"({self.num_classes}, {self.n_bins})."
            )
        return self._add_state(other.state_dict())

    _ARRAYS = (
        "counts",
        "confidence_sums",
        "correct_counts",
        "classwise_counts",
        "classwise_prob_sums",
        "classwise_label_counts",
    )
    _SCALARS = ("n", "n_correct", "nll_sum", "brier_sum")

    def state_dict(self) -> dict:
        """A copy of the state: ints / floats and numpy arrays, all additive across shards."""
        state = {name: getattr(self, name) for name in self._SCALARS}
        state.update({name: getattr(self, name).copy() for name in self._ARRAYS})
        state.update(num_classes=self.num_classes, n_bins=self.n_bins)
        return state

    def load_state_dict(self, state: dict) -> CalibrationAccumulator:
        """Replace the state by ``state`` (from :meth:`state_dict`)."""
        if (state.get("num_classes"), state.get("n_bins")) != (self.num_classes, self.n_bins):
            raise ValueError(
                "The state was saved by a CalibrationAccumulator with different num_classes / "
                "n_bins."
            )
        self.reset()
        return self._add_state(state)

    def _add_state(self, state: dict) -> CalibrationAccumulator:
        self.n += int(state["n"])
        self.n_correct += int(state["n_correct"])
        self.nll_sum += float(state["nll_sum"])
        self.brier_sum += float(state["brier_sum"])
        for name in self._ARRAYS:
            current = getattr(self, name)
            current += np.asarray(state[name], dtype=current.dtype).reshape(current.shape)
        return self

    def __repr__(self) -> str:
        return (
            f"CalibrationAccumulator(num_classes={self.num_classes}, n_bins={self.n_bins}, "
            f"n={self.n})"
        )


class OODAccumulator:
    """Streaming OOD metrics: collects in-distribution and OOD scores (float64) batch by batch.

    Example::

        acc = OODAccumulator()
        for x, _ in test_loader:
            acc.update(scores_in=detector.score(x))
        for x, _ in ood_loader:
            acc.update(scores_out=detector.score(x))
        acc.compute()  # {'auroc': ..., 'aupr_in': ..., 'fpr_at_95_tpr': ..., ...}
    """

    def __init__(self):
        self.reset()

    def reset(self) -> OODAccumulator:
        """Forget all scores."""
        self._in: list[np.ndarray] = []
        self._out: list[np.ndarray] = []
        return self

    @property
    def n_in(self) -> int:
        return int(sum(a.shape[0] for a in self._in))

    @property
    def n_out(self) -> int:
        return int(sum(a.shape[0] for a in self._out))

    def update(self, scores_in=None, scores_out=None) -> OODAccumulator:
        """Add a batch of in-distribution scores ``(B_in,)`` and/or OOD scores ``(B_out,)``
        (higher = more OOD; validated like the one-shot functions)."""
        if scores_in is None and scores_out is None:
            raise ValueError("OODAccumulator.update needs 'scores_in', 'scores_out' or both.")
        new_in = None if scores_in is None else check_scores(scores_in, "scores_in")
        new_out = None if scores_out is None else check_scores(scores_out, "scores_out")
        if new_in is not None:
            self._in.append(np.array(new_in, dtype=np.float64))  # own copy
        if new_out is not None:
            self._out.append(np.array(new_out, dtype=np.float64))
        return self

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """All scores so far, ``(scores_in (N_in,), scores_out (N_out,))``."""
        s_in = np.concatenate(self._in) if self._in else np.zeros(0)
        s_out = np.concatenate(self._out) if self._out else np.zeros(0)
        return s_in, s_out

    def compute(self) -> dict[str, float]:
        """The dict of :func:`~evaluation.metrics.ood_metrics` on all scores so far."""
        s_in, s_out = self.scores()
        if s_in.shape[0] == 0 or s_out.shape[0] == 0:
            raise ValueError(
                "OODAccumulator.compute() needs both in-distribution and OOD scores; got "
                f"{s_in.shape[0]} and {s_out.shape[0]}. Call update(scores_in=..., "
                "scores_out=...) first."
            )
        return ood_metrics(s_in, s_out)

    def merge(self, other: OODAccumulator) -> OODAccumulator:
        """Append the scores of ``other``."""
        if not isinstance(other, OODAccumulator):
            raise TypeError(f"Can only merge an OODAccumulator; got {type(other).__name__}.")
        s_in, s_out = other.scores()
        if s_in.shape[0]:
            self._in.append(s_in)
        if s_out.shape[0]:
            self._out.append(s_out)
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{'scores_in': (N_in,), 'scores_out': (N_out,)}`` float64 copies."""
        s_in, s_out = self.scores()
        return {"scores_in": s_in.copy(), "scores_out": s_out.copy()}

    def load_state_dict(self, state: dict) -> OODAccumulator:
        """Replace the scores by those in ``state`` (from :meth:`state_dict`)."""
        self.reset()
        for key, store in (("scores_in", self._in), ("scores_out", self._out)):
            arr = np.asarray(state[key], dtype=np.float64)
            if arr.shape[0]:
                store.append(check_scores(arr, key).copy())
        return self

    def __repr__(self) -> str:
        return f"OODAccumulator(n_in={self.n_in}, n_out={self.n_out})"
