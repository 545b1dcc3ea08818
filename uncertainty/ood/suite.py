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
batch through the classifier) and RaPP (its own autoencoder). ``timings`` records the shared
passes, each detector's fit and scoring time, and the total.

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

from dunno.data import ArrayDataset, DatasetInfo, is_user_data, load_dataset
from dunno.devices import resolve_device
from dunno.inputs import as_arrays, describe_kind, model_dtype
from dunno.models import check_compiled_features, check_model_data
from dunno.progress import Progress, reports_progress
from dunno.validation import check_choice, check_int
from evaluation.metrics import has_code_length, ood_metrics
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs, check_layer, extract_outputs
from uncertainty.ood.registry import DETECTORS, make_detector, resolve_alias, resolve_alias_params
from uncertainty.ood.table import OODTable

__all__ = ["FIT_SPLITS", "DensityInputs", "build_detectors", "load_ood_data",
           "resolve_detectors", "run_ood"]

#: The in-distribution splits detectors can be fitted on.
FIT_SPLITS = ("train", "val", "train-full")

#: ``(dataset, split) -> dataset``: a dataset as the density model scores it.
DensityInputs = Callable[[ArrayDataset, str], ArrayDataset]


def _names(value, what: str) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    out = [v.strip() if isinstance(v, str) else v for v in value]
    out = [v for v in out if not (isinstance(v, str) and not v)]
    if not out:
        raise ValueError(f"The '{what}' argument names nothing.")
    return out


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


def _as_dataset(data, name: str, arg: str, dtype) -> ArrayDataset:
    """User data of any kind read by :mod:`dunno.inputs` as an ArrayDataset named ``name``."""
    if isinstance(data, ArrayDataset) and dtype is None:
        return data
    x, y = as_arrays(data, name=arg, owner="run_ood", dtype=dtype)
    value_range = None
    if x.is_floating_point():
        value_range = (float(x.min()), float(x.max()))
    kind = {4: "image", 3: "sequence"}.get(x.dim(), "vector")
    info = DatasetInfo(name, kind, tuple(x.shape[1:]), value_range=value_range,
                       description="user data given to run_ood")
    return ArrayDataset(x, y, info)


def _load_out_set(spec, test: ArrayDataset, root, dtype=None) -> tuple[str, ArrayDataset]:
    name, spec = spec if isinstance(spec, tuple) else (None, spec)
    if isinstance(spec, ArrayDataset):
        ds, name = spec, name or spec.info.name
    elif isinstance(spec, str):
        split = "all" if is_user_data(spec) else "test"  # a user file is all OOD
        ds, name = load_dataset(spec, split, root, like=test), name or spec
    elif name is not None and describe_kind(spec) != "unsupported":
        ds = _as_dataset(spec, name, f"out_sets[{name!r}]", dtype)
    else:
        raise ValueError(
            "Each OOD set must be a dataset spec (str) or an ArrayDataset, or user data "
            "(numpy, tensor, Dataset, DataLoader) given by name as out_sets={name: data}. Got "
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


def load_ood_data(in_data, out_sets, *, fit_split: str = "train",
                  fit_size: int | None = None, seed: int = 0, root=None, dtype=None
                  ) -> tuple[ArrayDataset, ArrayDataset, dict[str, ArrayDataset]]:
    """``(fit, test, oods)``: the fit split of ``in_data`` (a ``seed``-ed random subset of
    ``fit_size`` examples when given), its test split, and the OOD sets by name (specs are
    loaded with split ``test`` and the test split's shape; each must be non-empty and of the
    in-distribution input shape). ``in_data`` may be a spec or the user's ``(fit, test)``
    data, and ``out_sets`` a dict ``{name: spec or data}`` (see :func:`run_ood`); user data
    is cast to the floating ``dtype`` when given (the model's)."""
    if isinstance(in_data, str):
        fit = load_dataset(in_data, fit_split, root)
        test = load_dataset(in_data, "test", root)
    elif isinstance(in_data, tuple | list) and len(in_data) == 2:
        if fit_split != "train":
            raise ValueError(f"The 'fit_split' parameter of run_ood selects a split of a "
                             f"dataset spec; with in_data=(fit, test) it must stay 'train'. "
                             f"Got {fit_split!r} instead.")
        fit = _as_dataset(in_data[0], "in_data (fit)", "in_data[0]", dtype)
        test = _as_dataset(in_data[1], "in_data (test)", "in_data[1]", dtype)
        if fit.x.shape[1:] != test.x.shape[1:]:
            raise ValueError(f"The 'in_data' fit and test sets of run_ood must have the same "
                             f"input shape. Got {tuple(fit.x.shape[1:])} and "
                             f"{tuple(test.x.shape[1:])} instead.")
    else:
        raise ValueError("The 'in_data' argument of run_ood must be a dataset spec (str) or "
                         "the user's data as (fit, test), each a numpy array, tensor, (x, y) "
                         f"pair, Dataset or DataLoader. Got {type(in_data).__name__} instead.")
    if fit_size is not None and fit_size < len(fit):
        g = torch.Generator().manual_seed(seed)
        fit = fit.subset(torch.randperm(len(fit), generator=g)[:fit_size].sort().values)
    if isinstance(out_sets, dict):
        specs = [(str(name), spec) for name, spec in out_sets.items()]
        if not specs:
            raise ValueError("The 'out_sets' argument of run_ood is an empty dict: name at "
                             "least one OOD set.")
    else:
        specs = _names(out_sets, "out_sets")
    oods = dict(_load_out_set(spec, test, root, dtype) for spec in specs)
    return fit, test, oods


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

    rows, scores, own = [], {}, []
    for name, det in Progress(dets.items(), desc="detectors (fit, score)", unit="detector"):
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
        in_data=in_name, out_sets=list(oods), detectors=names, rows=rows, accuracy=accuracy,
        fit_split=fit_split, n_fit=len(fit), n_test=len(test), timings=timings,
        own_passes=own, params={n: _jsonable_params(d) for n, d in dets.items()}, scores=scores,
    )
    timings["total"] = time.perf_counter() - t_start
    timings["shared_forward_total"] = sum(timings["forward"].values()) + sum(
        timings.get("density", {}).values())
    return table
