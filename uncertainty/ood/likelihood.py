r"""Likelihood score: the negative log-likelihood of an input under a density model
(Bishop 1994, "Novelty detection and neural network validation"; the failure mode studied by
Nalisnick, Matsukawa, Teh, Gorur & Lakshminarayanan, "Do Deep Generative Models Know What They
Don't Know?", ICLR 2019).

.. math::

    s(x) = -\log p(x) \quad\text{(nats)}, \qquad
    s_{\text{bpd}}(x) = \frac{-\log p(x)}{D \ln 2} \quad\text{(bits per dimension)},

higher = less likely = more OOD. Both rank identically; bits/dim makes values comparable
across image sizes.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dunno.validation import check_int
from uncertainty.ood._density import DensityDetector
from uncertainty.ood.outputs import ModelOutputs

__all__ = ["Likelihood", "likelihood_score"]


def likelihood_score(log_prob: torch.Tensor, num_dims: int | None = None) -> torch.Tensor:
    r"""Negative log-likelihood :math:`-\log p(x)`, in nats or (with ``num_dims``) bits/dim.

    Args:
        log_prob: ``(N,)`` log-densities in nats.
        num_dims: :math:`D`, the number of modelled values per input; ``None`` for nats.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    nll = -log_prob.to(torch.float64)  # (N,)
    if num_dims is None:
        return nll
    return nll / (num_dims * math.log(2.0))


class Likelihood(DensityDetector):
    """Likelihood detector: :func:`likelihood_score`. ``fit`` is a no-op.

    Parameters: ``density`` (anything with ``log_prob``), ``num_dims`` (``D`` for scores in
    bits/dim; default nats), ``transform`` (inputs -> the density model's input space).
    """

    name = "likelihood"
    reference = "Bishop 1994; Nalisnick et al. 2019, ICLR"

    def __init__(self, density: Any = None, *, num_dims: int | None = None,
                 transform=None) -> None:
        super().__init__(density, transform=transform)
        self.num_dims = num_dims

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.num_dims is not None:
            check_int(self.num_dims, "num_dims", type(self).__name__, low=1)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return likelihood_score(outputs.log_prob, self.num_dims)
