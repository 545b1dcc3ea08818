"""Deterministic full-batch L-BFGS on float64 tensors, used by the multi-parameter maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["minimize_lbfgs"]


def minimize_lbfgs(params: Sequence[torch.Tensor], loss_fn: Callable[[], torch.Tensor], *,
                   max_iter: int, tol: float) -> tuple[int, bool]:
    """Minimise ``loss_fn()`` over ``params`` (leaf tensors with ``requires_grad``) in place.

    Uses :class:`torch.optim.LBFGS` with a strong-Wolfe line search, so the result is a
    deterministic function of the data. ``max_iter=0`` leaves ``params`` at their initial
    values. Returns ``(iterations, converged)``, where converged means the largest gradient
    entry fell below ``tol``.
    """
    if max_iter == 0:
        return 0, False
    optimizer = torch.optim.LBFGS(
        list(params), lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=tol,
        tolerance_change=1e-15, line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimizer.step(closure)
    n_iter = int(optimizer.state[optimizer.param_groups[0]["params"][0]]["n_iter"])
    optimizer.zero_grad()
    loss = loss_fn()
    grads = torch.autograd.grad(loss, list(params))
    converged = max(float(g.abs().max()) for g in grads) <= tol
    for p in params:
        p.requires_grad_(False)
    return n_iter, converged
