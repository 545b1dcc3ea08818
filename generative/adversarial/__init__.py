"""Generative adversarial networks, trained by :func:`dunno.training.fit`.

* :class:`GAN` -- Goodfellow et al. (2014): MLP generator and discriminator, non-saturating
  generator loss; 2-D toy data or flattened images.
* :class:`DCGAN` -- Radford et al. (2016): strided / transposed convolutions, batch norm,
  LeakyReLU, Adam with beta1 = 0.5; 28x28 images.
* :class:`InfoGAN` -- Chen et al. (2016): categorical + continuous codes, a Q head sharing
  the discriminator's trunk, and the mutual-information lower bound
  (:func:`mutual_information_loss`).

Every model is an ``nn.Module`` owning a ``generator``, a ``discriminator`` and their Adam
optimisers, with ``step(batch) -> {"d_loss", "g_loss", ...}`` (one discriminator and one
generator update; pass it to ``fit`` with ``state=model.training_state()``),
``sample(n, generator=...)`` (data space: images in [0, 1]) and a JSON ``config`` from which
:func:`dunno.checkpoints.load_model` rebuilds both networks (registered as
``"generative/gan"``, ``"generative/dcgan"``, ``"generative/infogan"``).

Example::

    from dunno.data import load_dataset, make_loader
    from dunno.training import fit
    from generative.adversarial import DCGAN

    train = load_dataset("mnist", "train")
    gan = DCGAN((1, 28, 28))
    loader = make_loader(train, 64, shuffle=True, drop_last=True)
    fit(gan.step, loader, epochs=5, state=gan.training_state())
    images = gan.sample(64)                  # (64, 1, 28, 28) in [0, 1]
"""

from __future__ import annotations

from typing import Any

from dunno.registry import Registry

from ._base import AdversarialModel
from .dcgan import DCGAN
from .gan import GAN
from .infogan import InfoGAN, mutual_information_loss

__all__ = [
    "ADVERSARIAL_MODELS",
    "DCGAN",
    "GAN",
    "AdversarialModel",
    "InfoGAN",
    "create",
    "mutual_information_loss",
    "register_adversarial_model",
]

#: command-line names of the models (a :class:`dunno.registry.Registry`, read like a dict;
#: plugins of the entry-point group ``dunno.adversarial`` included)
ADVERSARIAL_MODELS: Registry[type[AdversarialModel]] = Registry(
    "adversarial model", "dunno.adversarial"
)
for _name, _cls in (("gan", GAN), ("dcgan", DCGAN), ("infogan", InfoGAN)):
    ADVERSARIAL_MODELS.register(_name, _cls)
del _name, _cls


def register_adversarial_model(name: str, cls=None):
    """Add ``cls`` (``cls(image_shape=..., **options)``) to :data:`ADVERSARIAL_MODELS` as
    ``name``; without ``cls``, a class decorator. A name taken by another class is refused."""
    return ADVERSARIAL_MODELS.register(name, cls)


def create(name: str, data_shape, **options: Any) -> AdversarialModel:
    """Build the model registered as ``name`` (:data:`ADVERSARIAL_MODELS`) for examples of
    shape ``data_shape``: ``(C, H, W)`` images for ``dcgan`` / ``infogan``; any shape for
    ``gan`` (``output`` defaults to ``"image"`` for 3-D shapes, else ``"linear"``).
    ``options`` are the model's keyword arguments."""
    cls = ADVERSARIAL_MODELS.get(name)
    if cls is GAN:
        options.setdefault("output", "image" if len(tuple(data_shape)) == 3 else "linear")
        return GAN(data_shape=data_shape, **options)
    return cls(image_shape=data_shape, **options)
