r"""Choosing an OOD detector from in-distribution data alone.

A detector chosen by its scores on OOD test sets is tuned to them, and its numbers on those
sets are optimistic. :func:`select_detector` sees **only in-distribution data** -- a fit split
and a disjoint held-out split -- and the synthetic outliers that
:mod:`dunno.data.outliers` makes from the held-out images (permuted pixels, shuffled patches,
eroded and dilated strokes, pixel noise, overlaid images, spliced halves). Its signature has
no place for OOD data.

**Candidates.** The *components* are the registry's classifier detectors that apply to the
model (:func:`component_candidates`: every detector that ``"all"`` would run, except
``combined`` itself and the density-based ones), each with its defaults and with the
:attr:`~uncertainty.ood._base.OODDetector.variants` it declares (RaPP's SAP next to its NAP).
The candidates are every single component and every set of 2..``max_size`` components
under each rule of ``reductions`` (Fisher's sum or the maximum of the conformal
:math:`-\log p`), i.e. exactly the detectors ``Combined(model, components=..., reduce=...)``
that :mod:`uncertainty.ood.combined` builds; a single component is ``Combined`` with one
component, a monotone map of that detector's own score.

**Protocol.** One :class:`~uncertainty.ood.combined.Combined` over all components is fitted
on the fit split: its seeded ``holdout`` split fits every component on one part and keeps the
other's scores as the p-value references (as every ``Combined`` with the same ``seed`` and
``holdout`` does, so each candidate's numbers are those of the detector it names). The
held-out split is scored as in-distribution, and each outlier kind, made from the held-out
images with its own seed, as OOD; a candidate's :math:`-\log p` per example is the sum
(Fisher) or maximum of its components'. Each candidate gets the AUROC (:func:`evaluation.
metrics.ood.auroc`) of the held-out split against every kind.

**Rule** (:func:`rank_candidates`): the best *worst case* over the kinds wins. Worst cases
that differ by less than their sampling error are ties: candidates whose worst case is within
``tie`` of the best are ordered by their mean over the kinds, then by fewer components. By
default ``tie`` is one standard error of the best worst-case AUROC
(:func:`evaluation.metrics.ood.auroc_standard_error`, Hanley & McNeil 1982: about 0.001 near
0.99 and 0.005 near 0.75 with 5000 + 5000 examples). :func:`merge_selections` applies the
same rule over several models' selections at once (the worst case over every model and kind).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dunno.data import ArrayDataset, DatasetInfo
from dunno.data.outliers import OUTLIER_KINDS, make_outliers
from dunno.inputs import as_arrays, model_dtype
from dunno.reporting import markdown_table
from dunno.validation import check_float, check_int, check_seed
from evaluation.metrics.ood import auroc, auroc_standard_error
from uncertainty.ood.combined import REDUCTIONS, Combined, ComponentSpec, component_label
from uncertainty.ood.outputs import LayerSpec, extract_outputs
from uncertainty.ood.registry import DEFAULT_DETECTOR, DETECTORS

__all__ = ["Selection", "candidate_label", "component_candidates", "label_free",
           "merge_selections", "rank_candidates", "score_candidates", "select_detector"]

OWNER = "select_detector"


def candidate_label(components: tuple[ComponentSpec, ...], reduce: str | None) -> str:
    """``"knn"`` for one component; ``"fisher(knn, rapp)"`` for several under ``reduce``."""
    labels = [component_label(c) for c in components]
    return labels[0] if len(labels) == 1 else f"{reduce}({', '.join(labels)})"


def component_candidates(model: nn.Module | None, *, layer: LayerSpec = None,
                         labels: bool = True) -> list[ComponentSpec]:
    """The components :func:`select_detector` combines: every registered classifier detector
    that applies to ``model`` (as ``detectors="all"`` resolves them, with ``layer`` and
    labelled fit data ``labels``), except ``combined``, each with its defaults and then its
    declared :attr:`~uncertainty.ood._base.OODDetector.variants`, in registry order."""
    from uncertainty.ood.suite import resolve_detectors

    names = resolve_detectors("all", classifier=True, density=False, model=model, layer=layer,
                              labels=labels)
    out: list[ComponentSpec] = []
    for name in names:
        if name == DEFAULT_DETECTOR or DETECTORS[name].uses_density:
            continue
        out.append(name)
        out.extend((name, dict(v)) for v in DETECTORS[name].variants)
    return out


@dataclass
class Selection:
    """What :func:`select_detector` measured, every candidate ranked by the rule.

    Attributes
    ----------
    kinds : list of str
        The columns: outlier kinds (``"mnist/permute"`` after :func:`merge_selections`).
    rows : list of dict
        One per candidate, best first: ``candidate`` (its label), ``components`` (tuple of
        component specs), ``reduce`` (``None`` for one component), ``size``, ``auroc``
        (``{kind: AUROC}`` in [0, 1]), ``worst`` and ``mean`` over the kinds.
    tie : float
        The tie tolerance the rule used (AUROC).
    sizes : dict
        ``{kind: (n_in, n_out)}``: the numbers of examples behind each column.
    info : dict
        Sizes and settings: ``n_fit``, ``n_reference``, ``n_heldout``, ``holdout``, ``seed``,
        ``outlier_seed`` (per model after a merge).
    """

    kinds: list[str]
    rows: list[dict[str, Any]]
    tie: float
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def selected(self) -> dict[str, Any]:
        """The winning row."""
        return self.rows[0]

    def detector_params(self) -> dict[str, Any]:
        """The winner as ``Combined`` parameters: ``make_detector("combined", model,
        **selection.detector_params())``."""
        row = self.selected
        return {"components": tuple(row["components"]), "reduce": row["reduce"] or "fisher"}

    def table_rows(self, top: int | None = None) -> list[dict[str, Any]]:
        """Flat rows in percent (``candidate``, one column per kind, ``worst``, ``mean``)."""
        rows = self.rows if top is None else self.rows[:top]
        return [{"rank": i + 1, "candidate": r["candidate"],
                 **{k: 100 * r["auroc"][k] for k in self.kinds},
                 "worst": 100 * r["worst"], "mean": 100 * r["mean"]} for i, r in enumerate(rows)]

    def to_markdown(self, top: int | None = 20) -> str:
        """The ranked candidates (AUROC %), the first ``top`` of them (all: ``None``)."""
        return markdown_table(self.table_rows(top), digits=2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: kinds, tie, info and every row (components as labels)."""
        rows = [{**r, "components": [component_label(c) for c in r["components"]]}
                for r in self.rows]
        return {"kinds": self.kinds, "tie": self.tie, "sizes": self.sizes, "info": self.info,
                "rows": rows, "selected": self.selected["candidate"]}


def rank_candidates(rows: list[dict[str, Any]], tie: float | None = None,
                    sizes: dict[str, tuple[int, int]] | None = None
                    ) -> tuple[list[dict[str, Any]], float]:
    """``rows`` (each with ``worst``, ``mean``, ``size``, ``candidate`` and, for the default
    ``tie``, ``auroc`` per kind) in the order of the rule (module docstring), and the tie
    tolerance used: first the rows whose ``worst`` is within ``tie`` of the best ``worst``, by
    ``mean`` (higher first), then fewer components, then label; then the rest by ``worst``,
    ``mean``, size and label. ``tie=None``: one standard error of the best worst case, from
    ``sizes`` (``{kind: (n_in, n_out)}``) at the kind where that worst case is attained."""
    if not rows:
        raise ValueError("The 'rows' argument of rank_candidates is empty: nothing to rank.")
    top = max(rows, key=lambda r: (r["worst"], r["mean"]))
    best = top["worst"]
    if tie is None:
        if not sizes:
            raise ValueError("rank_candidates needs 'sizes' ({kind: (n_in, n_out)}) to take "
                             "one standard error as the tie; or pass 'tie'.")
        kind = min(top["auroc"], key=top["auroc"].get)
        tie = auroc_standard_error(best, *sizes[kind])
    tie = check_float(tie, "tie", "rank_candidates", low=0.0)
    contenders = [r for r in rows if r["worst"] >= best - tie]
    rest = [r for r in rows if r["worst"] < best - tie]
    contenders.sort(key=lambda r: (-r["mean"], r["size"], r["candidate"]))
    rest.sort(key=lambda r: (-r["worst"], -r["mean"], r["size"], r["candidate"]))
    return contenders + rest, tie


def _combine(z: np.ndarray, index: list[int], rule: str | None) -> np.ndarray:
    """Rows ``index`` of ``z (K, N)`` summed (Fisher, or one row) or maxed: ``(N,)``."""
    part = z[index]
    return part.max(axis=0) if rule == "max" else part.sum(axis=0)


def score_candidates(scores_in: dict[str, np.ndarray],
                     scores_out: dict[str, dict[str, np.ndarray]], *,
                     components: list[ComponentSpec] | None = None, max_size: int = 3,
                     reductions: tuple[str, ...] = REDUCTIONS, tie: float | None = None
                     ) -> Selection:
    r"""Rank every candidate from its components' :math:`-\log p` (pure; no model).

    Parameters
    ----------
    scores_in : dict
        ``{component label: (N_in,) array}`` on held-out in-distribution data.
    scores_out : dict
        ``{kind: {component label: (N_kind,) array}}`` on each outlier kind.
    components : list, optional
        The component specs, in order (default: the labels of ``scores_in``, as names).
    max_size, reductions, tie
        The candidates' largest size, their combination rules and the rule's tolerance
        (``None``: one standard error, :func:`rank_candidates`).
    """
    check_int(max_size, "max_size", "score_candidates", low=1)
    for r in reductions:
        if r not in REDUCTIONS:
            raise ValueError(f"The 'reductions' argument of score_candidates must list rules "
                             f"from {REDUCTIONS}. Got {reductions!r} instead.")
    specs = list(scores_in) if components is None else list(components)
    labels = [component_label(c) for c in specs]
    if not specs or sorted(labels) != sorted(scores_in):
        raise ValueError(f"The 'components' {labels} must be the components scored in "
                         f"'scores_in' {sorted(scores_in)}.")
    kinds = list(scores_out)
    if not kinds:
        raise ValueError("The 'scores_out' argument of score_candidates names no outlier kind.")
    inside = np.stack([np.asarray(scores_in[lab], np.float64) for lab in labels])  # (K, N_in)
    outside = {kind: np.stack([np.asarray(scores_out[kind][lab], np.float64) for lab in labels])
               for kind in kinds}  # (K, N_kind) each
    rows = []
    for size in range(1, min(max_size, len(specs)) + 1):
        for subset in itertools.combinations(range(len(specs)), size):
            index = list(subset)
            for rule in (None,) if size == 1 else tuple(reductions):
                s_in = _combine(inside, index, rule)
                per_kind = {kind: auroc(s_in, _combine(outside[kind], index, rule))
                            for kind in kinds}
                comps = tuple(specs[i] for i in index)
                rows.append({"candidate": candidate_label(comps, rule), "components": comps,
                             "reduce": rule, "size": size, "auroc": per_kind,
                             "worst": min(per_kind.values()),
                             "mean": float(np.mean(list(per_kind.values())))})
    sizes = {kind: (inside.shape[1], outside[kind].shape[1]) for kind in kinds}
    ranked, tie = rank_candidates(rows, tie, sizes)
    return Selection(kinds=kinds, rows=ranked, tie=tie, sizes=sizes)


def _shared_examples(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many examples of ``b`` are also examples of ``a`` (bit for bit)."""
    rows_a = a.reshape(len(a), -1).cpu().numpy()
    rows_b = b.reshape(len(b), -1).cpu().numpy()
    seen: dict[int, list[int]] = {}
    for i, row in enumerate(rows_a):
        seen.setdefault(hash(row.tobytes()), []).append(i)
    return sum(any(np.array_equal(rows_a[i], row) for i in seen.get(hash(row.tobytes()), ()))
               for row in rows_b)


def select_detector(
    model: nn.Module | None,
    fit,
    heldout,
    *,
    kinds: tuple[str, ...] | None = None,
    components: list[ComponentSpec] | None = None,
    max_size: int = 3,
    reductions: tuple[str, ...] = REDUCTIONS,
    holdout: float = 0.2,
    tail: float = 0.01,
    seed: int = 0,
    outlier_seed: int = 0,
    tie: float | None = None,
    layer: LayerSpec = None,
    batch_size: int = 512,
) -> Selection:
    """Rank every candidate detector by its AUROC against synthetic outliers (module
    docstring), from in-distribution data only.

    Parameters
    ----------
    model : nn.Module or None
        The classifier (on the device it should run on); ``None`` only when every component
        reads the inputs alone.
    fit : array, tensor, (x, y) pair, Dataset or DataLoader
        In-distribution training data (labelled for the class-conditional detectors): the
        components are fitted on it and the p-value references drawn from it.
    heldout : same kinds
        In-distribution images ``(N, C, H, W)`` in [0, 1] that share no example with ``fit``:
        scored as in-distribution, and the source of every outlier kind.
    kinds : tuple of str, optional
        Outlier kinds of :data:`dunno.data.outliers.OUTLIER_KINDS` (default: all).
    components : list, optional
        Component specs (default: :func:`component_candidates`).
    max_size, reductions : int, tuple
        The largest number of components in a candidate, and the combination rules.
    holdout, tail, seed : float, float, int
        :class:`~uncertainty.ood.combined.Combined`'s reference fraction, tail fraction and
        split seed.
    outlier_seed : int
        Seed of the outliers (:func:`dunno.data.outliers.make_outliers`).
    tie : float, optional
        Tolerance of the rule (default: one standard error, :func:`rank_candidates`).
    layer : str or list of str, optional
        Where features come from (as in :func:`~uncertainty.ood.run_ood`).
    batch_size : int
        Batch size of the forward passes.

    Returns
    -------
    Selection
    """
    check_seed(outlier_seed, OWNER, "outlier_seed")
    check_int(batch_size, "batch_size", OWNER, low=1)
    dtype = model_dtype(model) if model is not None else None
    x_fit, y_fit = as_arrays(fit, name="fit", owner=OWNER, dtype=dtype)
    x_held, _ = as_arrays(heldout, name="heldout", owner=OWNER, dtype=dtype)
    if x_held.dim() != 4 or tuple(x_held.shape[1:]) != tuple(x_fit.shape[1:]):
        raise ValueError(f"The 'heldout' argument of {OWNER} must be images (N, C, H, W) of the "
                         f"fit data's shape {tuple(x_fit.shape[1:])}. Got "
                         f"{tuple(x_held.shape)} instead.")
    if len(x_held) < 2:
        raise ValueError(f"The 'heldout' argument of {OWNER} must hold at least 2 images. Got "
                         f"{len(x_held)}.")
    shared = _shared_examples(x_fit, x_held)
    if shared:
        raise ValueError(f"The 'heldout' argument of {OWNER} shares {shared} example(s) with "
                         "'fit'; the held-out split must be disjoint from the fit split.")
    names = list(OUTLIER_KINDS) if kinds is None else list(kinds)
    if components is None:
        components = component_candidates(model, layer=layer, labels=y_fit is not None)
    combined = Combined(model, components=tuple(components), holdout=holdout, tail=tail,
                        seed=seed, layer=layer)
    combined.check_params()
    needs = combined.fit_needs | combined.needs
    fit_info = DatasetInfo("fit", "image", tuple(x_fit.shape[1:]), value_range=(0.0, 1.0))
    fit_out = extract_outputs(model, ArrayDataset(x_fit, y_fit, fit_info), needs=needs,
                              layer=layer, batch_size=batch_size)
    combined.fit_outputs(fit_out)
    outliers = make_outliers(x_held, names, seed=outlier_seed)

    def neg_log_p(x: torch.Tensor) -> dict[str, np.ndarray]:
        out = extract_outputs(model, x, needs=combined.needs, layer=layer,
                              batch_size=batch_size)
        return {k: v.numpy() for k, v in combined.component_scores(out).items()}

    scores_in = neg_log_p(x_held)
    scores_out = {kind: neg_log_p(x) for kind, x in outliers.items()}
    selection = score_candidates(scores_in, scores_out, components=list(components),
                                 max_size=max_size, reductions=reductions, tie=tie)
    n_ref = len(next(iter(combined.references_.values())))
    selection.info = {"n_fit": len(x_fit) - n_ref, "n_reference": n_ref,
                      "n_heldout": len(x_held), "holdout": holdout, "seed": seed,
                      "outlier_seed": outlier_seed,
                      "components": [component_label(c) for c in components]}
    return selection


def merge_selections(selections: dict[str, Selection], tie: float | None = None) -> Selection:
    """One ranking over several models' selections (e.g. ``{"mnist": ..., "fashion-mnist":
    ...}``): the kinds become ``"<name>/<kind>"``, a candidate's worst case and mean run over
    all of them, and only candidates every selection scored take part. ``tie`` as in
    :func:`rank_candidates` (default: one standard error of the best worst case)."""
    if not selections:
        raise ValueError("The 'selections' argument of merge_selections is empty.")
    by_label = [{r["candidate"]: r for r in s.rows} for s in selections.values()]
    common = [lab for lab in by_label[0] if all(lab in b for b in by_label[1:])]
    if not common:
        raise ValueError("The selections given to merge_selections share no candidate.")
    kinds = [f"{name}/{k}" for name, s in selections.items() for k in s.kinds]
    sizes = {f"{name}/{k}": n for name, s in selections.items() for k, n in s.sizes.items()}
    rows = []
    for lab in common:
        first = by_label[0][lab]
        per = {f"{name}/{k}": rows_of[lab]["auroc"][k]
               for (name, s), rows_of in zip(selections.items(), by_label, strict=True)
               for k in s.kinds}
        rows.append({**{k: first[k] for k in ("candidate", "components", "reduce", "size")},
                     "auroc": per, "worst": min(per.values()),
                     "mean": float(np.mean(list(per.values())))})
    ranked, tie = rank_candidates(rows, tie, sizes)
    info = {name: s.info for name, s in selections.items()}
    return Selection(kinds=kinds, rows=ranked, tie=tie, sizes=sizes, info=info)


def label_free(selection: Selection, tie: float | None = None) -> Selection:
    """The same ranking restricted to candidates none of whose components learns per-class
    statistics (``fit_needs_labels``): the default for unlabelled fit data
    (:data:`uncertainty.ood.combined.DEFAULT_COMPONENTS_UNLABELLED`). ``tie`` as in
    :func:`rank_candidates`, recomputed for the restricted best worst case."""
    def needs_labels(spec: ComponentSpec) -> bool:
        name = spec if isinstance(spec, str) else spec[0]
        return DETECTORS[name]().fit_needs_labels

    rows = [r for r in selection.rows if not any(needs_labels(c) for c in r["components"])]
    if not rows:
        raise ValueError("The selection given to label_free has no candidate that needs no "
                         "labels.")
    ranked, tie = rank_candidates(rows, tie, selection.sizes)
    return Selection(kinds=selection.kinds, rows=ranked, tie=tie, sizes=selection.sizes,
                     info=selection.info)
