r"""GAN: the generative adversarial net of Goodfellow et al. (2014) with multilayer perceptrons.

Generator :math:`G : \mathbb{R}^{d_z} \to \mathbb{R}^D` (ReLU hidden layers) and discriminator
:math:`D : \mathbb{R}^D \to \mathbb{R}` (LeakyReLU(0.2) hidden layers, one logit), trained on
the minimax game

.. math::

    \min_G \max_D \; \mathbb{E}_{x \sim p_{data}} \log \sigma(D(x))
        + \mathbb{E}_{z \sim N(0, I)} \log\big(1 - \sigma(D(G(z)))\big)

with the non-saturating generator loss :math:`-\log \sigma(D(G(z)))` (Section 3 of the paper;
the step is described in :mod:`generative.adversarial._base`). The paper's maxout
discriminator is replaced by LeakyReLU units. Works on any data shape: 2-D toy points
(``output="linear"``) or flattened images (``output="image"``: data in [0, 1], ``tanh``
output).

Example::

    from generative.adversarial import GAN
    gan = GAN((2,), output="linear")             # e.g. the ring of 8 Gaussians
    losses = gan.step(x)                         # {"d_loss", "g_loss", "d_real", "d_fake"}
    gan.sample(2500)                             # (2500, 2)

Reference:
    Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
"""

from __future__ import annotations

import math

from torch import nn

from dunno.checkpoints import register_model
from dunno.validation import check_int_sequence

from ._base import AdversarialModel

__all__ = ["GAN", "MLPDiscriminator", "MLPGenerator"]


class MLPGenerator(nn.Module):
    """``z (N, latent_dim) -> (N, *data_shape)``: Linear-ReLU layers, then a linear output
    (``tanh`` when ``tanh=True``) reshaped to ``data_shape``."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], hidden: tuple[int, ...],
                 tanh: bool):
        super().__init__()
        self.data_shape = tuple(data_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, math.prod(data_shape)))
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z).view(z.shape[0], *self.data_shape)  # (N, *data_shape)


class MLPDiscriminator(nn.Module):
    """``x (N, *data_shape) -> logits (N,)``: flatten, Linear-LeakyReLU(0.2) layers, one
    linear output."""

    def __init__(self, data_shape: tuple[int, ...], hidden: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(data_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).squeeze(1)  # (N,)


@register_model("generative/gan")
class GAN(AdversarialModel):
    """MLP GAN (Goodfellow et al. 2014) with the non-saturating generator loss.

    Args:
        data_shape: shape of one example: ``(2,)`` for 2-D toy data, ``(1, 28, 28)`` for
            images (flattened by the networks).
        latent_dim: size of :math:`z \\sim N(0, I)`.
        hidden: units of each hidden layer, the same for :math:`G` and :math:`D`.
        output: ``"linear"`` (data as given) or ``"image"`` (data in [0, 1], ``tanh``).
        lr_g, lr_d, betas: Adam settings of the two players.

    Shapes: ``step(x (B, *data_shape))``; ``sample(n) -> (n, *data_shape)``;
    ``generator: (N, latent_dim) -> (N, *data_shape)``; ``discriminator: -> (N,)``.
    """

    arch = "generative/gan"

    def __init__(
        self,
        data_shape=(2,),
        latent_dim: int = 16,
        hidden=(128, 128),
        output: str = "linear",
        lr_g: float = 1e-3,
        lr_d: float = 1e-3,
        betas=(0.5, 0.999),
    ):
        super().__init__(data_shape, latent_dim, output, lr_g, lr_d, betas)
        hidden = check_int_sequence(hidden, "hidden", "GAN", what="units per hidden layer")
        self.generator = MLPGenerator(self.latent_dim, self.data_shape, hidden,
                                      tanh=output == "image")
        self.discriminator = MLPDiscriminator(self.data_shape, hidden)
        self.config = {
            "data_shape": list(self.data_shape),
            "latent_dim": self.latent_dim,
            "hidden": list(hidden),
            "output": output,
            "lr_g": self.lr_g,
            "lr_d": self.lr_d,
            "betas": list(self.betas),
        }
        self._make_optimizers()
