"""dunno's generative models: autoregressive (NADE, PixelCNN, PixelRNN), latent-variable
(VAE, adversarial autoencoder) and adversarial (GAN, DCGAN, InfoGAN) models."""

__all__: list[str] = []
