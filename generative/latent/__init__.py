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

from dunno.registry import Registry

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
    "register_latent_model",
]

#: command-line names of the models (a :class:`dunno.registry.Registry`, read like a dict;
#: plugins of the entry-point group ``dunno.latent`` included)
LATENT_MODELS: Registry[type[nn.Module]] = Registry("latent-variable model", "dunno.latent")
LATENT_MODELS.register("vae", VAE)
LATENT_MODELS.register("aae", AdversarialAutoencoder)


def register_latent_model(name: str, cls=None):
    """Add ``cls`` (``cls(image_shape=..., **options)``) to :data:`LATENT_MODELS` as
    ``name``; without ``cls``, a class decorator. A name taken by another class is refused."""
    return LATENT_MODELS.register(name, cls)


def create(name: str, image_shape, **options: Any) -> nn.Module:
    """Build the latent-variable model registered as ``name`` (:data:`LATENT_MODELS`) for
    images of shape ``(C, H, W)``; ``options`` are its keyword arguments."""
    return LATENT_MODELS.create(name, image_shape=image_shape, **options)
