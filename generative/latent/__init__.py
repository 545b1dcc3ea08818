"""Latent-variable generative models of images.

* :class:`VAE` -- the variational autoencoder (Kingma & Welling 2014) as a Pyro
  ``model``/``guide`` pair, trained with Pyro's ``Trace_ELBO`` / ``TraceMeanField_ELBO`` or
  the IWAE bound (Burda et al. 2016); ``log_prob`` is the importance-sampled estimate with
  ``K`` samples (an IWAE bound, nats). Bernoulli (binary) or continuous-Bernoulli (grey)
  likelihood; MLP or convolutional networks.
* :class:`AdversarialAutoencoder` -- Makhzani et al. (2016): a discriminator on the code
  matches it to any prior that can be sampled (:mod:`generative.latent.priors`); optional
  semi-supervised (label-conditioned) prior.
* :func:`latent_traversal` / :func:`plot_traversal` -- one code dimension at a time.

Both models are ``nn.Module`` s that own their parameters (no Pyro global parameter store)
and carry a JSON ``config`` from which :func:`dunno.checkpoints.load_model` rebuilds them
(registered as ``"generative/vae"`` and ``"generative/aae"``).

Example::

    from generative.latent import VAE
    vae = VAE((1, 28, 28), latent_dim=50)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    loss = vae.loss(x_binary); opt.zero_grad(); loss.backward(); opt.step()
    vae.log_prob(x_binary, num_samples=5000)     # (N,) IWAE estimate of log p(x), nats
    vae.sample(16)                               # (16, 1, 28, 28)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .aae import AdversarialAutoencoder
from .priors import PRIORS, GaussianMixturePrior, GaussianPrior, UniformPrior, prior_from_config
from .traversal import latent_traversal, plot_traversal
from .vae import LIKELIHOODS, OBJECTIVES, VAE

__all__ = [
    "LATENT_MODELS",
    "LIKELIHOODS",
    "OBJECTIVES",
    "PRIORS",
    "VAE",
    "AdversarialAutoencoder",
    "GaussianMixturePrior",
    "GaussianPrior",
    "UniformPrior",
    "create",
    "latent_traversal",
    "plot_traversal",
    "prior_from_config",
]

#: command-line names of the models
LATENT_MODELS: dict[str, type[nn.Module]] = {
    "vae": VAE,
    "aae": AdversarialAutoencoder,
}


def create(name: str, image_shape, **options: Any) -> nn.Module:
    """Build the latent-variable model registered as ``name`` (:data:`LATENT_MODELS`) for
    images of shape ``(C, H, W)``; ``options`` are its keyword arguments."""
    if name not in LATENT_MODELS:
        raise ValueError(f"Unknown latent-variable model {name!r}. Available: "
                         f"{', '.join(LATENT_MODELS)}.")
    return LATENT_MODELS[name](image_shape=image_shape, **options)
