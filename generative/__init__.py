"""dunno's generative models: autoregressive (NADE, PixelCNN, PixelRNN), latent-variable
(VAE, adversarial autoencoder) and adversarial (GAN, DCGAN, InfoGAN) models."""

from generative.adversarial import DCGAN, GAN, InfoGAN
from generative.autoregressive import NADE, DiagonalBiLSTM, PixelCNN, RowLSTM
from generative.latent import VAE, AdversarialAutoencoder

__all__: list[str] = [
    "AdversarialAutoencoder",
    "DCGAN",
    "DiagonalBiLSTM",
    "GAN",
    "InfoGAN",
    "NADE",
    "PixelCNN",
    "RowLSTM",
    "VAE",
]
