r"""The learning-rate schedule of the training recipes, and what it does when a resumed run
gets more epochs.

:class:`LearningRateSchedule` sets ``lr = base_lr * factor`` in every parameter group of its
optimisers, where ``factor`` follows the run's *progress* (optimiser steps, or training
seconds under a time budget) towards the planned ``total``. ``"constant"``: factor 1.
``"cosine"`` (Loshchilov & Hutter, "SGDR", ICLR 2017, without restarts), starting at
progress :math:`p_0` with factor :math:`f_0` (:math:`p_0 = 0, f_0 = 1` for a new run):

.. math::

    f(p) = f_0 \cdot \tfrac12 \left(1 + \cos\left(\pi \frac{p - p_0}{P - p_0}\right)\right)
    \quad (p_0 \le p < P), \qquad f(p) = 0 \quad (p \ge P).

**Resuming with another total** (``--resume`` with more epochs, a larger time budget, or
another world size): the schedule is *re-planned* from where the run stands -- the saved
progress :math:`p` becomes :math:`p_0`, the factor the saved plan gives there becomes
:math:`f_0`, and the new total :math:`P'` the end -- so the learning rate continues from its
current value and decays to 0 over the new remaining steps: it never jumps upward. A cosine
run that has already reached its total (learning rate 0) cannot be extended this way (every
new step would have learning rate 0): that resume is refused with a message. Resuming with
the same total continues the saved plan exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from dunno.validation import check_choice

__all__ = ["BUDGET_CLOCKS", "SCHEDULES", "LearningRateSchedule", "budget_clock"]

SCHEDULES = ("constant", "cosine")
UNITS = ("steps", "seconds")


class LearningRateSchedule:
    """Constant or cosine learning rate over ``total`` units of progress, re-planned when a
    resumed run has another total (module docstring).

    Parameters
    ----------
    optimizers : Optimizer or iterable of Optimizer
        Every parameter group gets ``lr = base_lr * factor``; ``base_lr`` is the group's
        ``lr`` when the schedule is created (stored in the group).
    total : float
        The planned progress :math:`P > 0` (steps, or seconds with ``unit="seconds"``).
    kind : str
        ``"cosine"`` or ``"constant"``.
    unit : str
        ``"steps"`` (:meth:`step` once per optimiser step) or ``"seconds"`` (``step(dt)``).

    ``state_dict()`` / ``load_state_dict()`` make it part of a :func:`dunno.training.fit`
    training state; ``load_state_dict`` raises a ValueError for a state of another kind or
    unit, or for extending a finished cosine run.
    """

    def __init__(self, optimizers: torch.optim.Optimizer | Iterable[torch.optim.Optimizer],
                 total: float, kind: str = "cosine", unit: str = "steps") -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"The 'kind' parameter of LearningRateSchedule must be one of "
                             f"{SCHEDULES}. Got {kind!r} instead.")
        if unit not in UNITS:
            raise ValueError(f"The 'unit' parameter of LearningRateSchedule must be one of "
                             f"{UNITS}. Got {unit!r} instead.")
        if isinstance(total, bool) or not isinstance(total, int | float) or not (
                math.isfinite(total) and total > 0):
            raise ValueError(f"The 'total' parameter of LearningRateSchedule must be a number "
                             f"> 0. Got {total!r} instead.")
        if isinstance(optimizers, torch.optim.Optimizer):
            optimizers = [optimizers]
        self.optimizers = list(optimizers)
        self.kind, self.unit, self.total = kind, unit, float(total)
        self.progress, self.start, self.start_factor = 0.0, 0.0, 1.0
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group.setdefault("base_lr", group["lr"])
        self.set_lr()

    def factor(self) -> float:
        """The current learning-rate factor :math:`f(p)`."""
        return _factor(self.kind, self.progress, self.total, self.start, self.start_factor)

    def set_lr(self) -> None:
        """Set every group's ``lr`` to ``base_lr * factor()``."""
        factor = self.factor()
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor

    def step(self, amount: float = 1.0) -> None:
        """Advance the progress by ``amount`` (1 step, or the seconds of the step) and set
        the learning rate for the next step."""
        self.progress += float(amount)
        self.set_lr()

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "unit": self.unit, "total": self.total,
                "progress": self.progress, "start": self.start,
                "start_factor": self.start_factor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the saved run; re-plan it when its total differs from this one's."""
        for key in ("kind", "unit"):
            if state[key] != getattr(self, key):
                raise ValueError(f"The saved learning-rate schedule has {key} "
                                 f"{state[key]!r}, this run {getattr(self, key)!r}.")
        progress, total = float(state["progress"]), float(state["total"])
        start, start_factor = float(state["start"]), float(state["start_factor"])
        if total != self.total and self.total > progress:
            if self.kind == "cosine" and progress >= total:
                raise ValueError(
                    f"The run finished its cosine schedule ({progress:g} of {total:g} "
                    f"{self.unit}): its learning rate has decayed to 0, so a longer run "
                    f"(total {self.total:g} {self.unit}) would not train. Start a new run "
                    "instead (e.g. another output directory).")
            start_factor = _factor(self.kind, progress, total, start, start_factor)
            start = progress
        self.progress, self.start, self.start_factor = progress, start, start_factor
        self.set_lr()


def _factor(kind: str, progress: float, total: float, start: float,
            start_factor: float) -> float:
    if kind == "constant":
        return 1.0
    if progress >= total:
        return 0.0
    fraction = (progress - start) / (total - start)
    return start_factor * 0.5 * (1.0 + math.cos(math.pi * fraction))


#: the time sources a training budget can be measured in: ``"wall"`` (elapsed seconds,
#: :func:`time.perf_counter`) or ``"cpu"`` (this process's CPU seconds, summed over its
#: threads, :func:`time.process_time`: a budget that other jobs on the machine do not spend)
BUDGET_CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    "cpu": time.process_time,
}


def budget_clock(name: str, owner: Any = None) -> Callable[[], float]:
    """The clock :func:`dunno.training.fit` measures a ``max_seconds`` budget with, by name
    (one of :data:`BUDGET_CLOCKS`). With ``"cpu"`` a budget of ``T`` seconds on ``k`` busy
    threads lasts about ``T / k`` seconds of wall-clock time; on one thread it is about the
    wall-clock budget of an idle machine, whatever else runs beside it."""
    return BUDGET_CLOCKS[check_choice(name, "budget_clock", owner, tuple(BUDGET_CLOCKS))]
