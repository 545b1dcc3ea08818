r"""Typicality test (Nalisnick, Matsukawa, Teh & Lakshminarayanan, "Detecting
Out-of-Distribution Inputs to Deep Generative Models Using Typicality", arXiv:1906.02994, 2019).

High-dimensional data does not lie where the density is highest but in the *typical set*,
where :math:`-\log p(x)` is close to the entropy :math:`H[p]`. An input (or a batch) is OOD
when its negative log-likelihood is atypical -- too high **or too low** (which catches the
too-simple inputs that fool the plain likelihood). For a batch of :math:`M` inputs,

.. math::

    s(x_{1..M}) = \Big| \frac{1}{M} \sum_{m=1}^{M} -\log p(x_m) - \hat H \Big|,
    \qquad \hat H = \frac{1}{N} \sum_{n=1}^{N} -\log p(x^{train}_n),

higher = more OOD. ``fit`` estimates :math:`\hat H` on the in-distribution data, and the test
threshold :math:`\epsilon` by the bootstrap: the :math:`1 - \alpha` quantile of :math:`s` over
``bootstraps`` batches of size :math:`M` resampled (with replacement) from the same data
(:func:`bootstrap_threshold`); a batch with :math:`s > \epsilon` is declared OOD
(:meth:`Typicality.is_ood`). The paper estimates :math:`\hat H` on training data and
:math:`\epsilon` on held-out data; pass the held-out split to ``fit`` for the latter
(``dunno ood --fit-split val``).

**Per-example scores.** ``score`` returns one value per input. With ``group_size=1`` (the
per-example variant) that is :math:`|-\log p(x) - \hat H|`. With ``group_size=M > 1`` the
inputs are taken in the order given, in consecutive groups of :math:`M` (the last group may be
smaller), and every input gets its group's statistic -- the batch test of the paper, which
assumes each batch comes from one distribution (scoring a whole OOD set in order does); an
AUROC over these scores is the batch-level AUROC with each batch counted :math:`M` times.
"""

from __future__ import annotations

from typing import Any

import torch

from dunno.validation import check_int, check_probability_level, check_seed
from uncertainty.ood._density import DensityDetector
from uncertainty.ood.outputs import ModelOutputs

__all__ = ["Typicality", "bootstrap_threshold", "typicality_score"]


def typicality_score(log_prob: torch.Tensor, entropy: float, group_size: int = 1
                     ) -> torch.Tensor:
    r""":math:`|\overline{-\log p} - \hat H|` per consecutive group of ``group_size`` inputs,
    repeated for every input of the group.

    Args:
        log_prob: ``(N,)`` log-densities in nats.
        entropy: :math:`\hat H`, the entropy estimate in nats.
        group_size: :math:`M \ge 1`.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    nll = -log_prob.to(torch.float64)  # (N,)
    if group_size == 1:
        return (nll - entropy).abs()
    n = len(nll)
    groups = torch.arange(n) // group_size  # (N,) group index of each input
    count = torch.bincount(groups).to(torch.float64)  # (G,)
    mean = torch.zeros(len(count), dtype=torch.float64).index_add_(0, groups, nll) / count
    return (mean - entropy).abs()[groups]


def bootstrap_threshold(
    log_prob: torch.Tensor,
    entropy: float,
    group_size: int,
    *,
    bootstraps: int = 1000,
    alpha: float = 0.01,
    generator: torch.Generator | None = None,
) -> float:
    r"""The :math:`1 - \alpha` quantile of the typicality statistic over ``bootstraps`` batches
    of ``group_size`` inputs drawn with replacement from in-distribution ``log_prob (N,)``."""
    nll = -log_prob.to(torch.float64)
    index = torch.randint(0, len(nll), (bootstraps, group_size), generator=generator)
    stats = (nll[index].mean(dim=1) - entropy).abs()  # (B,)
    return float(torch.quantile(stats, 1.0 - alpha))


class Typicality(DensityDetector):
    """Typicality-test detector (Nalisnick et al. 2019b): :func:`typicality_score`.

    Parameters
    ----------
    density : object with ``log_prob``
        The in-distribution model.
    group_size : int
        :math:`M`, inputs per tested batch (default 1: the per-example variant).
    alpha : float
        Level of the bootstrap threshold :math:`\\epsilon` (:meth:`is_ood`), in (0, 1).
    bootstraps : int
        Bootstrap batches drawn in ``fit``.
    seed : int
        Seed of the bootstrap.
    transform : callable, optional
        Inputs -> the density model's input space.

    Learned: ``entropy_`` (:math:`\\hat H`, nats), ``threshold_`` (:math:`\\epsilon`, nats).
    """

    name = "typicality"
    reference = "Nalisnick et al. 2019, arXiv:1906.02994"
    fit_needs = frozenset({"log_prob"})
    _state_names = ("entropy_", "threshold_")

    def __init__(self, density: Any = None, *, group_size: int = 1, alpha: float = 0.01,
                 bootstraps: int = 1000, seed: int = 0, transform=None) -> None:
        super().__init__(density, transform=transform)
        self.group_size = group_size
        self.alpha = alpha
        self.bootstraps = bootstraps
        self.seed = seed

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        check_int(self.group_size, "group_size", owner, low=1)
        check_int(self.bootstraps, "bootstraps", owner, low=1)
        check_seed(self.seed, owner)
        check_probability_level(self.alpha, "alpha", owner)

    def _fit(self, outputs: ModelOutputs) -> None:
        lp = outputs.log_prob
        self.entropy_ = float(-lp.to(torch.float64).mean())
        g = torch.Generator().manual_seed(self.seed)
        self.threshold_ = bootstrap_threshold(lp, self.entropy_, self.group_size,
                                              bootstraps=self.bootstraps, alpha=self.alpha,
                                              generator=g)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return typicality_score(outputs.log_prob, self.entropy_, self.group_size)

    def is_ood(self, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
        """The test's decision per input: ``score(x) > threshold_`` (``(N,)`` bool)."""
        return self.score(x, batch_size=batch_size) > self.threshold_
