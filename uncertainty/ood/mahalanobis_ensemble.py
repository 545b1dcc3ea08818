r"""Mahalanobis distances at several depths of the classifier, combined without OOD data: Lee et
al.'s feature ensemble (Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018, Sec. 2) with the layer-wise
Fisher combination of Haroush et al. ("A Statistical Framework for Efficient Out of
Distribution Detection in Deep Neural Networks", ICLR 2022) in place of the paper's logistic
regression fitted on OOD validation data.

For each layer :math:`\ell` of ``layers`` the output :math:`f_\ell(x)` is average-pooled to a
``grid x grid`` map (convolutions; Lee et al. pool to ``1 x 1``) or flattened (linear layers),
and class means :math:`\mu_{\ell,c}` and one tied covariance :math:`\Sigma_\ell` are fitted on
the training data as in :mod:`uncertainty.ood.mahalanobis` (maximum likelihood, inverted with
the pseudo-inverse of Lee et al.'s code). The layer's score is the squared distance to the
closest class,

.. math::

    M_\ell(x) = \min_c\, (f_\ell(x) - \mu_{\ell,c})^\top \Sigma_\ell^{+} (f_\ell(x) - \mu_{\ell,c}).

The layers' scores live on different scales. A seeded ``holdout`` fraction of the training
data is kept out of the Gaussian fit; its scores :math:`M_\ell^{(1..n)}` give each layer a
conformal p-value :math:`p_\ell(x) = (1 + \#\{i : M_\ell^{(i)} \ge M_\ell(x)\}) / (n + 1)`
(with the exponential tail of :func:`~uncertainty.ood.combined.conformal_neg_log_p` beyond
the largest reference score), and Fisher's method sums the evidence:

.. math::

    s(x) = -\sum_\ell \log p_\ell(x).

Early layers see local stroke and texture statistics that the penultimate layer discards;
the last layers see class evidence. **Default layers** (``layers=None``): every
``Conv1d`` / ``Conv2d`` / ``Linear`` module of the model in the order of
``named_modules()``, except the last ``Linear`` (the logits) and the modules inside
``model.head``; convolution outputs are pooled to ``grid x grid`` (``NAME@grid``). For the
LeNet-5 of :mod:`dunno.nets`: ``conv1@2``, ``conv2@2``, ``fc1``, ``fc2`` (the modules' own
outputs, before the ReLU that ``forward`` applies). The detector runs the classifier itself
(one pass per batch with a hook on every layer), so it reads the inputs rather than the
shared features and ignores a run's ``layer``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dunno.models import model_kind
from dunno.validation import check_int, check_probability_level, check_seed
from uncertainty.ood._base import OODDetector
from uncertainty.ood._gaussian import num_classes_of, projected_sq_distances, tied_gaussian
from uncertainty.ood.combined import conformal_neg_log_p
from uncertainty.ood.outputs import ModelOutputs, model_device, resolve_layer, split_grid

__all__ = ["MahalanobisEnsemble", "default_layers", "layer_features",
           "mahalanobis_ensemble_score"]


def mahalanobis_ensemble_score(
    features: list[torch.Tensor], means: list[torch.Tensor], whitenings: list[torch.Tensor],
    references: list[torch.Tensor], tail: float = 0.01,
) -> torch.Tensor:
    r"""Fisher's sum over layers of the conformal :math:`-\log p` of each layer's squared
    Mahalanobis distance to the closest class (module docstring).

    Args:
        features: per layer ``(N, F_l)``.
        means: per layer ``(C, F_l)`` class means.
        whitenings: per layer ``(F_l, r_l)`` factors ``W`` with :math:`\Sigma_l^+ = W W^\top`.
        references: per layer ``(n,)`` held-out in-distribution distances.
        tail: fraction of each reference used for the exponential tail.

    Returns:
        ``(N,)`` float64, ``>= 0``; higher = more OOD.
    """
    if not (len(features) == len(means) == len(whitenings) == len(references)) or not features:
        raise ValueError("mahalanobis_ensemble_score needs the same non-zero number of "
                         f"features, means, whitenings and references per layer. Got "
                         f"{len(features)}, {len(means)}, {len(whitenings)} and "
                         f"{len(references)}.")
    total = None
    for f, mu, w, ref in zip(features, means, whitenings, references, strict=True):
        d = projected_sq_distances(f, mu.to(f.device), w.to(f.device)).amin(dim=1)  # (N,)
        z = conformal_neg_log_p(d, ref, tail).cpu()
        total = z if total is None else total + z
    return total


def default_layers(model: nn.Module, grid: int = 2) -> tuple[str, ...]:
    """The default ``layers`` of :class:`MahalanobisEnsemble` for ``model`` (module
    docstring): its convolutions (as ``NAME@grid``) and linear layers, without the last
    linear layer and ``model.head``."""
    head = getattr(model, "head", None)
    inside_head = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
    found = [(name, m) for name, m in model.named_modules()
             if name and isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)
             and id(m) not in inside_head]
    linear = [i for i, (_, m) in enumerate(found) if isinstance(m, nn.Linear)]
    if not inside_head and linear:
        found.pop(linear[-1])  # the logits
    return tuple(f"{name}@{grid}" if isinstance(m, nn.Conv1d | nn.Conv2d) else name
                 for name, m in found)


def _pooled(out: torch.Tensor, grid: int | None) -> torch.Tensor:
    """``(N, C, *spatial)`` average-pooled to ``grid`` cells per axis and flattened; other
    outputs (and ``grid=None``) flattened."""
    if grid is not None and out.dim() == 3:
        return F.adaptive_avg_pool1d(out, grid).flatten(1)
    if grid is not None and out.dim() == 4:
        return F.adaptive_avg_pool2d(out, grid).flatten(1)
    return out.flatten(1)


@torch.no_grad()
def layer_features(model: nn.Module, x: torch.Tensor, layers: tuple[str, ...],
                   batch_size: int = 512) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each layer's features ``(N, F_l)`` (``NAME@k``: pooled to ``k x k``) and the logits
    ``(N, C)`` of inputs ``x (N, ...)``, from one hooked pass per batch (eval mode)."""
    specs = [split_grid(spec, "MahalanobisEnsemble") for spec in layers]
    try:
        modules = {name: resolve_layer(model, name) for name, _ in specs}
    except ValueError as err:
        raise ValueError(f"The 'layers' parameter of MahalanobisEnsemble: {err}") from None
    device = model_device(model)
    was_training = model.training
    model.eval()
    parts: list[list[torch.Tensor]] = [[] for _ in specs]
    logits = []
    try:
        for start in range(0, len(x), batch_size):
            captured: dict[str, torch.Tensor] = {}
            handles = [m.register_forward_hook(
                lambda mod, args, out, name=name, into=captured: into.__setitem__(name, out))
                for name, m in modules.items()]
            try:
                logits.append(model(x[start:start + batch_size].to(device)))
            finally:
                for h in handles:
                    h.remove()
            for k, (name, grid) in enumerate(specs):
                if name not in captured:
                    raise ValueError(f"The layer {name!r} of {type(model).__name__} did not run "
                                     "during the forward pass; choose modules that the "
                                     "model's forward uses.")
                out = captured[name]
                out = out[0] if isinstance(out, tuple | list) else out
                parts[k].append(_pooled(out, grid))
    finally:
        model.train(was_training)
    return [torch.cat(p) for p in parts], torch.cat(logits)


class MahalanobisEnsemble(OODDetector):
    """Mahalanobis distances at several layers, Fisher-combined through held-out conformal
    p-values (Lee et al. 2018; Haroush et al. 2022): see the module docstring.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier.
    layers : tuple of str, optional
        Module names (``NAME@k`` pools a convolution's output to ``k x k``); default: every
        convolution and linear layer but the logits (:func:`default_layers`).
    grid : int
        The pooling grid of the default layers' convolutions (default 2).
    holdout : float
        Fraction of the fit data held out as the p-value reference, in (0, 1).
    tail : float
        Fraction of the reference used to fit the exponential tail, in (0, 1).
    seed : int
        Seed of the fit / held-out split.

    Attributes
    ----------
    layers_ : tuple of str; means_, whitenings_ : lists per layer of ``(C, F_l)`` and
    ``(F_l, r_l)``; references_ : list per layer of ``(n,)`` held-out distances.
    """

    name = "mahalanobis-ensemble"
    reference = "Lee et al. 2018, NeurIPS (feature ensemble); Haroush et al. 2022, ICLR " \
                "(Fisher's combination of layer-wise p-values)"
    needs = frozenset({"input"})
    fit_needs = frozenset({"input"})
    fit_needs_labels = True
    _state_names = ("layers_", "means_", "whitenings_", "references_")

    def __init__(self, model: nn.Module | None = None, *, layers: tuple[str, ...] | None = None,
                 grid: int = 2, holdout: float = 0.2, tail: float = 0.01,
                 seed: int = 0) -> None:
        super().__init__(model)
        self.layers = layers
        self.grid = grid
        self.holdout = holdout
        self.tail = tail
        self.seed = seed

    @classmethod
    def applies_to(cls, model: nn.Module | None) -> bool:
        """Models with modules to hook: a convolution or linear layer besides the logits, and
        not a TorchScript or ``torch.export`` graph."""
        if model is None:
            return True
        return model_kind(model) not in ("torchscript", "export") and bool(
            default_layers(model))

    @classmethod
    def _cannot_score_reason(cls) -> str:
        return ("has no convolution or linear layer to hook besides the logits (a TorchScript "
                "or torch.export model runs as one compiled graph). Load the nn.Module itself "
                "(--model MODULE:FACTORY --weights FILE), or use another detector.")

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        if self.layers is not None:
            if (not isinstance(self.layers, tuple | list) or not self.layers
                    or not all(isinstance(n, str) and n for n in self.layers)
                    or len(set(self.layers)) != len(self.layers)):
                raise ValueError(f"The 'layers' parameter of {owner} must be None or a "
                                 f"non-empty list of distinct module names. Got "
                                 f"{self.layers!r} instead.")
            for spec in self.layers:
                try:
                    split_grid(spec, owner)
                except ValueError:
                    raise ValueError(f"The 'layers' parameter of {owner}: {spec!r} must be NAME "
                                     "or NAME@k with k an int >= 1 (the pooling grid).") from None
        check_int(self.grid, "grid", owner, low=1)
        check_probability_level(self.holdout, "holdout", owner)
        check_probability_level(self.tail, "tail", owner)
        check_seed(self.seed, owner)

    def _resolved_layers(self) -> tuple[str, ...]:
        layers = tuple(self.layers) if self.layers is not None else default_layers(
            self.model, self.grid)
        if not layers:
            raise ValueError(f"{type(self).__name__} found no convolution or linear layer "
                             f"besides the logits in {type(self.model).__name__}; pass "
                             "layers=[...] (module names).")
        return layers

    def _fit(self, outputs: ModelOutputs) -> None:
        owner = type(self).__name__
        self._require_model(self.fit_needs, "fit")
        if outputs.labels is None:
            raise ValueError(f"{owner} fits one Gaussian per class and layer and needs "
                             "labelled training data; the outputs have no labels.")
        n = len(outputs)
        n_hold = int(round(self.holdout * n))
        if n_hold < 2 or n - n_hold < 2:
            raise ValueError(f"{owner} needs at least 2 examples on each side of its "
                             f"{self.holdout:g} held-out split; the fit data has {n} examples.")
        layers = self._resolved_layers()
        feats, logits = layer_features(self.model, outputs.inputs, layers)
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=g)
        held, kept = order[:n_hold].sort().values, order[n_hold:].sort().values
        labels = outputs.labels.cpu()
        classes = num_classes_of(logits, labels, owner)
        means, whitenings, references = [], [], []
        for f in feats:
            dev = f.device
            fit = tied_gaussian(f[kept.to(dev)], labels[kept].to(dev), classes, owner)
            held_f = f[held.to(dev)]
            d = projected_sq_distances(held_f, fit["means"], fit["whitening"]).amin(dim=1)
            means.append(fit["means"])
            whitenings.append(fit["whitening"])
            references.append(d.cpu())
        self.layers_ = layers
        self.means_ = means
        self.whitenings_ = whitenings
        self.references_ = references

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        self._require_model(self.needs, "score")
        feats, _ = layer_features(self.model, outputs.inputs, self.layers_)
        return mahalanobis_ensemble_score(feats, self.means_, self.whitenings_,
                                          self.references_, self.tail)
