"""The OOD suite: many detectors x many OOD sets, one forward pass per dataset.

::

    from dunno.checkpoints import load_model
    from uncertainty.ood import run_ood
    table = run_ood(load_model("runs/lenet5-mnist/model.pt"), "mnist",
                    ["fashion-mnist", "gaussian-noise", "mnist:rotate=90"], detectors="all")
    print(table.to_markdown())

**What runs.** The in-distribution data ``in_data`` gives the *fit* split (``fit_split``,
default ``train``: what the detectors learn from) and the ``test`` split (the in-distribution
half of every AUROC); every OOD set is loaded with split ``test`` (noise sets match the test
split's shape, range and size). The model runs **once per dataset**
(:func:`uncertainty.ood.extract_outputs`: logits, and penultimate features when any detector
needs them, from one pass through ``model.features`` then ``model.head``) and every detector
fits and scores from those cached tensors. Only detectors that need the inputs make their own
passes: ODIN and Mahalanobis with input pre-processing (a forward and a backward pass per
batch through the classifier) and RaPP (its own autoencoder). Every detector is fitted, then
every detector scores; kNN searches of the same test or OOD features against banks made from
the same training features (kNN's bank and the kNN component of ``combined``, which keeps 80%
of it) are made once (:mod:`uncertainty.ood.shared_search`; the same scores as each detector's
own search). ``timings`` records the shared passes, each detector's fit and scoring time, the
shared searches and the total.

**Density models.** With ``density=`` the density-based detectors -- ``likelihood``
(bits/dim; nats for a continuous density), ``likelihood-ratio`` (Ren et al. 2019),
``complexity`` (Serrà et al. 2020), ``typicality`` (Nalisnick et al. 2019b) -- join the same
table. Each dataset is mapped once to what the density model scores by
``density_inputs(dataset, split)`` (e.g. the fixed seeded binarisation of a binary model; this
package never imports the models, so the caller that joins the two passes it) and scored once;
``model`` may be ``None`` for a density-only run::

    table = run_ood(None, "fashion-mnist", ["mnist"], density=nade,
                    density_inputs=binarise)

**Metrics** (:mod:`evaluation.metrics.ood`; higher score = more OOD, in-distribution positive
for AUPR-In): AUROC, AUPR-In, AUPR-Out, FPR at 95% TPR and detection error per detector x OOD
set, in an :class:`~uncertainty.ood.table.OODTable` with the means over the OOD sets and the
in-distribution test accuracy. ``dunno ood`` writes the files (:mod:`evaluation.benchmarks.ood`).
:func:`resolve_detectors`, :func:`load_ood_data` and :func:`build_detectors`, the steps before
the passes, are public for ``benchmarks/bench_ood_shared.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dunno.data import ArrayDataset
from dunno.devices import resolve_device
from dunno.inputs import model_dtype
from dunno.models import check_compiled_features, check_model_data
from dunno.progress import Progress, reports_progress
from dunno.validation import check_choice, check_int
from evaluation.metrics import has_code_length, ood_metrics
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs, check_layer, extract_outputs
from uncertainty.ood.registry import DETECTORS, make_detector, resolve_alias, resolve_alias_params
from uncertainty.ood.shared_search import SharedSearches
from uncertainty.ood.suite_data import _names, load_ood_data
from uncertainty.ood.table import OODTable

__all__ = ["FIT_SPLITS", "DensityInputs", "build_detectors", "load_ood_data",
           "resolve_detectors", "run_ood"]

#: The in-distribution splits detectors can be fitted on.
FIT_SPLITS = ("train", "val", "train-full")

#: ``(dataset, split) -> dataset``: a dataset as the density model scores it.
DensityInputs = Callable[[ArrayDataset, str], ArrayDataset]


def resolve_detectors(detectors, *, classifier: bool = True, density: bool = False,
                      model: nn.Module | None = None, layer: LayerSpec = None,
                      labels: bool = True) -> list[str]:
    """Registry names to run, in order, without duplicates.

    ``"all"``: the classifier detectors that apply to ``model`` (``mc-dropout`` needs dropout
    layers, ``ensemble-disagreement`` an ensemble, the feature detectors ``model.features`` or
    a ``layer``, the activation-shaping ones ``model.features`` + ``model.head`` and no
    ``layer``, the class-conditional ones labelled fit data: ``labels``) when there is a
    ``classifier``, plus the density-based ones when there is a ``density`` model. Named
    detectors that cannot run raise instead; ``"default"`` is ``combined``.
    """
    if isinstance(detectors, str) and detectors.strip() == "all":
        has_features = layer is not None or callable(getattr(model, "features", None))

        def usable(cls) -> bool:
            if cls.uses_density:
                return density
            unfitted = cls()
            needs = unfitted.needs | unfitted.fit_needs
            return (classifier and cls.applies_to(model)
                    and (labels or not unfitted.fit_needs_labels)
                    and (has_features or model is None or "features" not in needs)
                    and not (cls.reads_head and layer is not None))

        return [n for n, cls in DETECTORS.items() if usable(cls)]
    names = [resolve_alias(n) for n in _names(detectors, "detectors")]
    for name in names:
        if name not in DETECTORS:
            raise ValueError(
                f"Unknown OOD detector {name!r} in 'detectors'. Available: "
                f"{', '.join(DETECTORS)}, 'default' ({resolve_alias('default')}) or 'all'."
            )
        if DETECTORS[name].uses_density and not density:
            raise ValueError(
                f"The detector {name!r} scores through a density model; pass one (density=..., "
                "or --density CKPT on the command line)."
            )
        if DETECTORS[name]().fit_needs_labels and not labels:  # combined: its components'
            raise ValueError(
                f"The detector {name!r} learns per-class statistics and needs labelled fit "
                "data, but the fit data has no labels; pass them (in_data=((x_train, y_train), "
                "x_test)) or run detectors that need none."
            )
        if not DETECTORS[name].uses_density and not classifier:
            raise ValueError(
                f"The detector {name!r} scores through a classifier, but none was given (a "
                "density-only run takes likelihood, likelihood-ratio, complexity, typicality)."
            )
    return list(dict.fromkeys(names))


def build_detectors(names: list[str], model: nn.Module | None, *,
                    device: str | torch.device = "cpu",
                    detector_params: dict[str, dict[str, Any]] | None = None,
                    layer: LayerSpec = None, density: nn.Module | None = None,
                    background: nn.Module | None = None, num_dims: int | None = None
                    ) -> dict[str, OODDetector]:
    """The unfitted detectors ``names``, with their ``detector_params`` and the run's shared
    settings wherever a detector takes them: ``layer``, ``device``, the likelihood ratio's
    ``background`` model (then not re-trained) and the likelihood's ``num_dims`` (bits/dim,
    for a density whose log-likelihood is a code length; nats otherwise).
    Hyper-parameters are checked here, before any forward pass."""
    detector_params = resolve_alias_params(detector_params)
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
        if num_dims is not None and "num_dims" in accepted and has_code_length(density):
            params.setdefault("num_dims", num_dims)  # likelihood in bits/dim
        out[name] = make_detector(name, model if cls.uses_model else None,
                                  density=density if cls.uses_density else None, **params)
        out[name].check_params()  # before the passes
    return out


def _check_shared_pass(model: nn.Module | None, layer, detectors: dict[str, OODDetector]
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


def _forward(model, ds, needs, layer, batch_size, name: str) -> tuple[ModelOutputs, float]:
    t0 = time.perf_counter()
    outputs = extract_outputs(model, ds, needs=needs | {"input"}, layer=layer,
                              batch_size=batch_size, desc=f"{'+'.join(sorted(needs))} {name}")
    if outputs.logits is not None and outputs.logits.device.type == "cuda":
        torch.cuda.synchronize(outputs.logits.device)
    return outputs, time.perf_counter() - t0


def _density_forward(density, ds, batch_size, name: str) -> tuple[ModelOutputs, float]:
    t0 = time.perf_counter()
    outputs = extract_outputs(None, ds, needs={"log_prob", "input"}, density=density,
                              batch_size=batch_size, desc=f"log p(x) {name}")
    return outputs, time.perf_counter() - t0


def _jsonable_params(det: OODDetector) -> dict[str, Any]:
    def conv(v):
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        return v if v is None or isinstance(v, bool | int | float | str) else repr(v)

    return {k: conv(v) for k, v in det.get_params().items()}


@reports_progress
def run_ood(
    model: nn.Module | None,
    in_data: str | tuple,
    out_sets,
    detectors="all",
    *,
    density: nn.Module | None = None,
    density_inputs: DensityInputs | None = None,
    background: nn.Module | None = None,
    root=None,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    fit_split: str = "train",
    fit_size: int | None = None,
    detector_params: dict[str, dict[str, Any]] | None = None,
    layer: LayerSpec = None,
    seed: int = 0,
    progress: bool | None = None,
) -> OODTable:
    """Evaluate every detector on every OOD set against ``in_data``'s test split.

    Parameters
    ----------
    model : nn.Module or None
        A classifier mapping ``in_data`` inputs to logits ``(N, C)``; ``features`` (or
        ``layer``) for feature detectors. Moved to ``device``, run in eval mode, unchanged.
        ``None`` for a density-only run.
    in_data : str or (fit, test)
        In-distribution dataset spec (``"mnist"``, ``"digits:classes=0-4"``, a user path), or
        the user's own data as a ``(fit, test)`` pair, each a numpy array, tensor, ``(x, y)``
        pair, Dataset or DataLoader (:mod:`dunno.inputs`; NaN / inf refused):
        ``run_ood(model, in_data=(x_train, x_test), out_sets={"mine": x_ood})``.
    out_sets : str, sequence or dict
        OOD sets: specs (``"fashion-mnist,gaussian-noise,mnist:rotate=90"``, user paths,
        ``"digits:classes=5-9"``) or :class:`~dunno.data.ArrayDataset` objects, or a dict
        ``{name: spec or data}`` whose values may also be arrays, Datasets or DataLoaders.
        Each must have the in-distribution input shape and be non-empty.
    detectors : "all", "default", str or sequence of str
        Registry names (:data:`uncertainty.ood.DETECTORS`; ``"default"``: ``combined``, the
        recommended one), comma-separated or a list. ``"all"``: every classifier detector
        (with ``model``) and every density-based one (with ``density``).
    density : nn.Module, optional
        A density model of ``in_data`` (``log_prob(x) -> (N,)`` nats: NADE, PixelCNN,
        PixelRNN, VAE) for the density-based detectors. It scores each dataset once, as
        ``density_inputs`` maps it; all density detectors share that pass, and the
        likelihood is reported in bits/dim (nats for a continuous density: no code length).
    density_inputs : callable, optional
        ``(dataset, split) -> dataset``: what ``density`` scores for a split of the data,
        applied to the fit split, the test split and (with split ``"test"``) every OOD set --
        e.g. the fixed seeded binarisation for a binary model, integers 0..255 for an 8-bit
        one. ``None`` (default): the inputs as loaded (the model rejects values it does not
        model).
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
    seed : int
        Seed of the ``fit_size`` subset.
    progress : bool, optional
        Report the passes and the detectors on stderr (:mod:`dunno.progress`; None: inherit).

    Returns
    -------
    OODTable
    """
    t_start = time.perf_counter()
    check_choice(fit_split, "fit_split", "run_ood", FIT_SPLITS)
    check_int(fit_size, "fit_size", "run_ood", low=2, allow_none=True)
    if model is None and density is None:
        raise ValueError("run_ood needs a classifier ('model'), a density model ('density'), "
                         "or both. Got neither.")
    if model is not None and not isinstance(model, nn.Module):
        raise ValueError(f"The 'model' argument must be a torch.nn.Module. "
                         f"Got {type(model).__name__} instead.")
    if density is not None and not callable(getattr(density, "log_prob", None)):
        raise ValueError(f"The 'density' argument must be a density model with log_prob(x). "
                         f"Got {type(density).__name__} instead.")
    if density_inputs is not None and not callable(density_inputs):
        raise ValueError(f"The 'density_inputs' argument must be None or a callable "
                         f"(dataset, split) -> dataset. Got {type(density_inputs).__name__} "
                         "instead.")
    layer = check_layer(layer, "run_ood")
    device = resolve_device(device)
    if model is not None:
        model = model.to(device).eval()
    if density is not None:
        density = density.to(device).eval()
    if background is not None:
        background = background.to(device).eval()
    fit, test, oods = load_ood_data(in_data, out_sets, fit_split=fit_split, fit_size=fit_size,
                                    seed=seed, root=root, dtype=model_dtype(model))
    names = resolve_detectors(detectors, classifier=model is not None,
                              density=density is not None, model=model, layer=layer,
                              labels=fit.has_labels)
    in_name = in_data if isinstance(in_data, str) else "in_data"
    if model is not None:  # the model fits the data: shapes, classes (before any work)
        for split in (fit, test):
            check_model_data(model, split.x, num_classes=test.info.num_classes,
                             labels=split.y, data_name=in_name, owner="run_ood")
        needs = {n: DETECTORS[n]().needs | DETECTORS[n]().fit_needs for n in names
                 if not DETECTORS[n].uses_density}
        check_compiled_features(model, layer, [n for n in needs if "features" in needs[n]],
                                [n for n in needs if "features" not in needs[n]])
    dets = build_detectors(names, model, device=device, detector_params=detector_params,
                           layer=layer, density=density, background=background,
                           num_dims=math.prod(test.x.shape[1:]))
    if model is not None:
        _check_shared_pass(model, layer, dets)

    timings: dict[str, Any] = {"forward": {}, "fit": {}, "score": {}}
    fit_key, test_key = f"{in_name} ({fit_split})", f"{in_name} (test)"
    fit_out = test_out = None
    ood_out: dict[str, ModelOutputs] = {}
    if any(not d.uses_density for d in dets.values()):
        needs = frozenset({"logits"})
        if any("features" in (d.needs | d.fit_needs) for d in dets.values()):
            needs = needs | {"features"}
        fit_out, timings["forward"][fit_key] = _forward(model, fit, needs, layer, batch_size,
                                                        fit_key)
        test_out, timings["forward"][test_key] = _forward(model, test, needs, layer, batch_size,
                                                          test_key)
        for name, ds in oods.items():
            ood_out[name], timings["forward"][name] = _forward(model, ds, needs, layer,
                                                               batch_size, name)
    dens_fit = dens_test = None
    dens_ood: dict[str, ModelOutputs] = {}
    if any(d.uses_density for d in dets.values()):
        def prepared(ds: ArrayDataset, split: str) -> ArrayDataset:
            return ds if density_inputs is None else density_inputs(ds, split)

        timings["density"] = {}
        dens_fit, timings["density"][fit_key] = _density_forward(
            density, prepared(fit, fit_split), batch_size, fit_key)
        dens_test, timings["density"][test_key] = _density_forward(
            density, prepared(test, "test"), batch_size, test_key)
        for name, ds in oods.items():
            dens_ood[name], timings["density"][name] = _density_forward(
                density, prepared(ds, "test"), batch_size, name)

    accuracy = None
    if test_out is not None and test_out.labels is not None:
        if test.info.num_classes is not None and test_out.logits.shape[1] != test.info.num_classes:
            raise ValueError(
                f"The model outputs {test_out.logits.shape[1]} logits but {in_name!r} has "
                f"{test.info.num_classes} classes: is this the model trained on it?"
            )
        accuracy = float((test_out.logits.argmax(1).cpu() == test_out.labels).double().mean())

    outputs = {False: (fit_out, test_out, ood_out), True: (dens_fit, dens_test, dens_ood)}
    searches = SharedSearches()  # kNN searches of the same features, made once
    for o in (test_out, *ood_out.values()):
        if o is not None and o.features is not None:
            searches.share_queries(o.features)
    scores: dict[str, dict[str, torch.Tensor]] = {}
    with searches.active():  # fit every detector, then score: all banks known when searching
        for name, det in Progress(dets.items(), desc="detectors (fit)", unit="detector"):
            t0 = time.perf_counter()
            det.fit_outputs(outputs[det.uses_density][0])
            timings["fit"][name] = time.perf_counter() - t0
        for name, det in Progress(dets.items(), desc="detectors (score)", unit="detector"):
            _, d_test, d_ood = outputs[det.uses_density]
            t0 = time.perf_counter()
            scores[name] = {"in": det.score_outputs(d_test).cpu()}
            for set_name, o in d_ood.items():
                scores[name][set_name] = det.score_outputs(o).cpu()
            timings["score"][name] = time.perf_counter() - t0
    timings["shared_searches"] = {"searches": searches.searches, "reused": searches.reused,
                                  "rows_searched_again": searches.redone}
    own = [n for n, d in dets.items() if "input" in (d.needs | d.fit_needs)]
    rows = []
    for name in dets:
        for set_name in oods:
            m = ood_metrics(scores[name]["in"], scores[name][set_name])
            rows.append({
                "detector": name, "ood_set": set_name, "auroc": m["auroc"],
                "aupr_in": m["aupr_in"], "aupr_out": m["aupr_out"],
                "fpr95": m["fpr_at_95_tpr"], "detection_error": m["detection_error"],
                "n_in": m["n_in"], "n_out": m["n_out"],
            })

    table = OODTable(
        in_data=in_name, out_sets=list(oods), detectors=names, rows=rows, accuracy=accuracy,
        fit_split=fit_split, n_fit=len(fit), n_test=len(test), timings=timings,
        own_passes=own, params={n: _jsonable_params(d) for n, d in dets.items()}, scores=scores,
    )
    timings["total"] = time.perf_counter() - t_start
    timings["shared_forward_total"] = sum(timings["forward"].values()) + sum(
        timings.get("density", {}).values())
    return table
