"""OOD-detection benchmark: many detectors x many OOD sets, one forward pass per dataset.

The runner behind ``dunno ood``::

    from dunno.checkpoints import load_model
    from evaluation.benchmarks.ood import run_ood
    table = run_ood(load_model("runs/lenet5-mnist/model.pt"), "mnist",
                    ["fashion-mnist", "gaussian-noise", "mnist:rotate=90"], detectors="all",
                    out="runs/ood-mnist")
    print(table.to_markdown())

**What runs.** The in-distribution data ``in_data`` gives the *fit* split (``fit_split``,
default ``train``: what the detectors learn from) and the ``test`` split (the in-distribution
half of every AUROC); every OOD set is loaded with split ``test`` (noise sets match the test
split's shape, range and size). The model runs **once per dataset**
(:func:`uncertainty.ood.extract_outputs`: logits, and penultimate features when any detector
needs them, from one pass through ``model.features`` then ``model.head``) and every detector
fits and scores from those cached tensors. Only detectors that need the inputs make their own
passes: ODIN and Mahalanobis with input pre-processing (a forward and a backward pass per
batch through the classifier) and RaPP (its own autoencoder). ``timings`` records the shared
passes, each detector's fit and scoring time, and the total.

**Density models.** With ``density=`` (``dunno ood --density CKPT``) the density-based
detectors -- ``likelihood`` (in bits/dim), ``likelihood-ratio`` (Ren et al. 2019),
``complexity`` (Serrà et al. 2020), ``typicality`` (Nalisnick et al. 2019b) -- join the same
table: this runner is the one place where :mod:`generative` models meet
:mod:`uncertainty.ood`. Each dataset is prepared for the density model once
(:func:`density_inputs`: the fixed seeded binarisation for a binary model) and scored once;
``model`` may be ``None`` for a density-only run::

    table = run_ood(None, "fashion-mnist", ["mnist"], density=load_model("runs/nade/model.pt"))

**Metrics** (:mod:`evaluation.metrics.ood`; higher score = more OOD, in-distribution positive
for AUPR-In): AUROC, AUPR-In, AUPR-Out, FPR at 95% TPR and detection error per detector x OOD
set, plus the mean over the OOD sets; the in-distribution test accuracy is recorded.

**Files** (with ``out``): ``ood.json`` (everything), ``ood.csv`` (the long table with the mean
rows), ``auroc.csv`` (detector x set), ``roc_<set>.png`` (ROC and PR curves of every detector
on that set) and ``hist_<detector>_<set>.png`` (score histograms).
"""

from __future__ import annotations

import argparse
import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dunno.data import ArrayDataset, load_dataset
from dunno.devices import resolve_device
from dunno.reporting import format_table, markdown_table, write_csv, write_json
from evaluation.metrics.ood import ood_metrics
from uncertainty.ood import DETECTORS, ModelOutputs, extract_outputs, make_detector
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, check_layer

__all__ = [
    "METRICS",
    "OODTable",
    "add_arguments",
    "compare_shared_vs_naive",
    "density_inputs",
    "main",
    "parse_detector_params",
    "run_from_args",
    "run_ood",
]

#: Metric columns of :attr:`OODTable.rows`, in table order.
METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error")
COLUMNS = ("detector", "ood_set", *METRICS, "n_in", "n_out")
FIT_SPLITS = ("train", "val", "train-full")


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
        Seconds: ``forward`` (per dataset, shared passes), ``fit`` and ``score`` (per
        detector), ``total`` (the whole run, files included).
    own_passes : list of str
        Detectors that ran their own passes over the inputs (ODIN, RaPP, ...).
    params : dict
        Each detector's hyper-parameters.
    scores : dict
        ``scores[detector]["in"]`` and ``scores[detector][ood_set]``: ``(N,)`` float64 CPU
        tensors (not written to JSON).
    files : list of Path
        Files written.
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
    files: list[Path] = field(default_factory=list)

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

    def table(self, digits: int = 4) -> str:
        """The long table (with means) as aligned text."""
        return format_table(self.table_rows(), COLUMNS[:-2], digits=digits)

    def to_markdown(self, metric: str | None = None, digits: int = 2) -> str:
        """Markdown: the ``metric`` pivot in percent (detector x set) when given, else the
        long table of every metric in percent."""
        if metric is not None:
            return markdown_table(self.pivot(metric), digits=digits)
        rows = [{k: (v * 100 if k in METRICS else v) for k, v in r.items()}
                for r in self.table_rows()]
        return markdown_table(rows, COLUMNS[:-2], digits=digits)

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
            "files": [str(p) for p in self.files],
        }


# --------------------------------------------------------------------------- helpers
def _names(value, what: str) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    out = [v.strip() if isinstance(v, str) else v for v in value]
    out = [v for v in out if not (isinstance(v, str) and not v)]
    if not out:
        raise ValueError(f"The '{what}' argument names nothing.")
    return out


def _detector_names(detectors, *, classifier: bool = True, density: bool = False,
                    model: nn.Module | None = None, layer: LayerSpec = None) -> list[str]:
    """Registry names to run. ``"all"``: the classifier detectors that apply to ``model``
    (``mc-dropout`` needs dropout layers, ``ensemble-disagreement`` an ensemble, the feature
    detectors ``model.features`` or a ``layer``) when there is a classifier, plus the
    density-based ones when there is a density model. Named detectors that cannot run raise
    instead."""
    if isinstance(detectors, str) and detectors.strip() == "all":
        has_features = layer is not None or callable(getattr(model, "features", None))

        def usable(cls) -> bool:
            if cls.uses_density:
                return density
            unfitted = cls()
            needs = unfitted.needs | unfitted.fit_needs
            return (classifier and cls.applies_to(model)
                    and (has_features or model is None or "features" not in needs))

        return [n for n, cls in DETECTORS.items() if usable(cls)]
    names = _names(detectors, "detectors")
    for name in names:
        if name not in DETECTORS:
            raise ValueError(
                f"Unknown OOD detector {name!r} in 'detectors'. Available: "
                f"{', '.join(DETECTORS)} or 'all'."
            )
        if DETECTORS[name].uses_density and not density:
            raise ValueError(
                f"The detector {name!r} scores through a density model; pass one (density=..., "
                "or --density CKPT on the command line)."
            )
        if not DETECTORS[name].uses_density and not classifier:
            raise ValueError(
                f"The detector {name!r} scores through a classifier, but none was given (a "
                "density-only run takes likelihood, likelihood-ratio, complexity, typicality)."
            )
    return list(dict.fromkeys(names))


def density_inputs(dataset: ArrayDataset, density, split: str) -> ArrayDataset:
    """``dataset`` as ``density`` scores it: the fixed seeded binarisation of
    :func:`evaluation.benchmarks.density.prepare_images` for a binary model
    (``density.pixels == "binary"``; the same draw as the ``X-binary`` test files for the test
    split), integers 0..255 for an 8-bit one, unchanged for a model without ``pixels``."""
    pixels = getattr(density, "pixels", None)
    if pixels not in ("binary", "8bit"):
        return dataset
    from evaluation.benchmarks.density import prepare_images

    return prepare_images(dataset, pixels, split, "fixed")


def _slug(name: str) -> str:
    base = Path(name).name if ("/" in name or "\\" in name) and ":" not in name else name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "set"


def _load_out_set(spec, test: ArrayDataset, root) -> tuple[str, ArrayDataset]:
    if isinstance(spec, ArrayDataset):
        ds, name = spec, spec.info.name
    elif isinstance(spec, str):
        ds, name = load_dataset(spec, "test", root, like=test), spec
    else:
        raise ValueError(
            "Each OOD set must be a dataset spec (str) or an ArrayDataset. Got "
            f"{type(spec).__name__}."
        )
    if len(ds) == 0:
        raise ValueError(f"The OOD set {name!r} is empty: there is nothing to score.")
    shape, expected = tuple(ds.x.shape[1:]), tuple(test.x.shape[1:])
    if shape != expected:
        raise ValueError(
            f"The OOD set {name!r} has inputs of shape {shape}, but the model's "
            f"in-distribution data {test.info.name!r} has inputs of shape {expected}; an OOD set "
            "must have the model's input shape (resize it, or use a noise set, which matches "
            "the in-distribution shape)."
        )
    return name, ds


def _load_data(in_data, out_sets, fit_split, fit_size, seed, root
               ) -> tuple[ArrayDataset, ArrayDataset, dict[str, ArrayDataset]]:
    """The fit split (a seeded ``fit_size`` subset), the test split and the OOD sets."""
    fit = load_dataset(in_data, fit_split, root)
    test = load_dataset(in_data, "test", root)
    if fit_size is not None and fit_size < len(fit):
        g = torch.Generator().manual_seed(seed)
        fit = fit.subset(torch.randperm(len(fit), generator=g)[:fit_size].sort().values)
    oods = dict(_load_out_set(spec, test, root) for spec in _names(out_sets, "out_sets"))
    return fit, test, oods


def _build_detectors(names, model, device, detector_params, layer, density=None,
                     background=None, num_dims=None) -> dict[str, OODDetector]:
    detector_params = dict(detector_params or {})
    unknown = sorted(set(detector_params) - set(names))
    if unknown:
        raise ValueError(f"'detector_params' names detectors that are not run: {unknown}.")
    out = {}
    for name in names:
        cls = DETECTORS[name]
        params = dict(detector_params.get(name, {}))
        accepted = cls.param_names()
        if layer is not None and "layer" in accepted:
            params.setdefault("layer", layer)
        if "device" in accepted:
            params.setdefault("device", str(device))
        if background is not None and "background" in accepted:
            params.setdefault("background", background)
            params.setdefault("fit_background", False)
        if num_dims is not None and "num_dims" in accepted:
            params.setdefault("num_dims", num_dims)  # likelihood in bits/dim
        out[name] = make_detector(name, model if cls.uses_model else None,
                                  density=density if cls.uses_density else None, **params)
        out[name].check_params()
    return out


def _check_feature_access(model: nn.Module | None, layer, detectors: dict[str, OODDetector]
                          ) -> None:
    wanting = [n for n, d in detectors.items() if "features" in (d.needs | d.fit_needs)]
    other = {n: detectors[n].layer for n in wanting
             if check_layer(detectors[n].layer, n) != layer}
    if other:
        raise ValueError(
            f"The detectors share one forward pass per dataset, with features from "
            f"layer={layer!r}, but 'detector_params' sets another 'layer' for {other}. Pass the "
            "layer to the run (run_ood(..., layer=...), dunno ood --layer) instead."
        )
    if wanting and layer is None and not callable(getattr(model, "features", None)):
        logit_only = [n for n in detectors if n not in wanting]
        raise ValueError(
            f"The detectors {wanting} need penultimate features, but {type(model).__name__} has "
            "no 'features' method and no 'layer' was given. Pass layer='<module name>' to hook "
            f"a layer, or run detectors that need no features ({', '.join(logit_only) or 'none'})."
        )


def _forward(model, ds, needs, layer, batch_size) -> tuple[ModelOutputs, float]:
    t0 = time.perf_counter()
    outputs = extract_outputs(model, ds, needs=needs | {"input"}, layer=layer,
                              batch_size=batch_size)
    if outputs.logits is not None and outputs.logits.device.type == "cuda":
        torch.cuda.synchronize(outputs.logits.device)
    return outputs, time.perf_counter() - t0


def _density_forward(density, ds, batch_size) -> tuple[ModelOutputs, float]:
    t0 = time.perf_counter()
    outputs = extract_outputs(None, ds, needs={"log_prob", "input"}, density=density,
                              batch_size=batch_size)
    return outputs, time.perf_counter() - t0


# --------------------------------------------------------------------------- the runner
def run_ood(
    model: nn.Module | None,
    in_data: str,
    out_sets,
    detectors="all",
    *,
    density: nn.Module | None = None,
    background: nn.Module | None = None,
    root=None,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    fit_split: str = "train",
    fit_size: int | None = None,
    detector_params: dict[str, dict[str, Any]] | None = None,
    layer: LayerSpec = None,
    out: str | Path | None = None,
    histograms: bool = True,
    seed: int = 0,
    quiet: bool = True,
) -> OODTable:
    """Evaluate every detector on every OOD set against ``in_data``'s test split.

    Parameters
    ----------
    model : nn.Module or None
        A classifier mapping ``in_data`` inputs to logits ``(N, C)``; ``features`` (or
        ``layer``) for feature detectors. Moved to ``device``, run in eval mode, unchanged.
        ``None`` for a density-only run.
    in_data : str
        In-distribution dataset spec (``"mnist"``, ``"digits:classes=0-4"``, a user path).
    out_sets : str or sequence
        OOD sets: specs (``"fashion-mnist,gaussian-noise,mnist:rotate=90"``, user paths,
        ``"digits:classes=5-9"``) or :class:`~dunno.data.ArrayDataset` objects. Each must have
        the in-distribution input shape and be non-empty.
    detectors : "all", str or sequence of str
        Registry names (:data:`uncertainty.ood.DETECTORS`), comma-separated or a list.
        ``"all"``: every classifier detector (with ``model``) and every density-based one
        (with ``density``).
    density : nn.Module, optional
        A density model of ``in_data`` (``log_prob(x) -> (N,)`` nats: NADE, PixelCNN,
        PixelRNN, VAE) for the density-based detectors. It scores the inputs as
        :func:`density_inputs` prepares them (fixed binarisation for a binary model, 0..255
        for an 8-bit one), once per dataset; all density detectors share that pass, and the
        likelihood is reported in bits/dim.
    background : nn.Module, optional
        A trained background model for ``likelihood-ratio`` (else it trains one in ``fit``,
        see :class:`uncertainty.ood.LikelihoodRatio`).
    root : path-like, optional
        Data directory (default ``$DUNNO_DATA``, else ``~/.cache/dunno``).
    device : str or torch.device
        ``auto | cpu | cuda[:i] | mps``.
    batch_size : int
        Batch size of the shared forward passes.
    fit_split : {"train", "val", "train-full"}
        The in-distribution split the detectors are fitted on.
    fit_size : int, optional
        A seeded random subset of the fit split of this size (default: all of it).
    detector_params : dict, optional
        Hyper-parameters per detector, e.g. ``{"knn": {"k": 10}, "odin": {"epsilon": 0}}``.
    layer : str or list of str, optional
        Where features come from instead of ``model.features`` (needed for models without
        it): one module's flattened output, or several modules' spatially averaged outputs,
        concatenated (:func:`uncertainty.ood.extract_outputs`). Shared by every feature
        detector.
    out : path-like, optional
        Directory for JSON / CSV / PNG files.
    histograms : bool
        Write a score histogram per detector x OOD set (with ``out``).
    seed : int
        Seed of the ``fit_size`` subset.
    quiet : bool
        Print nothing (default); otherwise print the table.

    Returns
    -------
    OODTable
    """
    t_start = time.perf_counter()
    if fit_split not in FIT_SPLITS:
        raise ValueError(f"The 'fit_split' argument must be one of {FIT_SPLITS}. "
                         f"Got {fit_split!r} instead.")
    if fit_size is not None and (isinstance(fit_size, bool) or not isinstance(fit_size, int)
                                 or fit_size < 2):
        raise ValueError(f"The 'fit_size' argument must be None or an int >= 2. "
                         f"Got {fit_size!r} instead.")
    if model is None and density is None:
        raise ValueError("run_ood needs a classifier ('model'), a density model ('density'), "
                         "or both. Got neither.")
    if model is not None and not isinstance(model, nn.Module):
        raise ValueError(f"The 'model' argument must be a torch.nn.Module. "
                         f"Got {type(model).__name__} instead.")
    if density is not None and not callable(getattr(density, "log_prob", None)):
        raise ValueError(f"The 'density' argument must be a density model with log_prob(x). "
                         f"Got {type(density).__name__} instead.")
    layer = check_layer(layer, "run_ood")
    device = resolve_device(device)
    if model is not None:
        model = model.to(device).eval()
    if density is not None:
        density = density.to(device).eval()
    if background is not None:
        background = background.to(device).eval()
    names = _detector_names(detectors, classifier=model is not None,
                            density=density is not None, model=model, layer=layer)

    fit, test, oods = _load_data(in_data, out_sets, fit_split, fit_size, seed, root)
    num_dims = math.prod(test.x.shape[1:])
    dets = _build_detectors(names, model, device, detector_params, layer, density=density,
                            background=background, num_dims=num_dims)
    if model is not None:
        _check_feature_access(model, layer, dets)

    timings: dict[str, Any] = {"forward": {}, "fit": {}, "score": {}}
    fit_key, test_key = f"{in_data} ({fit_split})", f"{in_data} (test)"
    fit_out = test_out = None
    ood_out: dict[str, ModelOutputs] = {}
    if any(not d.uses_density for d in dets.values()):
        needs = frozenset({"logits"})
        if any("features" in (d.needs | d.fit_needs) for d in dets.values()):
            needs = needs | {"features"}
        fit_out, timings["forward"][fit_key] = _forward(model, fit, needs, layer, batch_size)
        test_out, timings["forward"][test_key] = _forward(model, test, needs, layer, batch_size)
        for name, ds in oods.items():
            ood_out[name], timings["forward"][name] = _forward(model, ds, needs, layer,
                                                               batch_size)
    dens_fit = dens_test = None
    dens_ood: dict[str, ModelOutputs] = {}
    if any(d.uses_density for d in dets.values()):
        timings["density"] = {}
        dens_fit, timings["density"][fit_key] = _density_forward(
            density, density_inputs(fit, density, fit_split), batch_size)
        dens_test, timings["density"][test_key] = _density_forward(
            density, density_inputs(test, density, "test"), batch_size)
        for name, ds in oods.items():
            dens_ood[name], timings["density"][name] = _density_forward(
                density, density_inputs(ds, density, "test"), batch_size)

    accuracy = None
    if test_out is not None and test_out.labels is not None:
        if test.info.num_classes is not None and test_out.logits.shape[1] != test.info.num_classes:
            raise ValueError(
                f"The model outputs {test_out.logits.shape[1]} logits but {in_data!r} has "
                f"{test.info.num_classes} classes: is this the model trained on it?"
            )
        accuracy = float((test_out.logits.argmax(1).cpu() == test_out.labels).double().mean())

    rows, scores, own = [], {}, []
    for name, det in dets.items():
        if det.uses_density:
            d_fit, d_test, d_ood = dens_fit, dens_test, dens_ood
        else:
            d_fit, d_test, d_ood = fit_out, test_out, ood_out
        t0 = time.perf_counter()
        det.fit_outputs(d_fit)
        timings["fit"][name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        s_in = det.score_outputs(d_test).cpu()
        scores[name] = {"in": s_in}
        for set_name, o in d_ood.items():
            scores[name][set_name] = det.score_outputs(o).cpu()
        timings["score"][name] = time.perf_counter() - t0
        if "input" in (det.needs | det.fit_needs):
            own.append(name)
        for set_name in oods:
            m = ood_metrics(s_in, scores[name][set_name])
            rows.append({
                "detector": name, "ood_set": set_name, "auroc": m["auroc"],
                "aupr_in": m["aupr_in"], "aupr_out": m["aupr_out"],
                "fpr95": m["fpr_at_95_tpr"], "detection_error": m["detection_error"],
                "n_in": m["n_in"], "n_out": m["n_out"],
            })

    table = OODTable(
        in_data=in_data, out_sets=list(oods), detectors=names, rows=rows, accuracy=accuracy,
        fit_split=fit_split, n_fit=len(fit), n_test=len(test), timings=timings,
        own_passes=own, params={n: _jsonable_params(d) for n, d in dets.items()}, scores=scores,
    )
    if out is not None:
        table.files = _write_outputs(table, Path(out), histograms)
    timings["total"] = time.perf_counter() - t_start
    timings["shared_forward_total"] = sum(timings["forward"].values()) + sum(
        timings.get("density", {}).values())
    if out is not None:
        write_json(table.to_dict(), Path(out) / "ood.json")
    if not quiet:
        _print(table)
    return table


def _jsonable_params(det: OODDetector) -> dict[str, Any]:
    def conv(v):
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        return v if v is None or isinstance(v, bool | int | float | str) else repr(v)

    return {k: conv(v) for k, v in det.get_params().items()}


def _print(table: OODTable) -> None:
    acc = "n/a" if table.accuracy is None else f"{100 * table.accuracy:.2f}%"
    print(f"OOD detection: in-distribution '{table.in_data}' (test n={table.n_test}, accuracy "
          f"{acc}); detectors fitted on '{table.fit_split}' (n={table.n_fit})")
    print(table.table())
    print()
    print("AUROC (%):")
    print(format_table(table.pivot("auroc"), digits=2))
    t = table.timings
    print(f"\nshared forward passes {t['shared_forward_total']:.1f}s; total {t['total']:.1f}s; "
          f"own passes: {', '.join(table.own_passes) or 'none'}")
    if table.files:
        print(f"wrote {len(table.files) + 1} files")


def _write_outputs(table: OODTable, out: Path, histograms: bool) -> list[Path]:
    from evaluation.plots import ood_score_histogram, roc_pr_curves

    out.mkdir(parents=True, exist_ok=True)
    files = [
        write_csv(table.table_rows(), out / "ood.csv", COLUMNS),
        write_csv(table.pivot("auroc"), out / "auroc.csv"),
    ]
    for set_name in table.out_sets:
        pairs = {d: (table.scores[d]["in"], table.scores[d][set_name]) for d in table.detectors}
        path = out / f"roc_{_slug(set_name)}.png"
        roc_pr_curves(pairs, title=f"{table.in_data} vs {set_name}", path=path)
        files.append(path)
        if histograms:
            for det in table.detectors:
                path = out / f"hist_{det}_{_slug(set_name)}.png"
                with warnings.catch_warnings():
                    # matplotlib warns when placing a loc="best" legend takes long (a busy
                    # machine); the figure is still right.
                    warnings.filterwarnings("ignore", "Creating legend with loc=", UserWarning)
                    ood_score_histogram(
                        table.scores[det]["in"], table.scores[det][set_name],
                        in_label=f"{table.in_data} (test)", out_label=set_name,
                        title=f"{det}", path=path,
                    )
                files.append(path)
    files.append(out / "ood.json")
    return files


# --------------------------------------------------------------------------- timing
def compare_shared_vs_naive(
    model: nn.Module | None,
    in_data: str,
    out_sets,
    detectors="all",
    *,
    density: nn.Module | None = None,
    background: nn.Module | None = None,
    root=None,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    fit_split: str = "train",
    fit_size: int | None = None,
    detector_params: dict[str, dict[str, Any]] | None = None,
    layer: LayerSpec = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Wall time of :func:`run_ood` (one shared pass per dataset) against a naive loop in which
    every detector runs its own forward passes (``fit(loader)`` then ``score(x)`` per set).

    Both compute the same scores (checked: the largest absolute difference is reported).

    Returns
    -------
    dict
        ``shared_seconds``, ``naive_seconds``, ``speedup``, ``naive_per_detector`` (seconds),
        ``max_abs_score_difference``, and the :class:`OODTable` of the shared run (``table``).
    """
    table = run_ood(model, in_data, out_sets, detectors, density=density,
                    background=background, root=root, device=device,
                    batch_size=batch_size, fit_split=fit_split, fit_size=fit_size,
                    detector_params=detector_params, layer=layer, seed=seed)
    shared = table.timings["total"]
    device = resolve_device(device)
    if model is not None:
        model = model.to(device).eval()
    t_start = time.perf_counter()
    fit, test, oods = _load_data(in_data, out_sets, fit_split, fit_size, seed, root)
    dets = _build_detectors(table.detectors, model, device, detector_params, layer,
                            density=density, background=background,
                            num_dims=math.prod(test.x.shape[1:]))
    per_det, worst = {}, 0.0
    for name, det in dets.items():
        t0 = time.perf_counter()

        def prepared(ds, split, det=det):
            return density_inputs(ds, density, split) if det.uses_density else ds

        det.fit(prepared(fit, fit_split), batch_size=batch_size)
        s_in = det.score(prepared(test, "test").x, batch_size=batch_size).cpu()
        worst = max(worst, float((s_in - table.scores[name]["in"]).abs().max()))
        for set_name, ds in oods.items():
            s = det.score(prepared(ds, "test").x, batch_size=batch_size).cpu()
            worst = max(worst, float((s - table.scores[name][set_name]).abs().max()))
        per_det[name] = time.perf_counter() - t0
    naive = time.perf_counter() - t_start
    return {
        "shared_seconds": shared,
        "naive_seconds": naive,
        "speedup": naive / shared if shared > 0 else float("nan"),
        "naive_per_detector": per_det,
        "shared_per_detector": {n: table.timings["fit"][n] + table.timings["score"][n]
                                for n in table.detectors},
        "shared_forward_seconds": table.timings["shared_forward_total"],
        "max_abs_score_difference": worst,
        "table": table,
    }


# --------------------------------------------------------------------------- command line
def parse_detector_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["knn.k=10", "odin.epsilon=0"]`` -> ``{"knn": {"k": 10}, "odin": {"epsilon": 0}}``.

    Values are read as JSON when they parse (numbers, ``true``, lists, objects), else kept as
    strings; lists become tuples.
    """
    import json

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        det, dot, param = key.partition(".")
        if not sep or not dot or not det or not param:
            raise ValueError(f"--param must look like DETECTOR.NAME=VALUE (e.g. knn.k=10). "
                             f"Got {item!r}.")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if isinstance(parsed, list):
            parsed = tuple(tuple(v) if isinstance(v, list) else v for v in parsed)
        out.setdefault(det.strip(), {})[param.strip()] = parsed
    return out


def _parse_layer(text: str) -> str | tuple[str, ...]:
    """``--layer``: ``"fc2"`` -> ``"fc2"`` (flattened output); ``"stages.1,stages.2"`` or a JSON
    list ``'["stages.2"]'`` -> a tuple of names (spatially averaged outputs, concatenated);
    ``NAME@k`` anywhere: pooled to a ``k x k`` grid."""
    import json

    text = text.strip()
    if text.startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(
                f"--layer: {text!r} is not a JSON list ({err}).") from None
    elif "," in text:
        names = [name.strip() for name in text.split(",")]
    else:
        names = text
    try:
        return check_layer(names, "dunno ood")
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--layer: {err}") from None


def add_arguments(parser: argparse.ArgumentParser, *, common: bool = True
                  ) -> argparse.ArgumentParser:
    """Add the ``dunno ood`` options to ``parser`` (for :func:`run_from_args`).

    ``common=False`` leaves out ``--data-dir`` and ``--device`` for a caller that adds its own
    (``run_from_args`` reads ``args.data_dir`` and ``args.device``).
    """
    parser.add_argument("--checkpoint", default=None,
                        help="a dunno classifier checkpoint (optional with --density)")
    parser.add_argument("--density", default=None, metavar="CKPT",
                        help="a density-model checkpoint of the in-distribution data (dunno "
                        "density train): adds likelihood, likelihood-ratio, complexity and "
                        "typicality to the table")
    parser.add_argument("--background", default=None, metavar="CKPT",
                        help="a trained background model for likelihood-ratio (default: one is "
                        "trained on mutated inputs of the fit split)")
    parser.add_argument("--in", dest="in_data", required=True,
                        help="in-distribution dataset spec, e.g. mnist or digits:classes=0-4")
    parser.add_argument("--out", dest="out_sets", required=True, metavar="SET[,SET...]",
                        help="OOD sets: dataset specs (fashion-mnist, gaussian-noise, "
                        "mnist:rotate=90, mnist:invert, digits:classes=5-9) or user paths")
    parser.add_argument("--detectors", default="all", metavar="NAME[,NAME...]|all",
                        help=f"detectors to run (default: all = {','.join(DETECTORS)})")
    parser.add_argument("--param", action="append", default=[], metavar="DET.NAME=VALUE",
                        help="detector hyper-parameter, repeatable (e.g. knn.k=10)")
    parser.add_argument("--fit-split", default="train", choices=FIT_SPLITS,
                        help="in-distribution split the detectors learn from (default: train)")
    parser.add_argument("--fit-size", type=int, default=None,
                        help="seeded subset of the fit split (default: all of it)")
    parser.add_argument("--layer", default=None, type=_parse_layer, metavar="NAME[,NAME...]",
                        help="features from this module's flattened output instead of "
                        "model.features; several names (or a JSON list, '[\"stages.2\"]' for "
                        "one): their spatially averaged outputs, concatenated (e.g. "
                        "stages.1,stages.2); NAME@k pools that output to a k x k grid "
                        "(e.g. stages.1@2,stages.2)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-dir", default=None, metavar="DIR",
                        help="write ood.json, ood.csv, auroc.csv, ROC curves and histograms here")
    parser.add_argument("--no-histograms", action="store_true",
                        help="skip the per-detector score histograms")
    parser.add_argument("--timing", action="store_true",
                        help="also time a naive run in which every detector makes its own passes")
    if common:
        parser.add_argument("--data-dir", default=None,
                            help="data directory (default: $DUNNO_DATA, else ~/.cache/dunno)")
        parser.add_argument("--device", default="auto",
                            help="auto | cpu | cuda | cuda:<i> | mps (default: auto)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_ood` from parsed :func:`add_arguments` options; returns 0."""
    from dunno.checkpoints import load_model

    if args.checkpoint is None and args.density is None:
        raise ValueError("dunno ood needs --checkpoint (a classifier), --density (a density "
                         "model), or both.")
    if args.background is not None and args.density is None:
        raise ValueError("--background is the likelihood-ratio's background model; it needs "
                         "--density too.")
    device = resolve_device(args.device)
    model = None if args.checkpoint is None else load_model(args.checkpoint, device=device)
    density = None if args.density is None else load_model(args.density, device=device)
    background = None if args.background is None else load_model(args.background,
                                                                 device=device)
    kwargs = dict(density=density, background=background, root=args.data_dir, device=device,
                  batch_size=args.batch_size,
                  fit_split=args.fit_split, fit_size=args.fit_size,
                  detector_params=parse_detector_params(args.param), layer=args.layer,
                  seed=args.seed)
    table = run_ood(model, args.in_data, args.out_sets, args.detectors, out=args.report_dir,
                    histograms=not args.no_histograms, quiet=False, **kwargs)
    if args.timing:
        timing = compare_shared_vs_naive(model, args.in_data, args.out_sets, args.detectors,
                                         **kwargs)
        print(f"\nshared passes: {timing['shared_seconds']:.1f}s; every detector with its own "
              f"passes: {timing['naive_seconds']:.1f}s ({timing['speedup']:.2f}x); largest score "
              f"difference {timing['max_abs_score_difference']:.2g}")
        if args.report_dir is not None:
            write_json({k: v for k, v in timing.items() if k != "table"},
                       Path(args.report_dir) / "timing.json")
    return 0 if table.rows else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.benchmarks.ood --checkpoint CKPT --in mnist --out fashion-mnist``."""
    parser = argparse.ArgumentParser(prog="python -m evaluation.benchmarks.ood",
                                     description=__doc__.splitlines()[0])
    return run_from_args(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
