"""dunno's generative models: autoregressive (NADE, PixelCNN, PixelRNN), latent-variable
(VAE, adversarial autoencoder) and adversarial (GAN, DCGAN, InfoGAN) models."""

from generative.autoregressive import NADE, DiagonalBiLSTM, PixelCNN, RowLSTM

__all__: list[str] = ["DiagonalBiLSTM", "NADE", "PixelCNN", "RowLSTM"]
