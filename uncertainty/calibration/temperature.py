r"""Temperature scaling (Guo et al., 2017).

One scalar :math:`T > 0` divides every logit vector:

.. math::

    \hat p(y \mid x) = \operatorname{softmax}(z(x) / T)_y,
    \qquad
    T^\star = \arg\min_{T > 0} \; L(T) = -\frac{1}{N} \sum_{i=1}^{N}
        \log \operatorname{softmax}(z_i / T)_{y_i}.

Dividing by a positive scalar never changes the argmax, so accuracy is unchanged.

**The solver.** With the inverse temperature :math:`\beta = 1/T` the mean NLL is

.. math::

    L(\beta) = \frac{1}{N} \sum_i \Big[\log \sum_c e^{\beta z_{ic}} - \beta z_{i y_i}\Big],
    \qquad
    L'(\beta) = \frac{1}{N} \sum_i \big(\mathbb{E}_{p_i}[z_i] - z_{i y_i}\big),
    \qquad
    L''(\beta) = \frac{1}{N} \sum_i \operatorname{Var}_{p_i}[z_i] \;\ge 0,

with :math:`p_i = \operatorname{softmax}(\beta z_i)`: a convex function of :math:`\beta` whose
derivative is increasing. The default ``solver="newton"`` finds the root of :math:`L'` by
Newton's method in :math:`u = \log\beta = -\log T` (steps :math:`-L'/(\beta L'')`) on float64
tensors, safeguarded by a bracket that every evaluation shrinks (a step that leaves the
bracket is replaced by bisection). It is deterministic and converges in a handful of
iterations. The search is confined to ``bounds`` on :math:`T`; when the optimum lies beyond a
bound (e.g. labels independent of the logits drive :math:`T \to \infty`) the fit stops at
that bound and sets ``at_bound_ = True``.

``solver="lbfgs"`` minimises over :math:`\log T` with :class:`torch.optim.LBFGS` (strong
Wolfe line search), clipping the result into ``bounds``; ``solver="grid"`` evaluates the NLL
on a log-spaced grid of ``grid_size`` temperatures within ``bounds`` and then on a second,
finer grid between the neighbours of the best point: slow but needs no derivatives.

Reference: C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dunno.validation import check_choice, check_float, check_int
from uncertainty.calibration._base import Calibrator

__all__ = ["TemperatureScaling", "temperature_nll"]


def temperature_nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood (nats) of ``softmax(logits / temperature)``.

    ``logits (N, C)`` float, ``labels (N,)`` int64; computed in float64.
    """
    z = logits.to(torch.float64)
    log_p = torch.log_softmax(z / temperature, dim=1)  # (N, C)
    return float(-log_p.gather(1, labels.view(-1, 1)).mean())


def _newton_terms(logits: torch.Tensor, labels: torch.Tensor):
    """Precompute what :func:`_derivatives` needs: the max-shifted logits transposed to
    ``(C, N)`` (so the per-example sums over classes run along contiguous memory), their
    squares, and the constant part of :math:`L'`, ``mean(max_c z - z_y)``.

    CPU tensors become numpy arrays: the loop then runs single-threaded, which keeps it fast
    when torch's intra-op threads compete with other processes; CUDA tensors stay tensors.
    """
    if logits.device.type == "cpu":
        z, y = logits.numpy(), labels.numpy()  # (N, C), (N,)
        z_max = z.max(axis=1)  # (N,)
        shifted = np.ascontiguousarray((z - z_max[:, None]).T)  # (C, N), entries <= 0
        z_true = z[np.arange(len(y)), y]  # (N,)
    else:
        z_max = logits.max(dim=1).values  # (N,)
        shifted = (logits - z_max[:, None]).T.contiguous()  # (C, N), entries <= 0
        z_true = logits.gather(1, labels.view(-1, 1)).squeeze(1)  # (N,)
    return shifted, shifted * shifted, float((z_max - z_true).mean())


def _derivatives(terms, beta: float) -> tuple[float, float]:
    r"""``(L'(beta), L''(beta))`` of the mean NLL at inverse temperature ``beta > 0``.

    With shifted logits :math:`v = z - \max_c z` (softmax is shift-invariant),
    :math:`L' = \overline{E_p[v]} + \overline{\max z - z_y}` and
    :math:`L'' = \overline{\operatorname{Var}_p[v]}`.
    """
    shifted, squared, offset = terms
    xp = np if isinstance(shifted, np.ndarray) else torch
    e = xp.exp(shifted * beta)  # (C, N), unnormalised p; the max entry is exactly 1
    total = e.sum(0)  # (N,)
    mean_v = (e * shifted).sum(0) / total  # (N,)  E_p[v]
    var_v = (e * squared).sum(0) / total - mean_v * mean_v  # (N,)  Var_p[v]
    return float(mean_v.mean()) + offset, float(var_v.mean())


class TemperatureScaling(Calibrator):
    r"""Temperature scaling: calibrated logits :math:`z / T` with one learned :math:`T > 0`.

    Parameters
    ----------
    solver : {"newton", "lbfgs", "grid"}
        How :math:`T` is found (see the module docstring). All three are deterministic.
    max_iter : int
        Iteration limit of the Newton / L-BFGS solvers (>= 1).
    tol : float
        Convergence tolerance on :math:`\log T` (Newton: step size; L-BFGS: change).
    bounds : (float, float)
        The range ``(T_min, T_max)`` searched, ``0 < T_min < T_max``.
    grid_size : int
        Points per grid for ``solver="grid"`` (>= 3).

    Attributes
    ----------
    temperature_ : float
        The fitted temperature.
    n_iter_ : int
        Iterations (Newton / L-BFGS) or NLL evaluations (grid) used.
    converged_ : bool
        Whether the solver met its tolerance (always True for the grid).
    at_bound_ : bool
        Whether the optimum lies at or beyond one of ``bounds`` (e.g. uninformative logits).
    num_classes_ : int
        Number of classes seen in ``fit``.

    Examples
    --------
    >>> ts = TemperatureScaling().fit(val_logits, val_labels)
    >>> probs = ts.predict_proba(test_logits)           # (N, C)
    """

    name = "temperature"
    _state_names = ("temperature_", "n_iter_", "converged_", "at_bound_")

    def _state_spec(self, num_classes: int) -> dict:
        """:meth:`Calibrator._state_spec` plus this method's learned values."""
        return {**super()._state_spec(num_classes), "temperature_": float}

    def __init__(self, *, solver: str = "newton", max_iter: int = 100, tol: float = 1e-10,
                 bounds: tuple[float, float] = (1e-2, 1e4), grid_size: int = 201):
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.bounds = bounds
        self.grid_size = grid_size

    def _validate_params(self) -> None:
        check_choice(self.solver, "solver", self, ("newton", "lbfgs", "grid"))
        check_int(self.max_iter, "max_iter", self, low=1)
        check_float(self.tol, "tol", self, low=0.0, low_open=True)
        check_int(self.grid_size, "grid_size", self, low=3)
        b = self.bounds
        ok = (isinstance(b, tuple | list) and len(b) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in b)
              and 0 < b[0] < b[1] < math.inf)
        if not ok:
            raise ValueError(
                "The 'bounds' parameter of TemperatureScaling must be a pair (T_min, T_max) "
                f"with 0 < T_min < T_max < inf. Got {b!r} instead."
            )

    # ------------------------------------------------------------------ fit
    def _fit(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if self.solver == "newton":
            temperature, n_iter, converged, at_bound = self._fit_newton(logits, labels)
        elif self.solver == "lbfgs":
            temperature, n_iter, converged, at_bound = self._fit_lbfgs(logits, labels)
        else:
            temperature, n_iter, converged, at_bound = self._fit_grid(logits, labels)
        self.temperature_ = float(temperature)
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)
        self.at_bound_ = bool(at_bound)

    def _fit_newton(self, z, y):
        t_min, t_max = (float(v) for v in self.bounds)
        terms = _newton_terms(z, y)
        # u = log(beta) = -log(T). L'(beta) increases with u, so the root lies in a bracket
        # [lo, hi] that shrinks with every evaluation; an end is "known" once evaluated.
        u_min, u_max = -math.log(t_max), -math.log(t_min)
        lo, hi, lo_known, hi_known = u_min, u_max, False, False
        u = min(max(0.0, u_min), u_max)  # start at T = 1
        converged = False
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - n_iter is reported
            beta = math.exp(u)
            g, h = _derivatives(terms, beta)
            if u == u_min and g >= 0:  # the NLL still falls as T grows past T_max
                return t_max, n_iter, True, True
            if u == u_max and g <= 0:  # the NLL still falls as T shrinks below T_min
                return t_min, n_iter, True, True
            if g == 0.0:
                converged = True
                break
            if g > 0:
                hi, hi_known = u, True
            else:
                lo, lo_known = u, True
            step = -g / (beta * h) if h > 0 else -math.copysign(math.inf, g)
            if abs(step) <= self.tol:
                u = min(max(u + step, u_min), u_max)
                converged = True
                break
            new = u + step
            if new <= lo:  # Newton left the bracket: try the bound, else bisect
                new = 0.5 * (lo + hi) if lo_known else lo
            elif new >= hi:
                new = 0.5 * (lo + hi) if hi_known else hi
            if lo_known and hi_known and hi - lo <= self.tol:
                u = 0.5 * (lo + hi)
                converged = True
                break
            u = new
        return math.exp(-u), n_iter, converged, False

    def _fit_lbfgs(self, z, y):
        t_min, t_max = (float(v) for v in self.bounds)
        log_t = torch.zeros((), dtype=torch.float64, device=z.device, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [log_t], lr=1.0, max_iter=self.max_iter, tolerance_grad=1e-12,
            tolerance_change=self.tol, line_search_fn="strong_wolfe",
        )

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
            loss.backward()
            return loss

        optimizer.step(closure)
        state = optimizer.state[log_t]
        n_iter = int(state["n_iter"])
        # L-BFGS also stops when it runs out of function evaluations (max_eval, 1.25 x
        # max_iter): that is no more convergence than reaching max_iter.
        out_of_budget = (n_iter >= self.max_iter
                         or int(state["func_evals"]) >= optimizer.param_groups[0]["max_eval"])
        temperature = math.exp(float(log_t.detach()))
        at_bound = not t_min < temperature < t_max
        return min(max(temperature, t_min), t_max), n_iter, not out_of_budget, at_bound

    def _fit_grid(self, z, y):
        t_min, t_max = (float(v) for v in self.bounds)
        lo, hi = math.log(t_min), math.log(t_max)
        evaluations = 0
        for _ in range(2):
            grid = torch.linspace(lo, hi, self.grid_size, dtype=torch.float64).tolist()
            nll = [temperature_nll(z, y, math.exp(t)) for t in grid]
            evaluations += len(grid)
            best = min(range(len(grid)), key=nll.__getitem__)
            lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        temperature = min(max(math.exp(grid[best]), t_min), t_max)
        at_bound = math.isclose(temperature, t_min) or math.isclose(temperature, t_max)
        return temperature, evaluations, True, at_bound

    # ------------------------------------------------------------------ transform
    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature_
