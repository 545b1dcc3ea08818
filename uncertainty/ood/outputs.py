r"""What a classifier computes for a set of inputs, computed once and shared by every detector.

Most detectors read only the classifier's **logits** ``(N, C)`` and/or its **penultimate
features** ``(N, F)``. :func:`extract_outputs` runs the model once over a dataset and returns a
:class:`ModelOutputs` holding both, so that a benchmark with ten detectors makes one forward
pass per dataset instead of ten (see :func:`uncertainty.ood.run_ood`).

**Where features come from** (:func:`forward_outputs`):

* ``layer=None`` and the model has a ``features`` method (every :mod:`dunno.nets` backbone):
  ``features = model.features(x)`` and, when the model also has a ``head``,
  ``logits = model.head(features)`` -- one pass through the network;
* ``layer="fc2"`` (a name from ``model.named_modules()``): a forward hook on that module records
  its output (flattened to ``(N, F)``) while ``logits = model(x)`` runs -- also one pass;
* ``layer="stages.1@2"`` (a name with a grid): the output ``(N, C, H, W)`` is average-pooled to
  a ``2 x 2`` grid of cells (:func:`torch.nn.functional.adaptive_avg_pool2d`) and flattened to
  ``(N, 4C)``, keeping the coarse layout that a global average throws away (spatial pyramid
  pooling, He et al., 2014, "Spatial Pyramid Pooling in Deep Convolutional Networks for
  Visual Recognition", ECCV); ``(N, C, T)`` sequence outputs are pooled to ``k`` cells;
* ``layer=("stages.1", "stages.2")`` (several names): hooks on every module; each output
  ``(N, C_k, *spatial)`` is averaged over its spatial positions to ``(N, C_k)`` and the results
  are concatenated to ``(N, sum_k C_k)``, one feature vector spanning several depths -- one pass
  as well. The pooling is Lee et al.'s (2018, "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", NeurIPS), who fit one Gaussian model
  per layer and combine the scores; concatenating lets a single density (Mahalanobis, DDU, kNN)
  see all layers at once. A name in the list may carry a grid (``("stages.1@2", "stages.2")``:
  the middle stage's four quadrant averages next to the last stage's global average).
  Outputs are read channels-first, as convolutions produce them; a transformer block's
  ``(N, T, D)`` tokens would be averaged over ``D``, so for token models use one layer or the
  model's ``features``;
* neither: a :class:`ValueError` naming the model class and how to fix it.

Detectors that need the **inputs** themselves (ODIN and Mahalanobis input pre-processing
differentiate through the model; RaPP runs its own autoencoder) read ``ModelOutputs.inputs``
and make their own passes.

**Density models.** The density-based detectors (likelihood, likelihood ratio, complexity
correction, typicality) read ``ModelOutputs.log_prob``: ``log p(x)`` in nats under a density
model (anything with ``log_prob(x) -> (N,)``: NADE, PixelCNN, PixelRNN, a VAE's importance-
sampled estimate), computed once per dataset by :func:`extract_outputs` with ``density=`` and
shared by all of them. ``density_transform`` maps the inputs as given (e.g. grey images in
[0, 1]) to what the density model scores (e.g. 0/1 pixels for a binary model).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from dunno.models import check_input_dtype, check_model_data
from dunno.progress import Progress
from dunno.validation import check_int

__all__ = [
    "KNOWN_NEEDS",
    "LayerSpec",
    "ModelOutputs",
    "check_density",
    "density_log_prob",
    "extract_outputs",
    "check_layer",
    "forward_outputs",
    "model_device",
    "resolve_layer",
    "split_grid",
]

#: ``None`` (``model.features``), one module name (its flattened output) or several names (their
#: spatially averaged outputs, concatenated); any name may end in ``@k`` (pool to a ``k x k``
#: grid).
LayerSpec = str | tuple[str, ...] | None

#: What a detector can ask for: the classifier's logits, its penultimate features, the inputs,
#: the log-density of the inputs under a density model.
KNOWN_NEEDS = frozenset({"logits", "features", "input", "log_prob"})


@dataclass
class ModelOutputs:
    """A classifier's (and a density model's) outputs on ``N`` examples, shared by all
    detectors.

    Attributes
    ----------
    logits : Tensor or None
        ``(N, C)`` raw outputs before the softmax.
    features : Tensor or None
        ``(N, F)`` penultimate features (``model.features(x)`` or a hooked layer).
    labels : Tensor or None
        ``(N,)`` int64 class labels (``None`` for unlabelled data, e.g. OOD sets).
    inputs : Tensor or None
        ``(N, ...)`` the inputs themselves, for detectors that make their own passes.
    log_prob : Tensor or None
        ``(N,)`` float64 ``log p(x)`` in nats under the density model.
    """

    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None

    def __post_init__(self) -> None:
        lengths = {f.name: len(v) for f in fields(self) if (v := getattr(self, f.name)) is not None}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"The fields of ModelOutputs must all have the same number of rows. Got {lengths}."
            )
        for name in ("logits", "features"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, torch.Tensor) or value.dim() != 2):
                shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
                raise ValueError(
                    f"The '{name}' field of ModelOutputs must be a 2-D tensor (N, "
                    f"{'C' if name == 'logits' else 'F'}). Got {shape} instead."
                )
        lp = self.log_prob
        if lp is not None and (not isinstance(lp, torch.Tensor) or lp.dim() != 1):
            shape = tuple(lp.shape) if hasattr(lp, "shape") else type(lp).__name__
            raise ValueError(
                f"The 'log_prob' field of ModelOutputs must be a 1-D tensor (N,). Got {shape} "
                "instead."
            )

    def __len__(self) -> int:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                return len(value)
        return 0

    def available(self) -> frozenset[str]:
        """The needs (``"logits"``, ``"features"``, ``"input"``, ``"log_prob"``) these outputs
        can serve."""
        have = set()
        if self.logits is not None:
            have.add("logits")
        if self.features is not None:
            have.add("features")
        if self.inputs is not None:
            have.add("input")
        if self.log_prob is not None:
            have.add("log_prob")
        return frozenset(have)

    def subset(self, index: torch.Tensor) -> ModelOutputs:
        """The rows at ``index`` (a LongTensor or boolean mask) of every field."""

        def take(value):
            if value is None:
                return None
            return value[index.to(value.device)]

        return ModelOutputs(**{f.name: take(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: str | torch.device) -> ModelOutputs:
        """Every field except ``inputs`` moved to ``device`` (inputs move batch by batch)."""

        def move(value):
            return None if value is None else value.to(device)

        return ModelOutputs(move(self.logits), move(self.features), move(self.labels),
                            self.inputs, move(self.log_prob))


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU for a model with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    """The sub-module of ``model`` called ``layer`` (a name from ``named_modules()``)."""
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in modules or layer == "":
        names = [n for n in modules if n]
        shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        raise ValueError(
            f"The 'layer' parameter must name a module of {type(model).__name__}. Got {layer!r}; "
            f"its modules are: {shown}."
        )
    return modules[layer]


def split_grid(name: str, owner: str = "extract_outputs") -> tuple[str, int | None]:
    """``"stages.1@2"`` -> ``("stages.1", 2)``; ``"stages.1"`` -> ``("stages.1", None)``.

    The grid ``k >= 1`` asks for the module's output average-pooled to ``k x k`` cells (module
    names never contain ``@``).
    """
    module, at, grid = name.rpartition("@")
    if not at:
        return name, None
    if not module or not (grid.isascii() and grid.isdigit()) or int(grid) < 1:
        raise ValueError(
            f"The 'layer' parameter of {owner}: {name!r} must be NAME or NAME@k with k an int "
            ">= 1 (the pooling grid)."
        )
    return module, int(grid)


def check_layer(layer, owner: str = "extract_outputs") -> LayerSpec:
    """Validate a ``layer`` parameter: None, a module name, or a non-empty list / tuple of
    distinct module names (returned as a tuple), each optionally ``NAME@k``. Whether the
    names exist is checked against the model when features are computed
    (:func:`resolve_layer`)."""
    if layer is None or (isinstance(layer, str) and layer):
        if layer is not None:
            split_grid(layer, owner)
        return layer
    if isinstance(layer, list | tuple) and layer and all(
            isinstance(name, str) and name for name in layer):
        if len(set(layer)) != len(layer):
            raise ValueError(f"The 'layer' parameter of {owner} names a module twice: "
                             f"{list(layer)!r}.")
        for name in layer:
            split_grid(name, owner)
        return tuple(layer)
    raise ValueError(
        f"The 'layer' parameter of {owner} must be None, a module name (str) or a non-empty "
        f"list of module names. Got {layer!r} instead."
    )


def _pool(out: torch.Tensor, grid: int, name: str) -> torch.Tensor:
    """``(N, C, *spatial)`` -> ``(N, C * grid^d)``: average over ``grid`` cells per spatial
    axis (channels first, cells in row-major order); ``(N, F)`` passes through when
    ``grid == 1``."""
    if out.ndim == 2 and grid == 1:
        return out
    if out.ndim == 3:
        return F.adaptive_avg_pool1d(out, grid).flatten(1)
    if out.ndim == 4:
        return F.adaptive_avg_pool2d(out, grid).flatten(1)
    if out.ndim > 4 and grid == 1:
        return out.flatten(2).mean(dim=2)
    raise ValueError(
        f"The layer {name!r} gives outputs of shape {tuple(out.shape)}; a pooling grid of {grid} "
        "needs (N, C, T) or (N, C, H, W) outputs."
    )


def _check_feature_access(model: nn.Module, layer: LayerSpec) -> None:
    if layer is None and not callable(getattr(model, "features", None)):
        names = [n for n, _ in model.named_modules() if n]
        shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
        raise ValueError(
            f"This detector needs penultimate features, but {type(model).__name__} has no "
            "'features' method and no 'layer' was given. Pass layer='<module name>' to record "
            f"that module's output with a forward hook (modules of {type(model).__name__}: "
            f"{shown or 'none'})."
        )


def forward_outputs(
    model: nn.Module,
    x: torch.Tensor,
    *,
    needs: Iterable[str] = ("logits", "features"),
    layer: LayerSpec = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Logits ``(N, C)`` and features ``(N, F)`` of one batch ``x``, in one pass.

    Runs under the caller's grad mode (wrap in :func:`torch.no_grad` for inference). Returns
    ``None`` for what is not in ``needs``. See the module docstring for where features come
    from: one hooked layer's output is flattened to ``(N, F)``; several layers' outputs are
    averaged over their spatial positions and concatenated.
    """
    needs = frozenset(needs)
    want_logits, want_features = "logits" in needs, "features" in needs
    if not want_features:
        return (model(x) if want_logits else None), None
    _check_feature_access(model, layer)
    if layer is None:
        feats = model.features(x)  # (N, F)
        logits = None
        if want_logits:
            head = getattr(model, "head", None)
            logits = head(feats) if callable(head) else model(x)  # (N, C)
        return logits, feats.flatten(1)
    specs = (layer,) if isinstance(layer, str) else check_layer(layer)
    grids = [split_grid(spec) for spec in specs]  # [(module name, grid or None)]
    names = list(dict.fromkeys(name for name, _ in grids))
    captured: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in names:
            handles.append(resolve_layer(model, name).register_forward_hook(
                lambda module, args, output, name=name: captured.__setitem__(name, output)))
        logits = model(x)  # (N, C)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if name not in captured]
    if missing:
        raise ValueError(
            f"The layer(s) {missing} of {type(model).__name__} did not run during the forward "
            "pass; choose modules that the model's forward uses."
        )
    outs = {name: out[0] if isinstance(out, tuple | list) else out
            for name, out in captured.items()}
    if isinstance(layer, str) and grids[0][1] is None:
        feats = outs[layer].flatten(1)  # (N, F)
    else:  # each (N, C_k, *spatial) -> (N, C_k * cells_k), then concatenated
        feats = torch.cat([_pool(outs[name], 1 if grid is None else grid, name)
                           for name, grid in grids], dim=1)
    return (logits if want_logits else None), feats


def _batches(data, batch_size: int):
    """Yield ``(x, y or None)`` from a tensor, an ArrayDataset or a loader of batches."""
    if isinstance(data, torch.Tensor):
        for start in range(0, len(data), batch_size):
            yield data[start:start + batch_size], None
        return
    if hasattr(data, "x") and isinstance(data.x, torch.Tensor):  # ArrayDataset
        x = data.x
        y = data.y if getattr(data, "y", None) is not None else None
        for start in range(0, len(x), batch_size):
            stop = start + batch_size
            yield x[start:stop], (None if y is None else y[start:stop])
        return
    for batch in data:
        if isinstance(batch, list | tuple):
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            yield batch, None


def _num_examples(data) -> int | None:
    """The number of examples of ``data`` (a tensor, an ArrayDataset, a loader with a sized
    ``dataset``), None when unknown."""
    x = data if isinstance(data, torch.Tensor) else getattr(data, "x", None)
    if isinstance(x, torch.Tensor):
        return len(x)
    dataset = getattr(data, "dataset", None)
    return len(dataset) if hasattr(dataset, "__len__") else None


@torch.no_grad()
def extract_outputs(
    model: nn.Module | None,
    data,
    *,
    needs: Iterable[str] = ("logits", "features"),
    layer: LayerSpec = None,
    batch_size: int = 512,
    keep_inputs: bool | None = None,
    density=None,
    density_transform=None,
    progress: bool | None = None,
    desc: str = "outputs",
) -> ModelOutputs:
    """Run ``model`` once (eval mode) over ``data`` and collect what detectors need.

    Parameters
    ----------
    model : nn.Module or None
        The classifier; ``None`` is allowed when ``needs`` is only ``{"input"}``.
    data : Tensor, ArrayDataset or iterable of batches
        Inputs ``(N, ...)``; a :class:`~dunno.data.ArrayDataset`; or a loader yielding
        ``(x, y)`` pairs (``y`` of ``-1`` everywhere means unlabelled) or bare ``x``.
    needs : iterable of str
        Any of ``"logits"``, ``"features"``, ``"input"``.
    layer : str or sequence of str, optional
        Module whose (flattened) output are the features, or several modules whose spatially
        averaged outputs are concatenated (default: ``model.features``).
    batch_size : int
        Batch size for tensors and datasets (loaders keep their own).
    keep_inputs : bool, optional
        Keep the inputs in :attr:`ModelOutputs.inputs` (default: when ``"input"`` is needed).
        For a tensor or dataset they are referenced, not copied.
    density : object with ``log_prob(x) -> (N,)``, optional
        The density model, required when ``needs`` has ``"log_prob"`` (run in eval mode on
        its own device, without gradients).
    density_transform : callable, optional
        ``x -> x'`` applied to each batch before ``density.log_prob`` (e.g. binarisation for
        a binary model); identity by default.
    progress : bool, optional
        Report the pass on stderr (:mod:`dunno.progress`), in examples, as ``desc``;
        ``None``: as the enclosing call asked (off by default).

    Returns
    -------
    ModelOutputs
        ``logits (N, C)`` and ``features (N, F)`` on the model's device in its dtype,
        ``labels (N,)`` when the data has them, ``inputs (N, ...)`` on the CPU,
        ``log_prob (N,)`` float64 on the CPU.
    """
    needs = frozenset(needs)
    unknown = sorted(needs - KNOWN_NEEDS)
    if unknown:
        raise ValueError(f"Unknown needs {unknown}; known: {sorted(KNOWN_NEEDS)}.")
    check_int(batch_size, "batch_size", "extract_outputs", low=1)
    keep = ("input" in needs) if keep_inputs is None else keep_inputs
    run = needs & {"logits", "features"}
    if run and model is None:
        raise ValueError(f"Computing {sorted(run)} needs a model; got model=None.")
    layer = check_layer(layer)
    if "features" in run:
        _check_feature_access(model, layer)
    want_density = "log_prob" in needs
    if want_density:
        check_density(density)
    if density_transform is not None and not callable(density_transform):
        raise ValueError(f"The 'density_transform' argument must be callable (x -> x'). Got "
                         f"{type(density_transform).__name__} instead.")
    device = model_device(model) if model is not None else torch.device("cpu")
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    density_training = getattr(density, "training", False) if want_density else False
    if want_density and isinstance(density, nn.Module):
        density.eval()
    logits, feats, labels, inputs, log_probs = [], [], [], [], []
    unlabelled = False
    bar = Progress(total=_num_examples(data), desc=desc, unit="ex", enabled=progress)
    try:
        for i, (x, y) in enumerate(_batches(data, batch_size)):
            if run:
                try:
                    z, f = forward_outputs(model, x.to(device), needs=run, layer=layer)
                except RuntimeError:  # inputs the model cannot take: refused by name
                    if i == 0:
                        check_input_dtype(model, x, "extract_outputs")
                        check_model_data(model, x[:2].to(device), owner="extract_outputs")
                    raise
                if z is not None:
                    logits.append(z)
                if f is not None:
                    feats.append(f)
            if want_density:
                log_probs.append(density_log_prob(density, x, density_transform))
            if y is None or (isinstance(y, torch.Tensor) and y.numel() and bool((y < 0).all())):
                unlabelled = True
            else:
                labels.append(y.cpu())
            if keep:
                inputs.append(x)
            bar.update(len(x))
    finally:
        bar.close()
        if model is not None:
            model.train(was_training)
        if want_density and isinstance(density, nn.Module):
            density.train(density_training)
    n = sum(len(v) for v in (inputs or logits or feats or log_probs or labels))
    if not (logits or feats or inputs or log_probs or labels) or n == 0:
        raise ValueError("The 'data' is empty: it yielded no examples.")
    if keep and isinstance(data, torch.Tensor):
        kept = data
    elif keep and hasattr(data, "x") and isinstance(data.x, torch.Tensor):
        kept = data.x
    else:
        kept = torch.cat(inputs).cpu() if keep else None
    return ModelOutputs(
        logits=torch.cat(logits) if logits else None,
        features=torch.cat(feats) if feats else None,
        labels=None if unlabelled or not labels else torch.cat(labels),
        inputs=kept,
        log_prob=torch.cat(log_probs) if log_probs else None,
    )


def check_density(density) -> None:
    """Raise a ValueError unless ``density`` has a callable ``log_prob``."""
    if density is None or not callable(getattr(density, "log_prob", None)):
        raise ValueError(
            "Density-based detectors need a density model: an object with log_prob(x) -> (N,) "
            f"in nats (NADE, PixelCNN, PixelRNN, VAE). Got {type(density).__name__} instead."
        )


@torch.no_grad()
def density_log_prob(density, x: torch.Tensor, transform=None) -> torch.Tensor:
    """``density.log_prob(transform(x))`` of one batch as a float64 CPU tensor ``(N,)``.

    The batch moves to the density model's device (its first parameter's, CPU for a model
    without parameters); a result of the wrong shape is an error naming the model.
    """
    if transform is not None:
        x = transform(x)
    device = model_device(density) if isinstance(density, nn.Module) else torch.device("cpu")
    lp = density.log_prob(x.to(device))  # (N,)
    if not isinstance(lp, torch.Tensor) or tuple(lp.shape) != (len(x),):
        shape = tuple(lp.shape) if hasattr(lp, "shape") else type(lp).__name__
        raise ValueError(
            f"{type(density).__name__}.log_prob must return one log-density per input, shape "
            f"({len(x)},). Got {shape} instead."
        )
    return lp.detach().to("cpu", torch.float64)
