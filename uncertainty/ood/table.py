"""The result of the OOD suite (:func:`uncertainty.ood.run_ood`): one row per detector x OOD
set, with the means over the sets, pivots and text / Markdown renderings.

Metric columns (:mod:`evaluation.metrics.ood`; higher score = more OOD, in-distribution is the
positive class of AUPR-In): ``auroc``, ``aupr_in``, ``aupr_out``, ``fpr95`` (the fraction of
OOD samples accepted at the threshold that accepts 95% of in-distribution samples) and
``detection_error``, all fractions here; every rendering (:meth:`OODTable.report_tables`,
the text and Markdown tables, ``dunno ood``) shows them in percent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dunno.tables import Column, Table, metric_column, render_table

__all__ = ["COLUMNS", "METRICS", "OODTable"]

#: Metric columns of :attr:`OODTable.rows`, in table order.
METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error")
#: The columns of :attr:`OODTable.rows` (and of ``ood.csv``).
COLUMNS = ("detector", "ood_set", *METRICS, "n_in", "n_out")


@dataclass
class OODTable:
    """What :func:`run_ood` measured.

    Attributes
    ----------
    in_data : str
        The in-distribution dataset spec.
    out_sets : list of str
        OOD set names, in the order given.
    detectors : list of str
        Detector names, in the order run.
    rows : list of dict
        One row per (detector, OOD set) with the keys of :data:`COLUMNS`.
    accuracy : float or None
        In-distribution test accuracy of the model (None for unlabelled test data).
    fit_split, n_fit, n_test : str, int, int
        What the detectors were fitted on, and the in-distribution test size.
    timings : dict
        Seconds: ``forward`` (per dataset, shared classifier passes), ``density`` (per
        dataset, shared density-model passes, when one ran), ``fit`` and ``score`` (per
        detector), ``shared_forward_total`` (all shared passes) and ``total`` (the whole run);
        ``shared_searches`` counts the kNN searches made once for several detectors
        (:mod:`uncertainty.ood.shared_search`).
    own_passes : list of str
        Detectors that ran their own passes over the inputs (ODIN, RaPP, ...).
    params : dict
        Each detector's hyper-parameters.
    scores : dict
        ``scores[detector]["in"]`` and ``scores[detector][ood_set]``: ``(N,)`` float64 CPU
        tensors (not in :meth:`to_dict`).
    """

    in_data: str
    out_sets: list[str]
    detectors: list[str]
    rows: list[dict[str, Any]]
    accuracy: float | None
    fit_split: str
    n_fit: int
    n_test: int
    timings: dict[str, Any]
    own_passes: list[str]
    params: dict[str, dict[str, Any]]
    scores: dict[str, dict[str, torch.Tensor]] = field(repr=False, default_factory=dict)

    def mean_by_detector(self) -> dict[str, dict[str, float]]:
        """Each detector's metrics averaged over the OOD sets: ``{detector: {metric: mean}}``."""
        out = {}
        for det in self.detectors:
            rows = [r for r in self.rows if r["detector"] == det]
            out[det] = {m: sum(r[m] for r in rows) / len(rows) for m in METRICS}
        return out

    def table_rows(self, include_mean: bool = True) -> list[dict[str, Any]]:
        """The long table: every (detector, set) row, then a ``mean`` row per detector."""
        rows = []
        means = self.mean_by_detector()
        for det in self.detectors:
            rows.extend(r for r in self.rows if r["detector"] == det)
            if include_mean and len(self.out_sets) > 1:
                rows.append({"detector": det, "ood_set": "mean", **means[det]})
        return rows

    def pivot(self, metric: str = "auroc", scale: float = 100.0) -> list[dict[str, Any]]:
        """One row per detector, one column per OOD set plus ``mean``: ``metric * scale``."""
        if metric not in METRICS:
            raise ValueError(f"The 'metric' argument must be one of {METRICS}. Got {metric!r}.")
        means = self.mean_by_detector()
        out = []
        for det in self.detectors:
            row: dict[str, Any] = {"detector": det}
            for r in self.rows:
                if r["detector"] == det:
                    row[r["ood_set"]] = r[metric] * scale
            row["mean"] = means[det][metric] * scale
            out.append(row)
        return out

    def best(self, metric: str = "auroc") -> dict[str, str]:
        """The best detector per OOD set (highest AUROC / AUPR, lowest FPR / error)."""
        lower = metric in ("fpr95", "detection_error")
        out = {}
        for name in self.out_sets:
            rows = [r for r in self.rows if r["ood_set"] == name]
            pick = min if lower else max
            out[name] = pick(rows, key=lambda r: r[metric])["detector"]
        return out

    def report_tables(self) -> list[Table]:
        """The tables every rendering shows (:mod:`dunno.tables`, metrics in percent): the
        long table ``ood`` (every metric per detector x set, with the means) and the pivot
        ``ood_auroc`` (AUROC per detector x set, and the mean)."""
        long = Table("ood", [Column("detector", "detector"), Column("ood_set", "OOD set"),
                             *(metric_column(m) for m in METRICS)],
                     self.table_rows(), index=("detector", "ood_set"))
        sets = [*self.out_sets, "mean"]
        pivot = Table("ood_auroc", [Column("detector", "detector"),
                                    *(Column(name, name, "%", 2, 100.0) for name in sets)],
                      self.pivot("auroc", scale=1.0), index=("detector",), title="AUROC (%)")
        return [long, pivot]

    def table(self) -> str:
        """The long table (with means; metrics in percent) as aligned text."""
        return render_table(self.report_tables()[0], "table")

    def to_markdown(self, metric: str | None = None) -> str:
        """Markdown: the ``metric`` pivot in percent (detector x set) when given, else the
        long table of every metric in percent."""
        if metric is None:
            return render_table(self.report_tables()[0], "md")
        if metric not in METRICS:
            raise ValueError(f"The 'metric' argument must be one of {METRICS}. Got {metric!r}.")
        columns = [Column("detector", "detector"),
                   *(Column(name, name, "%", 2, 100.0) for name in [*self.out_sets, "mean"])]
        return render_table(Table(f"ood_{metric}", columns, self.pivot(metric, scale=1.0),
                                  index=("detector",)), "md")

    def to_dict(self) -> dict[str, Any]:
        """Everything but the scores, JSON-ready."""
        return {
            "in_data": self.in_data,
            "out_sets": self.out_sets,
            "detectors": self.detectors,
            "accuracy": self.accuracy,
            "fit_split": self.fit_split,
            "n_fit": self.n_fit,
            "n_test": self.n_test,
            "rows": self.rows,
            "mean": self.mean_by_detector(),
            "best_auroc": self.best("auroc"),
            "timings": self.timings,
            "own_passes": self.own_passes,
            "params": self.params,
        }

    def summary(self) -> str:
        """What the run measured, as text: the fit and test data, the long table, the AUROC
        pivot (%) and the time of the shared passes."""
        acc = "n/a" if self.accuracy is None else f"{100 * self.accuracy:.2f}%"
        t = self.timings
        return "\n".join([
            f"OOD detection: in-distribution '{self.in_data}' (test n={self.n_test}, accuracy "
            f"{acc}); detectors fitted on '{self.fit_split}' (n={self.n_fit})",
            self.table(), "", "AUROC (%):", render_table(self.report_tables()[1]), "",
            f"shared forward passes {t['shared_forward_total']:.1f}s; total {t['total']:.1f}s; "
            f"own passes: {', '.join(self.own_passes) or 'none'}",
        ])

