r"""Priors for the adversarial autoencoder: anything that draws codes.

A prior is any callable ``prior(n, generator) -> (n, L)`` tensor of samples (on the CPU or
any device; the model moves them); one that also has ``log_prob(z (..., L)) -> (...)`` (every
built-in prior) lets :meth:`AdversarialAutoencoder.log_prob` estimate a likelihood. Priors
that also take ``labels`` (``(n,)`` ints, ``-1`` for "no label") draw the code of example
:math:`i` from the mixture component ``labels[i]``: the label-conditioned prior of the
semi-supervised adversarial autoencoder (Makhzani et al. 2016, section 4).

The built-in priors carry a JSON ``config`` (:func:`prior_from_config` rebuilds them, so a
checkpointed model gets its prior back):

* :class:`GaussianPrior` -- :math:`\mathcal{N}(0, s^2 I_L)`;
* :class:`GaussianMixturePrior` -- :math:`\frac{1}{M}\sum_m \mathcal{N}(\mu_m, s^2 I_L)`,
  the means evenly spaced on a circle of radius :math:`r` in the first two code dimensions
  (:math:`\mu_m = r(\cos 2\pi m/M, \sin 2\pi m/M, 0, \dots)`; on a line for :math:`L = 1`),
  Makhzani et al.'s mixture of 10 Gaussians;
* :class:`UniformPrior` -- :math:`\mathcal{U}[a, b]^L`.

Reference:
    Makhzani, Shlens, Jaitly, Goodfellow & Frey, "Adversarial Autoencoders", ICLR 2016
    workshop (arXiv:1511.05644).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dunno.validation import check_float, check_int

__all__ = [
    "PRIORS",
    "GaussianMixturePrior",
    "GaussianPrior",
    "UniformPrior",
    "prior_from_config",
]


class GaussianPrior:
    r""":math:`z \sim \mathcal{N}(0, s^2 I_L)`; ``prior(n, generator) -> (n, L)``."""

    conditional = False

    def __init__(self, latent_dim: int, scale: float = 1.0):
        self.latent_dim = check_int(latent_dim, "latent_dim", "GaussianPrior", low=1)
        self.scale = check_float(scale, "scale", "GaussianPrior", low=0.0, low_open=True)
        self.config = {"name": "gaussian", "scale": self.scale}

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.scale * torch.randn(n, self.latent_dim, generator=generator)  # (n, L)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z)` of codes ``z (..., L)`` -> ``(...)``."""
        return torch.distributions.Normal(0.0, self.scale).log_prob(z).sum(-1)

    def __repr__(self) -> str:
        return f"GaussianPrior(latent_dim={self.latent_dim}, scale={self.scale})"


class UniformPrior:
    r""":math:`z \sim \mathcal{U}[a, b]^L`; ``prior(n, generator) -> (n, L)``."""

    conditional = False

    def __init__(self, latent_dim: int, low: float = -1.0, high: float = 1.0):
        self.latent_dim = check_int(latent_dim, "latent_dim", "UniformPrior", low=1)
        if not (isinstance(low, int | float) and isinstance(high, int | float)
                and math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"The 'low' and 'high' parameters of UniformPrior must be finite "
                             f"numbers with low < high. Got low={low!r}, high={high!r} instead.")
        self.low, self.high = float(low), float(high)
        self.config = {"name": "uniform", "low": self.low, "high": self.high}

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(n, self.latent_dim, generator=generator)  # (n, L)
        return self.low + (self.high - self.low) * u

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z)` of codes ``z (..., L)`` -> ``(...)``: :math:`-L \log(b - a)`
        inside the box, :math:`-\infty` outside."""
        inside = ((z >= self.low) & (z <= self.high)).all(-1)
        value = -self.latent_dim * math.log(self.high - self.low)
        return torch.where(inside, value, -math.inf).to(z.dtype)

    def __repr__(self) -> str:
        return f"UniformPrior(latent_dim={self.latent_dim}, low={self.low}, high={self.high})"


class GaussianMixturePrior:
    r"""Equal-weight mixture of :math:`M` isotropic Gaussians with means on a circle.

    ``prior(n, generator, labels=None) -> (n, L)``: with ``labels (n,)`` the code of example
    :math:`i` comes from component ``labels[i]`` (``-1``: a random component), otherwise every
    component is drawn uniformly. Component means
    :math:`\mu_m = r (\cos \tfrac{2\pi m}{M}, \sin \tfrac{2\pi m}{M}, 0, \dots, 0)`.
    """

    conditional = True

    def __init__(self, latent_dim: int, components: int = 10, radius: float = 4.0,
                 scale: float = 0.5):
        self.latent_dim = check_int(latent_dim, "latent_dim", "GaussianMixturePrior", low=1)
        self.components = check_int(components, "components", "GaussianMixturePrior", low=1)
        self.radius = check_float(radius, "radius", "GaussianMixturePrior", low=0.0)
        self.scale = check_float(scale, "scale", "GaussianMixturePrior", low=0.0, low_open=True)
        angle = 2 * math.pi * torch.arange(self.components, dtype=torch.float64) \
            / self.components
        means = torch.zeros(self.components, self.latent_dim, dtype=torch.float64)  # (M, L)
        if self.latent_dim == 1:
            means[:, 0] = self.radius * torch.linspace(-1, 1, self.components,
                                                       dtype=torch.float64)
        else:
            means[:, 0] = self.radius * torch.cos(angle)
            means[:, 1] = self.radius * torch.sin(angle)
        self.means = means.float()
        self.config = {"name": "mixture", "components": self.components,
                       "radius": self.radius, "scale": self.scale}

    def __call__(self, n: int, generator: torch.Generator | None = None,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        comp = torch.randint(0, self.components, (n,), generator=generator)  # (n,)
        if labels is not None:
            labels = torch.as_tensor(labels).to("cpu", torch.long)
            if labels.shape != (n,) or (labels < -1).any() or (labels >= self.components).any():
                raise ValueError(
                    f"The 'labels' argument of GaussianMixturePrior must be {n} ints in "
                    f"-1..{self.components - 1} (-1: no label). Got shape "
                    f"{tuple(labels.shape)} with values in [{int(labels.min())}, "
                    f"{int(labels.max())}] instead." if labels.numel() else
                    f"The 'labels' argument of GaussianMixturePrior must have shape ({n},).")
            comp = torch.where(labels >= 0, labels, comp)
        noise = torch.randn(n, self.latent_dim, generator=generator)  # (n, L)
        return self.means[comp] + self.scale * noise

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log \frac{1}{M}\sum_m \mathcal{N}(z; \mu_m, s^2 I)` of codes
        ``z (..., L)`` -> ``(...)`` (the marginal over the components)."""
        means = self.means.to(z.device, z.dtype)  # (M, L)
        comp = torch.distributions.Normal(means, self.scale).log_prob(z[..., None, :]).sum(-1)
        return torch.logsumexp(comp, -1) - math.log(self.components)  # (...)

    def __repr__(self) -> str:
        return (f"GaussianMixturePrior(latent_dim={self.latent_dim}, components="
                f"{self.components}, radius={self.radius}, scale={self.scale})")


#: config names of the built-in priors
PRIORS: dict[str, type] = {
    "gaussian": GaussianPrior,
    "mixture": GaussianMixturePrior,
    "uniform": UniformPrior,
}


def prior_from_config(config: dict[str, Any] | str, latent_dim: int):
    """Rebuild a built-in prior from its ``config`` (or just its name: ``"gaussian"``,
    ``"mixture"``, ``"uniform"``) for codes of size ``latent_dim``."""
    if isinstance(config, str):
        config = {"name": config}
    if not isinstance(config, dict) or config.get("name") not in PRIORS:
        raise ValueError(
            f"The 'prior' parameter must be a callable (n, generator) -> (n, latent_dim) or "
            f"one of {tuple(PRIORS)} (or a dict {{'name': ..., options}}). Got {config!r} "
            "instead."
        )
    options = {k: v for k, v in config.items() if k != "name"}
    try:
        return PRIORS[config["name"]](latent_dim, **options)
    except TypeError as err:
        raise ValueError(f"Bad options for the {config['name']!r} prior: {err}") from err
