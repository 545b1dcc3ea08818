r"""ODIN (Liang, Li & Srikant, "Enhancing The Reliability of Out-of-distribution Image
Detection in Neural Networks", ICLR 2018): temperature scaling plus input perturbation.

Perturb the input against the gradient of the (negative log) top softmax probability at
temperature :math:`T`, then score the perturbed input by its temperature-scaled MSP:

.. math::

    \tilde x = x - \varepsilon \operatorname{sign}\big(-\nabla_x \log S_{\hat y}(x; T)\big),
    \qquad S_c(x; T) = \frac{e^{z_c(x)/T}}{\sum_{c'} e^{z_{c'}(x)/T}},

.. math::

    s(x) = -\max_c S_c(\tilde x; T)

(higher = more OOD). With :math:`\varepsilon = 0, T = 1` this is exactly MSP. The input
gradient needs a forward and a backward pass per batch, so ODIN always makes its own passes
(it cannot use a shared cache of logits). :math:`\varepsilon` is in input units (pixels in
``[0, 1]`` for :mod:`dunno.data` images); the paper's :math:`T = 1000,
\varepsilon = 0.0014` are the defaults.

**Tuning without test OOD data** (``tune=True``). The paper tuned :math:`(T, \varepsilon)` on
1 000 images of each *test* OOD set, which leaks the test distribution. Here ``fit(loader)``
never sees test OOD data:

* by default it picks :math:`\varepsilon` from ``epsilons`` to maximise the mean
  :math:`\max_c S_c(\tilde x; T)` of ``tune_size`` in-distribution examples from ``loader``
  (the in-distribution-only criterion of Hsu et al., "Generalized ODIN", CVPR 2020). An
  in-distribution-only criterion cannot choose :math:`T` (the mean MSP always prefers
  :math:`T = 1`), so ``temperature`` is kept;
* with ``fit(loader, ood_loader=...)``, a *validation* OOD set chosen by the user (it must
  not be one of the test OOD sets), it picks the pair :math:`(T, \varepsilon)` from
  ``temperatures`` x ``epsilons`` with the highest AUROC between ``tune_size`` examples of
  each, as the paper does.

The chosen values are ``temperature_`` and ``epsilon_``; without tuning they equal the
parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.errors import check_is_fitted
from dunno.inputs import as_loader, model_dtype
from dunno.models import check_input_dtype
from dunno.progress import Progress
from dunno.validation import check_bool, check_float, check_int, check_seed
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs, extract_outputs, model_device

__all__ = ["ODIN", "odin_score"]


def _perturb_and_score(
    model: nn.Module, x: torch.Tensor, temperature: float, epsilon: float
) -> torch.Tensor:
    """Top temperature-scaled softmax probability of the perturbed batch. ``(B,)`` float64."""
    if epsilon == 0:
        with torch.no_grad():
            z = model(x).to(torch.float64) / temperature
        return torch.softmax(z, dim=1).amax(dim=1)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        log_s = torch.log_softmax(model(x) / temperature, dim=1)  # (B, C)
        loss = -log_s.amax(dim=1).sum()  # -log S_yhat(x; T)
        (grad,) = torch.autograd.grad(loss, x)
    x_tilde = (x - epsilon * grad.sign()).detach()  # (B, ...)
    with torch.no_grad():
        z = model(x_tilde).to(torch.float64) / temperature
    return torch.softmax(z, dim=1).amax(dim=1)


def odin_score(
    model: nn.Module,
    x: torch.Tensor,
    *,
    temperature: float = 1000.0,
    epsilon: float = 0.0014,
    batch_size: int = 256,
    progress: bool | None = None,
) -> torch.Tensor:
    r"""ODIN score :math:`-\max_c S_c(\tilde x; T)` of inputs ``x`` (see the module docstring).

    Args:
        model: classifier ``x -> logits (N, C)``; run in eval mode, weights unchanged.
        x: ``(N, ...)`` inputs (on any device; moved batch by batch to the model's).
        temperature: :math:`T > 0`.
        epsilon: perturbation magnitude :math:`\varepsilon \ge 0` in input units.
        batch_size: examples per forward/backward pass.
        progress: report the pass on stderr (:mod:`dunno.progress`; ``None``: as the
            enclosing call asked, off by default).

    Returns:
        ``(N,)`` float64 scores on the model's device; higher = more OOD.
    """
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        check_input_dtype(model, x, "odin_score")  # uint8 images: named, not a torch error
    device = model_device(model)
    was_training = model.training
    model.eval()
    out = []
    bar = Progress(total=len(x), desc=f"ODIN T={temperature:g} eps={epsilon:g}", unit="ex",
                   enabled=progress)
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device)
            out.append(-_perturb_and_score(model, xb, temperature, epsilon))
            bar.update(len(xb))
    finally:
        bar.close()
        model.train(was_training)
    return torch.cat(out)


class ODIN(OODDetector):
    """ODIN detector (Liang et al. 2018): :func:`odin_score`, with optional tuning.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier.
    temperature : float
        :math:`T > 0` (default 1000, the paper's).
    epsilon : float
        :math:`\\varepsilon \\ge 0` in input units (default 0.0014, the paper's).
    tune : bool
        Tune in :meth:`fit` (see the module docstring); default False (``fit`` is a no-op).
    temperatures, epsilons : tuple of float
        Grids for tuning.
    tune_size : int
        Examples (of each set) used for tuning.
    batch_size : int
        Examples per forward/backward pass.
    seed : int
        Seed of the tuning subsets.

    Attributes
    ----------
    temperature_, epsilon_ : float
        The values used for scoring (tuned, or the parameters).
    """

    name = "odin"
    reference = "Liang et al. 2018, ICLR"
    needs = frozenset({"input"})

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        temperature: float = 1000.0,
        epsilon: float = 0.0014,
        tune: bool = False,
        temperatures: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0),
        epsilons: tuple[float, ...] = (0.0, 0.0005, 0.001, 0.0014, 0.002, 0.003, 0.005,
                                       0.01, 0.02, 0.05),
        tune_size: int = 1000,
        batch_size: int = 256,
        seed: int = 0,
        layer: LayerSpec = None,
    ) -> None:
        super().__init__(model, layer=layer)
        self.temperature = temperature
        self.epsilon = epsilon
        self.tune = tune
        self.temperatures = temperatures
        self.epsilons = epsilons
        self.tune_size = tune_size
        self.batch_size = batch_size
        self.seed = seed

    @property
    def fit_needs(self) -> frozenset[str]:  # type: ignore[override]
        """``{"input"}`` when tuning, else nothing."""
        return frozenset({"input"}) if self.tune else frozenset()

    @property
    def requires_fit(self) -> bool:
        """True when tuning: scoring then needs the tuned ``temperature_`` and ``epsilon_``."""
        return self.tune is True

    def check_fitted(self) -> None:
        """Raise NotFittedError when tuning (``tune=True``) and :meth:`fit` has not run."""
        if self.tune is True:
            check_is_fitted(self, ["temperature_", "epsilon_"], "fit")

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        check_float(self.temperature, "temperature", owner, low=0.0, low_open=True)
        check_float(self.epsilon, "epsilon", owner, low=0.0)
        check_bool(self.tune, "tune", owner)
        for name, allow_zero in (("temperatures", False), ("epsilons", True)):
            grid = getattr(self, name)
            if not isinstance(grid, tuple | list) or not grid:
                raise ValueError(f"The '{name}' parameter of {owner} must be a non-empty "
                                 f"tuple of floats. Got {grid!r} instead.")
            for v in grid:
                check_float(v, name, owner, low=0.0, low_open=not allow_zero)
        check_int(self.tune_size, "tune_size", owner, low=2)
        check_int(self.batch_size, "batch_size", owner, low=1)
        check_seed(self.seed, owner)

    def _scoring_values(self) -> tuple[float, float]:
        return (getattr(self, "temperature_", self.temperature),
                getattr(self, "epsilon_", self.epsilon))

    def fit(self, x, y=None, *, ood_loader=None, batch_size: int = 512) -> ODIN:
        """No-op unless ``tune=True``; then tune as in the module docstring.

        Parameters
        ----------
        x : numpy array, tensor, (x, y) pair, Dataset or DataLoader
            In-distribution validation data (labels are not used; any kind read by
            :mod:`dunno.inputs`; NaN / inf refused).
        y : array, optional
            Labels of array ``x`` (not used).
        ood_loader : the same kinds, optional
            A validation OOD set that is **not** a test OOD set; with it both
            :math:`T` and :math:`\\varepsilon` are tuned by AUROC.
        """
        self._validate_params()
        for attr in ("temperature_", "epsilon_"):
            self.__dict__.pop(attr, None)
        batches = None if x is None else self._data(x, y, "fit", batch_size)
        if not self.tune:
            if ood_loader is not None:
                raise ValueError("ODIN.fit got an 'ood_loader' but tune=False: nothing to tune.")
            return self
        self._require_model(frozenset({"input"}), "fit")
        if batches is None:
            batches = self._data(x, y, "fit", batch_size)
        inputs = extract_outputs(None, batches, needs=("input",), batch_size=batch_size).inputs
        ood = None
        if ood_loader is not None:
            ood_batches = as_loader(ood_loader, batch_size=batch_size, name="ood_loader",
                                    owner="ODIN.fit", dtype=model_dtype(self.model))
            ood = extract_outputs(None, ood_batches, needs=("input",), batch_size=batch_size)
            ood = ood.inputs
        self._tune(inputs, ood)
        return self

    def fit_outputs(self, outputs: ModelOutputs) -> ODIN:
        """:meth:`fit` from precomputed outputs (only ``inputs`` is read, when tuning)."""
        self._validate_params()
        for attr in ("temperature_", "epsilon_"):
            self.__dict__.pop(attr, None)
        if self.tune:
            outputs = self._check_outputs(outputs, self.fit_needs, "fit_outputs")
            self._require_model(self.fit_needs, "fit")
            self._tune(outputs.inputs, None)
        return self

    def _subset(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        if len(x) <= self.tune_size:
            return x
        g = torch.Generator().manual_seed(seed)
        return x[torch.randperm(len(x), generator=g)[: self.tune_size].sort().values]

    def _tune(self, inputs: torch.Tensor, ood: torch.Tensor | None) -> None:
        from evaluation.metrics.ood import auroc  # the one documented AUROC convention

        x_in = self._subset(inputs, self.seed)
        best = None
        if ood is None:
            t = float(self.temperature)
            for eps in self.epsilons:
                mean_msp = -float(odin_score(self.model, x_in, temperature=t, epsilon=float(eps),
                                             batch_size=self.batch_size).mean())
                if best is None or mean_msp > best[0]:
                    best = (mean_msp, t, float(eps))
        else:
            x_out = self._subset(ood, self.seed + 1)
            for t in self.temperatures:
                for eps in self.epsilons:
                    kw = {"temperature": float(t), "epsilon": float(eps),
                          "batch_size": self.batch_size}
                    auc = auroc(odin_score(self.model, x_in, **kw),
                                 odin_score(self.model, x_out, **kw))
                    if best is None or auc > best[0]:
                        best = (auc, float(t), float(eps))
        _, self.temperature_, self.epsilon_ = best

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        self._require_model(self.needs, "score")
        temperature, epsilon = self._scoring_values()
        return odin_score(self.model, outputs.inputs, temperature=temperature, epsilon=epsilon,
                          batch_size=self.batch_size)
