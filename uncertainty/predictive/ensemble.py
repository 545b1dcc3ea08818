r"""Deep ensembles (Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles", NeurIPS 2017).

``M`` networks from different random initialisations (and data orders) are trained
independently with a proper scoring rule -- the Gaussian negative log-likelihood for
regression, each network predicting a mean and a variance
:math:`\sigma^2 = \operatorname{softplus}(s) + 10^{-6}`, or the cross-entropy for
classification -- optionally with the paper's adversarial-training term (fast gradient sign
method, Goodfellow et al. 2015):

.. math::

    \ell(\theta, x, y) + \ell(\theta, x', y), \qquad
    x' = x + \epsilon\, r \odot \operatorname{sign}\nabla_x \ell(\theta, x, y),

with :math:`\epsilon = 0.01` times the per-feature range :math:`r` of the training inputs.
The prediction is the uniform mixture of the members. For classification that is
:func:`dunno.ensemble.mixture_log_probs`, the one implementation of the formula, also the
``forward`` of :class:`dunno.ensemble.EnsembleClassifier`: :meth:`DeepEnsemble.to_module`
returns the fitted ensemble as that module (what ``dunno train classifier --ensemble M``
writes, loadable with :mod:`dunno.checkpoints` and scored by ``dunno calibrate`` / ``dunno
ood``), and :meth:`DeepEnsemble.predict_proba` equals the module's softmax. For regression
it is kept as a mixture of ``M`` Gaussians (exact :meth:`RegressionPrediction.log_prob`)
whose mean and variance are

.. math::

    \mu_*(x) = \tfrac1M \textstyle\sum_m \mu_m(x), \qquad
    \sigma^2_*(x) = \tfrac1M \textstyle\sum_m \big(\sigma^2_m(x) + \mu_m^2(x)\big) - \mu_*^2(x).

**Vectorised training and inference.** The members' parameters are stacked
(:func:`torch.func.stack_module_state`) and the model is evaluated for all members in one
:func:`torch.func.vmap` over :func:`torch.func.functional_call` (each member on its own
mini-batch in training); one Adam step updates all members (Adam is elementwise, so this is
exactly ``M`` independent optimisers). Models that ``vmap`` cannot handle -- batch norm in
training mode updates running statistics in place, custom autograd functions, data-dependent
Python control flow, members of different architectures -- use a loop over members instead:
``vectorize="auto"`` decides with a trial pass at the start of ``fit`` and records the
outcome in ``vectorized_`` and ``vectorize_reason_``.

**Inference: whichever path is faster, chosen once.** Training gains from ``vmap`` (one
optimiser step for all members: 2-7x on the CPU, ``benchmarks/bench_ensemble.py``), but
inference often does not: without gradients a loop over the members runs each member's
layers as plain matrix products, which on a CPU are as fast as the batched ones ``vmap``
makes, with less overhead (the loop was 1.5-2.4x faster for MLPs and LeNet-5 at ``M = 5``
to ``10`` in that benchmark). So with ``inference="auto"`` the end of ``fit`` times both
paths on up to 1024 training rows (one warm-up each, then the best of 3 alternating passes)
and keeps ``vmap`` only when it is at least :data:`VMAP_MARGIN` times faster than the loop;
the loop is the reference path, so ties and timing noise keep it. The choice is recorded
in ``inference_vectorized_``, ``inference_reason_`` (the times) and ``inference_timing_``;
``inference="vmap"`` / ``"loop"`` fix the path instead (e.g. for bit-identical
predictions across machines: the two paths agree to float rounding, about ``1e-7``
relative, which a test checks).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import stack_module_state

from dunno.ensemble import EnsembleClassifier, mixture_log_probs
from dunno.inputs import as_arrays, output_like
from dunno.training import fit as fit_loop
from dunno.training import seed_everything
from dunno.validation import (
    as_labels,
    check_bool,
    check_choice,
    check_float,
    check_hidden,
    check_int,
    check_seed,
)
from uncertainty.predictive._checks import as_features, as_regression_data
from uncertainty.predictive._mlp import IndexBatches, mlp
from uncertainty.predictive._vmap import best_times, stacked_forward, vmap_trial
from uncertainty.predictive.base import JointFit, Regressor, check_training_params
from uncertainty.predictive.prediction import ClassificationPrediction, RegressionPrediction

__all__ = ["VMAP_MARGIN", "DeepEnsemble", "DeepEnsembleRegressor", "gaussian_variance"]

MIN_VARIANCE = 1e-6
#: ``inference="auto"`` keeps ``vmap`` only when the probe finds it this many times faster
VMAP_MARGIN = 1.25
#: rows of the training inputs the inference probe times
PROBE_ROWS = 1024


def gaussian_variance(raw: torch.Tensor) -> torch.Tensor:
    """The paper's positive variance ``softplus(raw) + 1e-6``."""
    return F.softplus(raw) + MIN_VARIANCE


def _same_architecture(members: list[nn.Module], vectorize, owner: str) -> tuple[bool, str]:
    """Whether the members' parameters and buffers have one set of names and shapes (what
    stacking them for ``vmap`` needs) and why not; ``vectorize=True`` turns a mismatch into a
    ValueError."""
    def layout(m: nn.Module):
        return [(n, tuple(t.shape)) for n, t in (*m.named_parameters(), *m.named_buffers())]

    if vectorize is False:
        return False, "vectorize=False"
    first = layout(members[0])
    for i, member in enumerate(members[1:], start=1):
        if layout(member) != first:
            reason = (f"model_fn returned members of different architectures (member {i}'s "
                      "parameters differ in names or shapes from member 0's)")
            if vectorize is True:
                raise ValueError(f"{owner} cannot vectorise this model: {reason}.")
            return False, f"{reason}; using a loop"
    return True, ""


class DeepEnsemble(JointFit):
    """An ensemble of ``M`` independently trained networks (Lakshminarayanan et al. 2017).

    Parameters
    ----------
    model_fn : callable
        ``model_fn() -> nn.Module``, called once per member after seeding. Classification
        members map ``x`` to logits ``(N, C)``; regression members to ``(N, 2 * O)``: ``O``
        means followed by ``O`` raw variances (:func:`gaussian_variance`).
    num_members : int
        ``M >= 1``.
    task : {"regression", "classification"}
    epochs, batch_size, lr, weight_decay : training budget (Adam; the paper: 40 epochs,
        batch 100).
    adversarial : bool
        Add the FGSM adversarial-training term.
    epsilon : float
        FGSM step as a fraction of each input feature's range in the training set.
    vectorize : {"auto", True, False}
        Train with ``vmap`` (True: fail if the model cannot), a loop (False), or ``vmap``
        when a trial pass works ("auto").
    inference : {"auto", "vmap", "loop"}
        The default path of :meth:`predict_members` / :meth:`predict`: the faster of the
        two as timed at the end of ``fit`` ("auto"; module docstring), or a fixed one.
    seed : int

    Attributes
    ----------
    members_ : list of nn.Module
        The trained members (eval mode).
    vectorized_ : bool
        Whether training used ``vmap``.
    vectorize_reason_ : str
        Why (e.g. the trial pass's error when it fell back to the loop).
    inference_vectorized_ : bool
        Whether inference uses ``vmap`` by default.
    inference_reason_ : str
        Why: the probe's times, the fixed ``inference`` setting, or ``vmap``'s error.
    inference_timing_ : dict or None
        ``{"rows", "vmap_s", "loop_s"}`` of the probe (None when nothing was timed).
    histories_ : list of History
        One per training run (one in total when vectorised).
    """

    name = "deep-ensemble"
    _state_names = ("members_",)

    def __init__(self, model_fn: Callable[[], nn.Module] | None, num_members: int = 5, *,
                 task: str = "regression", epochs: int = 40, batch_size: int = 100,
                 lr: float = 1e-3, weight_decay: float = 0.0, adversarial: bool = False,
                 epsilon: float = 0.01, vectorize: str | bool = "auto",
                 inference: str = "auto", seed: int = 0) -> None:
        self.model_fn = model_fn
        self.num_members = num_members
        self.task = task
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.adversarial = adversarial
        self.epsilon = epsilon
        self.vectorize = vectorize
        self.inference = inference
        self.seed = seed

    # ------------------------------------------------------------------ parameters
    def _validate_params(self) -> None:
        check_int(self.num_members, "num_members", self, low=1)
        check_choice(self.task, "task", self, ("regression", "classification"))
        check_training_params(self)
        check_bool(self.adversarial, "adversarial", self)
        check_float(self.epsilon, "epsilon", self, low=0.0)
        check_choice(self.vectorize, "vectorize", self, ("auto", True, False))
        check_choice(self.inference, "inference", self, ("auto", "vmap", "loop"))
        check_seed(self.seed, self)

    def _make_member(self, in_features: int, out_features: int) -> nn.Module:
        if not callable(self.model_fn):
            raise ValueError(
                f"The 'model_fn' parameter of {type(self).__name__} must be a callable "
                f"returning an nn.Module. Got {self.model_fn!r} instead."
            )
        model = self.model_fn()
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"The 'model_fn' of {type(self).__name__} must return an nn.Module. "
                f"Got {type(model).__name__} instead."
            )
        return model

    # ------------------------------------------------------------------ losses
    def _member_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member mean loss ``(M,)`` for outputs ``(M, B, K)`` and targets ``(M, B, ...)``."""
        if self.task == "classification":
            if out.ndim != 3:
                raise ValueError(
                    f"{type(self).__name__} classification members must output logits (N, C). "
                    f"Got outputs of shape {tuple(out.shape[1:])}."
                )
            m, b, c = out.shape
            if int(y.max()) >= c:
                raise ValueError(
                    f"{type(self).__name__} classification members output {c} logits, but the "
                    f"labels 'y' go up to {int(y.max())}: members need at least "
                    f"{int(y.max()) + 1} output columns (one per class)."
                )
            return F.cross_entropy(out.reshape(m * b, c), y.reshape(m * b),
                                   reduction="none").view(m, b).mean(dim=1)
        o = y.shape[-1]
        if out.shape[-1] != 2 * o:
            raise ValueError(
                f"{type(self).__name__} regression members must output 2 * O = {2 * o} "
                f"columns (O means, then O raw variances). Got {out.shape[-1]}."
            )
        mean, var = out[..., :o], gaussian_variance(out[..., o:])
        nll = 0.5 * (var.log() + (y - mean) ** 2 / var)  # (M, B, O); constant dropped
        return nll.sum(dim=-1).mean(dim=1)

    def _adversarial_loss(self, forward, xb, yb, step_size) -> torch.Tensor:
        """``l(x) + l(x')`` per member, ``x' = x + step * sign(grad_x l)``; ``(M,)``."""
        xb = xb.detach().requires_grad_(True)
        loss = self._member_loss(forward(xb), yb)
        if not self.adversarial:
            return loss
        (grad,) = torch.autograd.grad(loss.sum(), xb, retain_graph=True)
        x_adv = (xb + step_size * grad.sign()).detach()
        return loss + self._member_loss(forward(x_adv), yb)

    # ------------------------------------------------------------------ fitting
    def _validate(self, x, y):
        if self.task == "classification":
            x, y = as_arrays(x, labels=y, owner=f"{type(self).__name__}.fit",
                             dtype=torch.float32, require_labels=True)
            x = x.float()
            if x.ndim < 2 or x.shape[0] == 0:
                raise ValueError(
                    f"The 'x' argument of {type(self).__name__}.fit must be a non-empty batch "
                    f"(N, ...). Got shape {tuple(x.shape)}."
                )
            if not bool(torch.isfinite(x).all()):
                raise ValueError("The 'x' argument contains NaN or infinite values.")
            return x, as_labels(y, x.shape[0], name="y")
        return as_regression_data(x, y, owner=f"{type(self).__name__}.fit")

    def _fit_jointly(self, estimators, data, on_epoch_end=None) -> None:
        pairs = [self._validate(x, y) for x, y in data]
        shapes = {(tuple(x.shape), tuple(y.shape)) for x, y in pairs}
        if len(shapes) != 1:
            raise ValueError(
                f"{type(self).__name__}.fit_many needs training sets of one shape; got "
                f"{sorted(shapes)}. Call fit on each instead."
            )
        xs = torch.stack([x for x, _ in pairs])  # (S, N, ...)
        ys = torch.stack([y for _, y in pairs])  # (S, N, ...)
        s_count = xs.shape[0]
        m_count = self.num_members
        out_features = ys.shape[-1] if self.task == "regression" else int(ys.max()) + 1
        seed_everything(self.seed)
        members = [self._make_member(xs.shape[2] if xs.ndim == 3 else -1, out_features)
                   for _ in range(s_count * m_count)]
        split_of = torch.arange(s_count).repeat_interleave(m_count)  # (S*M,)
        # FGSM step per feature: epsilon * range of the inputs in each training set
        span = (xs.amax(dim=1) - xs.amin(dim=1))[split_of] * self.epsilon  # (S*M, ...)
        vectorized, reason = _same_architecture(members, self.vectorize, type(self).__name__)
        if vectorized:
            vectorized, reason = vmap_trial(members[0], xs[0], self.vectorize,
                                            type(self).__name__)
        if vectorized:
            members, histories = self._train_vmap(members, xs, ys, split_of, span, on_epoch_end)
        else:
            members, histories = self._train_loop(members, xs, ys, split_of, span, on_epoch_end)
        for s, est in enumerate(estimators):
            est.members_ = members[s * m_count:(s + 1) * m_count]
            est.vectorized_, est.vectorize_reason_ = vectorized, reason
            est.histories_ = histories
            est.input_shape_ = tuple(xs.shape[2:])
            est.n_outputs_ = out_features
            est._stacked = None
        # one probe for all: the estimators share the architecture and the input shape
        use, why, timing = estimators[0]._choose_inference(xs[0, :PROBE_ROWS])
        for est in estimators:
            est.inference_vectorized_, est.inference_reason_ = use, why
            est.inference_timing_ = timing

    def _choose_inference(self, x: torch.Tensor) -> tuple[bool, str, dict | None]:
        """The default inference path (module docstring): ``(use vmap, reason, timing)``."""
        if self.inference == "loop":
            return False, "inference='loop'", None
        try:
            self._members_out(x, True)
        except Exception as err:  # noqa: BLE001 - any failure means "cannot vmap"
            if self.inference == "vmap":
                raise ValueError(
                    f"{type(self).__name__} cannot predict with torch.func.vmap "
                    f"(inference='vmap'): {type(err).__name__}: {err}") from err
            self._stacked = None
            return False, f"vmap failed in eval mode ({type(err).__name__}: {err}); loop", None
        if self.inference == "vmap":
            return True, "inference='vmap'", None
        self._members_out(x, False)  # warm-up of the loop (vmap's was the trial above)
        best = best_times({"vmap": lambda: self._members_out(x, True),
                           "loop": lambda: self._members_out(x, False)})
        timing = {"rows": int(x.shape[0]), "vmap_s": best["vmap"], "loop_s": best["loop"]}
        use = timing["loop_s"] >= VMAP_MARGIN * timing["vmap_s"]
        why = (f"timing probe at fit on {timing['rows']} rows: vmap "
               f"{timing['vmap_s'] * 1e3:.3g} ms, loop {timing['loop_s'] * 1e3:.3g} ms -> "
               f"{'vmap' if use else 'loop'} (vmap only when >= {VMAP_MARGIN}x faster)")
        return use, why, timing

    def _train_vmap(self, members, xs, ys, split_of, span, on_epoch_end=None):
        params, buffers = stack_module_state(members)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        _, _, batched = stacked_forward(members, train=True, shared_input=False,
                                        params=params, buffers=buffers)
        optimizer = torch.optim.Adam(params.values(), lr=self.lr, weight_decay=self.weight_decay)
        n = xs.shape[1]
        loader = IndexBatches(n, self.batch_size, seed=self.seed, num_members=len(members))

        def forward(xb):
            return batched(params, buffers, xb)

        def step(index):  # index (B, M): member m's rows
            rows = index.T  # (M, B)
            xb, yb = xs[split_of[:, None], rows], ys[split_of[:, None], rows]  # (M, B, ...)
            step_size = span.unsqueeze(1)  # (M, 1, ...)
            loss = self._adversarial_loss(forward, xb, yb, step_size).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return {"loss": loss.detach() / len(members)}

        history = fit_loop(step, loader, epochs=self.epochs, state={"adam": optimizer},
                           progress_by="epochs", desc=type(self).__name__,
                           on_epoch_end=on_epoch_end)
        with torch.no_grad():
            for i, member in enumerate(members):
                for name, p in member.named_parameters():
                    p.copy_(params[name][i])
                for name, b in member.named_buffers():
                    if name in buffers:
                        b.copy_(buffers[name][i])
        return [m.eval() for m in members], [history]

    def _train_loop(self, members, xs, ys, split_of, span, on_epoch_end=None):
        histories = []
        n = xs.shape[1]
        for i, member in enumerate(members):
            s = int(split_of[i])
            optimizer = torch.optim.Adam(member.parameters(), lr=self.lr,
                                         weight_decay=self.weight_decay)
            loader = IndexBatches(n, self.batch_size, seed=self.seed + i)

            def forward(xb, member=member):
                return member(xb[0]).unsqueeze(0)  # (1, B, K)

            def step(index, member=member, optimizer=optimizer, s=s, i=i):
                xb, yb = xs[s, index].unsqueeze(0), ys[s, index].unsqueeze(0)  # (1, B, ...)
                loss = self._adversarial_loss(forward, xb, yb, span[i:i + 1].unsqueeze(1)).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                return {"loss": loss.detach()}

            hook = None if on_epoch_end is None else (
                lambda epoch, record, i=i: on_epoch_end(epoch, {"member": i, **record}))
            histories.append(fit_loop(step, loader, epochs=self.epochs,
                                      state={"member": member, "adam": optimizer},
                                      progress_by="epochs", desc=f"{type(self).__name__} {i}",
                                      on_epoch_end=hook))
        return [m.eval() for m in members], histories

    def fit(self, x, y=None, *, progress: bool | None = None,
            on_epoch_end=None) -> DeepEnsemble:
        """Train the ``M`` members on ``x (N, ...)`` and ``y`` (regression ``(N, O)`` or
        ``(N,)``; classification integer labels ``(N,)``); returns ``self``. ``x`` may be any
        kind read by :mod:`dunno.inputs` (an ``(x, y)`` pair, a Dataset or a DataLoader with
        ``y=None``). Training is reproducible: the same ``seed``, the same members.
        ``progress``, ``on_epoch_end``: see :mod:`uncertainty.predictive.base`."""
        return super().fit(x, y, progress=progress, on_epoch_end=on_epoch_end)

    # ------------------------------------------------------------------ inference
    def _check_x(self, x) -> torch.Tensor:
        self.check_fitted()
        if self.task == "regression":
            return as_features(x, num_features=self.input_shape_[0],
                               owner=f"{type(self).__name__}.predict")
        x, _ = as_arrays(x, owner=f"{type(self).__name__}.predict", dtype=torch.float32)
        x = x.float()
        if tuple(x.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"The 'x' argument must have shape (N, {', '.join(map(str, self.input_shape_))})"
                f" as in fit. Got {tuple(x.shape)}."
            )
        return x

    def predict_members(self, x, *, vectorized: bool | None = None) -> torch.Tensor:
        """Raw outputs of every member, ``(M, N, K)``: one ``vmap`` pass over the stacked
        parameters (``vectorized=True``) or a loop over members (``False``); default: the
        path chosen at fit, ``inference_vectorized_``. Numpy for numpy ``x``."""
        return output_like(self._members_out(x, vectorized), x)

    @torch.no_grad()
    def _members_out(self, x, vectorized: bool | None) -> torch.Tensor:
        x = self._check_x(x)
        use_vmap = self.inference_vectorized_ if vectorized is None else bool(vectorized)
        if not use_vmap:
            return torch.stack([m(x) for m in self.members_])
        if self._stacked is None:
            self._stacked = stacked_forward(self.members_, train=False, shared_input=True)
        params, buffers, batched = self._stacked
        return batched(params, buffers, x)

    def predict(self, x, *, vectorized: bool | None = None
                ) -> RegressionPrediction | ClassificationPrediction:
        """The uniform mixture of the members (see the module docstring). Classification:
        ``probs`` is :meth:`predict_proba`, ``samples (M, N, C)`` the members' softmaxes."""
        out = self._members_out(x, vectorized).double()
        if self.task == "classification":
            return ClassificationPrediction(mixture_log_probs(out).exp(),
                                            torch.softmax(out, dim=-1))
        o = self.n_outputs_
        return RegressionPrediction.from_samples(out[..., :o], gaussian_variance(out[..., o:]))

    def _require_classification(self, method: str) -> None:
        if self.task != "classification":
            raise ValueError(
                f"{type(self).__name__}.{method} is for task='classification'; this ensemble "
                f"has task={self.task!r} (use predict)."
            )

    def predict_proba(self, x, *, vectorized: bool | None = None) -> torch.Tensor:
        """Mixture class probabilities ``(N, C)`` float64 (classification):
        ``exp(mixture_log_probs(member logits))``, the softmax of :meth:`to_module`'s
        output. Numpy for numpy ``x``."""
        self._require_classification("predict_proba")
        out = self._members_out(x, vectorized).double()  # (M, N, C)
        return output_like(mixture_log_probs(out).exp(), x)

    def to_module(self) -> EnsembleClassifier:
        """The fitted classification ensemble as a :class:`dunno.ensemble.EnsembleClassifier`
        (eval mode) over copies of the members: ``module(x)`` is the mixture's
        log-probabilities ``(N, C)``, so ``module(x).softmax(-1)`` equals
        :meth:`predict_proba` (up to the module's float32). With members that have a
        ``config`` (and ``arch``) -- :mod:`dunno.nets` backbones -- it saves with
        ``dunno.checkpoints.save_checkpoint(path, module, arch="ensemble",
        config=module.config)``."""
        self._require_classification("to_module")
        self.check_fitted()
        return EnsembleClassifier([copy.deepcopy(m) for m in self.members_]).eval()


class DeepEnsembleRegressor(DeepEnsemble, Regressor):
    """A deep ensemble of ReLU MLPs with mean and variance outputs (the paper's UCI setup:
    one hidden layer of 50 units, ``M = 5``, 40 epochs, batch 100, Adam).

    Parameters are those of :class:`DeepEnsemble` (``task`` is "regression") plus
    ``hidden``: hidden layer widths (int or sequence).
    """

    name = "ensemble"

    def __init__(self, hidden=50, num_members: int = 5, *, epochs: int = 40,
                 batch_size: int = 100, lr: float = 1e-2, weight_decay: float = 0.0,
                 adversarial: bool = False, epsilon: float = 0.01,
                 vectorize: str | bool = "auto", inference: str = "auto",
                 seed: int = 0) -> None:
        super().__init__(None, num_members, task="regression", epochs=epochs,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         adversarial=adversarial, epsilon=epsilon, vectorize=vectorize,
                         inference=inference, seed=seed)
        self.hidden = hidden

    def _validate_params(self) -> None:
        check_hidden(self.hidden, self)
        super()._validate_params()

    def _make_member(self, in_features: int, out_features: int) -> nn.Module:
        return mlp(in_features, check_hidden(self.hidden, self), 2 * out_features)
