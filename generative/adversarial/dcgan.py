r"""DCGAN: deep convolutional GAN (Radford, Metz & Chintala 2016), sized for 28x28 images.

The architecture guidelines of the paper, for images whose height and width are multiples of
4 (28x28 MNIST: two stride-2 stages 7 -> 14 -> 28):

* no pooling: strided convolutions in :math:`D`, stride-2 transposed convolutions in
  :math:`G` (kernel 4, padding 1);
* batch norm in both networks, except at :math:`G`'s output and :math:`D`'s input;
* no fully connected hidden layers: :math:`z` is projected by one matrix product and reshaped
  to ``(2w, H/4, W/4)``, and :math:`D`'s last feature map is flattened into one logit;
* ReLU in :math:`G` with a ``tanh`` output, LeakyReLU(0.2) in :math:`D`;
* Adam with learning rate 2e-4 and :math:`\beta_1 = 0.5`; weights initialised from
  :math:`N(0, 0.02)`.

::

    G: z (N, d_z) -> Linear -> (N, 2w, H/4, W/4) BN ReLU
                  -> ConvT 4x4 s2 -> (N, w, H/2, W/2) BN ReLU
                  -> ConvT 4x4 s2 -> (N, C, H, W) tanh
    D: x (N, C, H, W) -> Conv 4x4 s2 -> (N, w, H/2, W/2) LeakyReLU
                      -> Conv 4x4 s2 -> (N, 2w, H/4, W/4) BN LeakyReLU
                      -> flatten -> Linear -> (N,) logits

``hidden > 0`` inserts one fully connected layer of that width after the reshape / before the
logit (the InfoGAN MNIST networks, Chen et al. 2016, use 1024). :math:`D`'s batch norms use
batch statistics only (no running statistics, see :mod:`generative.adversarial._base`).

Reference:
    Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
    Generative Adversarial Networks", ICLR 2016.
"""

from __future__ import annotations

from torch import nn

from dunno.checkpoints import register_model
from dunno.validation import check_image_shape, check_int

from ._base import AdversarialModel, init_dcgan_weights

__all__ = ["ConvDiscriminatorTrunk", "ConvGenerator", "DCGAN"]


class ConvGenerator(nn.Module):
    """DCGAN generator ``z (N, latent_dim) -> (N, C, H, W)`` in [-1, 1] (see the module
    docstring); ``hidden > 0`` adds a Linear-BN-ReLU layer of that width first."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int,
                 hidden: int = 0):
        super().__init__()
        c, h, w = image_shape
        self.base = (2 * width, h // 4, w // 4)
        layers: list[nn.Module] = []
        inputs = latent_dim
        if hidden:
            layers += [nn.Linear(inputs, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
            inputs = hidden
        units = 2 * width * (h // 4) * (w // 4)
        layers += [nn.Linear(inputs, units, bias=False), nn.BatchNorm1d(units), nn.ReLU()]
        self.project = nn.Sequential(*layers)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),  # (N, w, H/2, W/2)
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, 2, 1),  # (N, C, H, W)
            nn.Tanh(),
        )

    def forward(self, z):
        x = self.project(z).view(z.shape[0], *self.base)  # (N, 2w, H/4, W/4)
        return self.deconv(x)  # (N, C, H, W)


class ConvDiscriminatorTrunk(nn.Module):
    """DCGAN discriminator body ``x (N, C, H, W) -> features (N, out_features)``: two
    strided convolutions, flattened (plus a Linear-BN-LeakyReLU layer of width ``hidden``
    when ``hidden > 0``). Batch norms use batch statistics only."""

    def __init__(self, image_shape: tuple[int, int, int], width: int, hidden: int = 0):
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = [
            nn.Conv2d(c, width, 4, 2, 1),  # (N, w, H/2, W/2)
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),  # (N, 2w, H/4, W/4)
            nn.BatchNorm2d(2 * width, track_running_stats=False),
            nn.LeakyReLU(0.2),
            nn.Flatten(),  # (N, 2w * H/4 * W/4)
        ]
        self.out_features = 2 * width * (h // 4) * (w // 4)
        if hidden:
            layers += [nn.Linear(self.out_features, hidden, bias=False),
                       nn.BatchNorm1d(hidden, track_running_stats=False), nn.LeakyReLU(0.2)]
            self.out_features = hidden
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)  # (N, out_features)


class _ConvDiscriminator(nn.Module):
    def __init__(self, image_shape, width: int, hidden: int = 0):
        super().__init__()
        self.trunk = ConvDiscriminatorTrunk(image_shape, width, hidden)
        self.head = nn.Linear(self.trunk.out_features, 1)

    def forward(self, x):
        return self.head(self.trunk(x)).squeeze(1)  # (N,)


@register_model("generative/dcgan")
class DCGAN(AdversarialModel):
    """Deep convolutional GAN (Radford et al. 2016) for ``(C, H, W)`` images in [0, 1] with
    ``H``, ``W`` multiples of 4 (the non-saturating loss of :mod:`._base`).

    Args:
        image_shape: ``(C, H, W)``, e.g. ``(1, 28, 28)``.
        latent_dim: size of :math:`z \\sim N(0, I)` (100 in the paper).
        width: channels of the first conv of :math:`D` / last of :math:`G` (``w`` in the
            module docstring; 64 in the paper).
        hidden: width of an optional fully connected layer in each network (0: none).
        lr_g, lr_d, betas: Adam settings (2e-4 and (0.5, 0.999) in the paper).

    Shapes: ``step(x (B, C, H, W))``; ``sample(n) -> (n, C, H, W)`` in [0, 1].
    """

    arch = "generative/dcgan"

    def __init__(
        self,
        image_shape=(1, 28, 28),
        latent_dim: int = 100,
        width: int = 64,
        hidden: int = 0,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas=(0.5, 0.999),
    ):
        image_shape = check_image_shape(image_shape, type(self).__name__, multiple=4)
        super().__init__(image_shape, latent_dim, "image", lr_g, lr_d, betas)
        self.width = check_int(width, "width", type(self).__name__, low=1)
        self.hidden = check_int(hidden, "hidden", type(self).__name__, low=0)
        self.generator = ConvGenerator(self.latent_dim, image_shape, self.width, self.hidden)
        self.discriminator = _ConvDiscriminator(image_shape, self.width, self.hidden)
        init_dcgan_weights(self)
        self.config = {
            "image_shape": list(image_shape),
            "latent_dim": self.latent_dim,
            "width": self.width,
            "hidden": self.hidden,
            "lr_g": self.lr_g,
            "lr_d": self.lr_d,
            "betas": list(self.betas),
        }
        self._make_optimizers()
