"""dunno's generative models: autoregressive (NADE, PixelCNN, PixelRNN), latent-variable
(VAE, adversarial autoencoder) and adversarial (GAN, DCGAN, InfoGAN) models, and the
recipes that train, score and sample them.

* :mod:`generative.pixels` -- the pixels a model sees (fixed / dynamic binarisation, 8-bit).
* :mod:`generative.fitting` -- ``fit(x, epochs=..., max_minutes=...)`` of every density
  model on the user's arrays, and the one training step per model kind.
* :mod:`generative.training` -- :func:`train_density` (maximum likelihood, time budget,
  resume) and :class:`DensityConfig`.
* :mod:`generative.scoring` -- :func:`score_density` (NLL in nats, bits/dim),
  :func:`load_density_model`, :func:`draw_samples`.
* :mod:`generative.adversarial.training` / :mod:`generative.adversarial.evaluation` --
  :func:`train_gan` and :func:`evaluate_gan` (cFID with our own classifier, precision /
  recall, InfoGAN code accuracy, ring-of-Gaussians mode coverage).
* :mod:`generative.plots` -- learning curves, sample grids, InfoGAN code sweeps.
"""

from generative.adversarial import DCGAN, GAN, InfoGAN
from generative.adversarial.evaluation import (
    CFID_NOTE,
    GANEvaluation,
    classifier_outputs,
    code_accuracy,
    evaluate_gan,
    load_gan,
)
from generative.adversarial.training import GANConfig, GANHistory, ring_metrics, train_gan
from generative.autoregressive import NADE, DiagonalBiLSTM, PixelCNN, RowLSTM
from generative.latent import VAE, AdversarialAutoencoder
from generative.pixels import fixed_binarize, prepare_images
from generative.scoring import draw_samples, load_density_model, score_density
from generative.training import DENSITY_MODELS, DensityConfig, DensityHistory, train_density

__all__: list[str] = [
    "CFID_NOTE",
    "DCGAN",
    "DENSITY_MODELS",
    "GAN",
    "NADE",
    "VAE",
    "AdversarialAutoencoder",
    "DensityConfig",
    "DensityHistory",
    "DiagonalBiLSTM",
    "GANConfig",
    "GANEvaluation",
    "GANHistory",
    "InfoGAN",
    "PixelCNN",
    "RowLSTM",
    "classifier_outputs",
    "code_accuracy",
    "draw_samples",
    "evaluate_gan",
    "fixed_binarize",
    "load_density_model",
    "load_gan",
    "prepare_images",
    "ring_metrics",
    "score_density",
    "train_density",
    "train_gan",
]
