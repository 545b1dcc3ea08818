r"""The adversarial autoencoder (Makhzani et al. 2016): an autoencoder whose code distribution
is matched to a prior by a discriminator on the code, instead of by a KL term.

A deterministic encoder :math:`z = E_\phi(x) \in \mathbb{R}^L`, a decoder with logits
:math:`\ell = G_\theta(z)` and a discriminator :math:`D_\psi(z) \in \mathbb{R}` (a logit)
are trained on every batch in two phases (three optimiser steps):

1. **reconstruction** (encoder and decoder):
   :math:`\min_{\phi, \theta} \frac{1}{N}\sum_i \mathrm{BCE}(x_i, \sigma(G_\theta(E_\phi(x_i))))`,
   the cross-entropy summed over the :math:`D` values (for binary :math:`x` this is
   :math:`-\log p(x \mid z)` of a Bernoulli decoder, in nats; grey values in [0, 1] are
   used as soft targets);
2. **regularisation**, a GAN game on the code:

   * discriminator step (discriminator only; codes detached):
     :math:`\min_\psi -\log \sigma(D(z')) - \log(1 - \sigma(D(E(x))))`, :math:`z' \sim p(z)`;
   * generator step (encoder only): the non-saturating
     :math:`\min_\phi -\log \sigma(D(E(x)))`.

The prior :math:`p(z)` is anything the user can sample: a callable
``prior(n, generator) -> (n, L)`` (:mod:`generative.latent.priors` has a Gaussian, a mixture
of Gaussians and a uniform). **Semi-supervised variant** (``num_classes`` = :math:`M`; Makhzani
et al. section 4, figure 6): the discriminator also sees a one-hot label with :math:`M + 1`
entries (the last one for unlabelled examples, label ``-1``), and the prior sample paired with
label :math:`y` comes from mixture component :math:`y` (``prior(n, generator, labels)``), so
each class is pushed to its own component.

:meth:`AdversarialAutoencoder.step` runs the three updates on one batch ``(x, y)`` and returns
``{"recon_loss", "d_loss", "g_loss"}`` for :func:`dunno.training.fit`; the optimisers come from
:meth:`AdversarialAutoencoder.configure_optimizers` (Adam; :math:`\beta_1 = 0.5` for the two
adversarial steps). Training has no likelihood: :meth:`AdversarialAutoencoder.recon_error` (per
image, nats) is what the density runner reports, and samples are decoded prior draws.

**Likelihood estimate** (:meth:`AdversarialAutoencoder.log_prob`, binary pixels): the
generative model :math:`p(z)\,p(x \mid z)` with the Bernoulli decoder has the marginal
:math:`p(x) = \int p(x \mid z) p(z)\, dz`, estimated by importance sampling with the
defensive mixture proposal :math:`q(z \mid x) = \tfrac12 \mathcal{N}(E(x), s^2 I) +
\tfrac12 p(z)` (:math:`s` = ``proposal_scale``):

.. math::

    \log \hat p_K(x) = \log \frac{1}{K}\sum_{k=1}^K
        \frac{p(x \mid z_k)\, p(z_k)}{q(z_k \mid x)}, \qquad z_k \sim q(z \mid x),

a stochastic lower bound on :math:`\log p(x)` in expectation, consistent as
:math:`K \to \infty` (the weights are at most :math:`2 p(x \mid z) \le 2`, so the estimate
never blows up). It needs a prior with a ``log_prob`` (every built-in prior has one).

Reference:
    Makhzani, Shlens, Jaitly, Goodfellow & Frey, "Adversarial Autoencoders", ICLR 2016
    workshop (arXiv:1511.05644).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dunno.checkpoints import register_model
from dunno.errors import NotFittedError
from dunno.seeding import make_generator
from dunno.validation import (
    check_choice,
    check_float,
    check_hidden,
    check_image_shape,
    check_int,
    check_int_sequence,
)
from generative.fitting import DensityFitMixin

from ._nets import (
    NETS,
    check_latent_images,
    make_decoder,
    make_encoder,
    mlp,
)
from .priors import PRIORS, prior_from_config

__all__ = ["AdversarialAutoencoder"]

PIXELS = ("binary", "grey")


@register_model("generative/aae")
class AdversarialAutoencoder(DensityFitMixin, nn.Module):
    """Adversarial autoencoder over images of shape ``image_shape = (C, H, W)``.

    Args:
        image_shape: ``(C, H, W)``, C in {1, 3}.
        latent_dim: :math:`L` (Makhzani et al. use 2 to 8 on MNIST).
        hidden: encoder widths (the decoder mirrors them); ``net="conv"``: see
            :mod:`generative.latent._nets`.
        disc_hidden: widths of the discriminator's hidden layers.
        net: ``"mlp"`` or ``"conv"``.
        pixels: ``"binary"`` (0/1 images) or ``"grey"`` (values in [0, 1]); checked on input.
        prior: a callable ``(n, generator) -> (n, L)`` (with ``num_classes``:
            ``(n, generator, labels) -> (n, L)``), or the name / config of a built-in prior
            (``"gaussian"``, ``"mixture"``, ``"uniform"``, ``{"name": "mixture", "radius":
            2.0}``). A user callable is not stored in checkpoints: a reloaded model has
            ``prior=None`` until one is assigned.
        num_classes: turns on the semi-supervised variant with this many classes.
        channels: convolution widths for ``net="conv"``.

    Shapes: ``encode(x (N, C, H, W)) -> (N, L)``; ``decode(z) -> logits (N, C, H, W)``;
    ``recon_error(x) -> (N,)`` nats; ``log_prob(x) -> (N,)`` nats (an importance-sampled
    estimate); ``sample(n) -> (n, C, H, W)``. ``fit(x, ...)`` trains on the user's images
    (:mod:`generative.fitting`).
    """

    arch = "generative/aae"

    def __init__(
        self,
        image_shape=(1, 28, 28),
        latent_dim: int = 8,
        hidden=(512, 512),
        disc_hidden=(512, 512),
        net: str = "mlp",
        pixels: str = "binary",
        prior: Callable[..., torch.Tensor] | str | dict[str, Any] | None = "gaussian",
        num_classes: int | None = None,
        channels=(32, 64),
    ):
        super().__init__()
        owner = "AdversarialAutoencoder"
        self.image_shape = check_image_shape(image_shape, owner, channels=(1, 3))
        self.latent_dim = check_int(latent_dim, "latent_dim", owner, low=1)
        self.hidden = check_hidden(hidden, owner)
        self.disc_hidden = check_hidden(disc_hidden, owner, "disc_hidden")
        self.net = check_choice(net, "net", owner, NETS)
        self.pixels = check_choice(pixels, "pixels", owner, PIXELS)
        self.channels = check_int_sequence(channels, "channels", owner, length=2,
                                           what="the widths of the two convolutions")
        if num_classes is not None:
            num_classes = check_int(num_classes, "num_classes", owner, low=1)
        self.num_classes = num_classes
        if prior is None or (isinstance(prior, dict) and prior.get("name") == "custom"):
            self.prior = None
        elif callable(prior) and not isinstance(prior, str | dict):
            self.prior = prior
        else:
            self.prior = prior_from_config(prior, self.latent_dim)
        L = self.latent_dim
        self.encoder = make_encoder(net, self.image_shape, self.hidden, L, self.channels)
        self.decoder = make_decoder(net, self.image_shape, self.hidden, L, self.channels)
        extra = 0 if num_classes is None else num_classes + 1
        self.discriminator = mlp((L + extra, *self.disc_hidden, 1))
        prior_config = getattr(self.prior, "config", None)
        if not (isinstance(prior_config, dict) and prior_config.get("name") in PRIORS):
            prior_config = {"name": "custom"}
        self.config: dict[str, Any] = {
            "image_shape": list(self.image_shape),
            "latent_dim": L,
            "hidden": list(self.hidden),
            "disc_hidden": list(self.disc_hidden),
            "net": net,
            "pixels": pixels,
            "prior": prior_config,
            "num_classes": num_classes,
            "channels": list(self.channels),
        }
        self.optimizers_: dict[str, torch.optim.Optimizer] | None = None

    # ------------------------------------------------------------------ data
    @property
    def num_dims(self) -> int:
        """:math:`D = C H W`."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.parameters())
        return p.device, p.dtype

    def check_images(self, x, owner: str = "AdversarialAutoencoder.check_images") -> torch.Tensor:
        """Validate images ``x (N, C, H, W)`` for this model (shape, finite values, 0/1 for
        binary pixels, [0, 1] for grey) and return them as floats of the model's dtype;
        errors name ``owner``."""
        xf = check_latent_images(x, self.image_shape, self.pixels, owner)
        return xf.to(self._device_dtype[1])

    def _fit_images(self, x: torch.Tensor, owner: str) -> torch.Tensor:
        return self.check_images(x, owner)

    def _fit_labels(self, labels, n: int, owner: str) -> torch.Tensor | None:
        """Semi-supervised: the labels (``-1`` = unlabelled; all ``-1`` when none are given),
        checked before training; otherwise None."""
        if self.num_classes is None:
            return None
        if labels is None:
            return torch.full((n,), -1, dtype=torch.long)
        return self._check_labels(labels, n, owner)

    def _check_labels(self, labels, n: int, owner: str) -> torch.Tensor | None:
        if self.num_classes is None:
            return None
        if labels is None:
            raise ValueError(f"This AdversarialAutoencoder is semi-supervised (num_classes="
                             f"{self.num_classes}): {owner} needs the labels (-1 = unlabelled).")
        labels = torch.as_tensor(labels)
        if labels.shape != (n,) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"The 'labels' argument of {owner} must be {n} ints. Got dtype "
                             f"{labels.dtype} and shape {tuple(labels.shape)} instead.")
        if n and (labels.min() < -1 or labels.max() >= self.num_classes):
            raise ValueError(
                f"The 'labels' argument of {owner} must hold ints in -1..{self.num_classes - 1}"
                f" (-1: unlabelled). Got values in [{int(labels.min())}, {int(labels.max())}] "
                "instead.")
        return labels.long()

    # ------------------------------------------------------------------ networks
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``z = E(x)``, ``(N, L)``."""
        return self.encoder(self.check_images(x, "AdversarialAutoencoder.encode"))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``(N, C, H, W)`` for codes ``z (N, L)``."""
        return self.decoder(z).view(-1, *self.image_shape)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\sigma(G(z))`, images ``(N, C, H, W)`` in [0, 1]."""
        return torch.sigmoid(self.decode(z))

    def _recon_error(self, u: torch.Tensor) -> torch.Tensor:
        logits = self.decode(self.encoder(u))  # (N, C, H, W)
        bce = F.binary_cross_entropy_with_logits(logits, u, reduction="none")
        return bce.flatten(1).sum(1)  # (N,)

    def recon_error(self, x: torch.Tensor) -> torch.Tensor:
        r"""Reconstruction cross-entropy per image, ``(N,)`` nats:
        :math:`\sum_d \mathrm{BCE}(x_d, \sigma(G(E(x)))_d)` (not a likelihood)."""
        return self._recon_error(self.check_images(x, "AdversarialAutoencoder.recon_error"))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean reconstruction cross-entropy over the batch (nats); the AAE's validation
        loss. Training uses :meth:`step` (three phases)."""
        return self.recon_error(x).mean()

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, num_samples: int = 1000, *,
                 proposal_scale: float = 0.1, chunk_size: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Importance-sampled :math:`\log p(x)` in nats, ``(N,)``, of the decoder's
        Bernoulli likelihood under the prior (module docstring): ``num_samples`` =
        :math:`K` draws from the defensive mixture proposal, ``chunk_size`` of them at a
        time through the decoder (the answer does not depend on the chunking for a given
        ``generator`` state). Binary pixels only: the grey model's soft-target
        cross-entropy is not a likelihood (use :meth:`recon_error`)."""
        owner = "AdversarialAutoencoder.log_prob"
        k = check_int(num_samples, "num_samples", owner, low=1)
        scale = check_float(proposal_scale, "proposal_scale", owner, low=0.0, low_open=True)
        if chunk_size is not None:
            chunk_size = check_int(chunk_size, "chunk_size", owner, low=1)
        if self.pixels != "binary":
            raise ValueError(
                "AdversarialAutoencoder.log_prob needs pixels='binary' (a Bernoulli decoder); "
                f"this model has pixels={self.pixels!r}, whose soft-target cross-entropy is "
                "not a likelihood. Use recon_error(x) as its score instead.")
        prior_log_prob = getattr(self.prior, "log_prob", None)
        if not callable(prior_log_prob):
            raise ValueError(
                f"AdversarialAutoencoder.log_prob needs a prior with a log_prob(z) method; "
                f"the prior {self.prior!r} has none. Use a built-in prior or add one.")
        u = self.check_images(x, owner)
        n = u.shape[0]
        if chunk_size is None:
            chunk_size = max(1, min(k, (1 << 22) // max(1, n * self.num_dims)))
        dtype = self._device_dtype[1]
        code = self.encoder(u)  # (N, L)
        flat = u.flatten(1)  # (N, D)
        total = None
        for start in range(0, k, chunk_size):
            m = min(chunk_size, k - start)
            z = torch.stack([self._proposal_draw(code, scale, generator)
                             for _ in range(m)])  # (m, N, L)
            logits = self.decoder(z.reshape(m * n, -1)).reshape(m, n, -1)  # (m, N, D)
            log_px = -F.binary_cross_entropy_with_logits(
                logits, flat.expand_as(logits), reduction="none").sum(-1)  # (m, N)
            log_pz = prior_log_prob(z).to(dtype)  # (m, N)
            log_near = torch.distributions.Normal(code, scale).log_prob(z).sum(-1)
            log_q = torch.logaddexp(log_near, log_pz) - math.log(2.0)
            part = torch.logsumexp(log_px + log_pz - log_q, 0)  # (N,)
            total = part if total is None else torch.logaddexp(total, part)
        return total - math.log(k)

    def _proposal_draw(self, code: torch.Tensor, scale: float,
                       generator: torch.Generator | None) -> torch.Tensor:
        """One draw ``(N, L)`` per example from ``0.5 N(code, scale^2 I) + 0.5 p(z)``, its
        random numbers taken in a fixed order (so chunking does not change them)."""
        n = code.shape[0]
        coin = torch.rand(n, 1, generator=generator) < 0.5  # (N, 1): True = from the prior
        near = torch.randn(n, self.latent_dim, generator=generator, dtype=code.dtype)
        z_prior = self.sample_prior(n, generator=generator)  # (N, L)
        return torch.where(coin.to(code.device), z_prior, code + scale * near.to(code.device))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\sigma(G(E(x)))`, images ``(N, C, H, W)``."""
        return self.decode_mean(self.encode(x))

    def _disc_input(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.num_classes is None:
            return z  # (N, L)
        slot = torch.where(labels >= 0, labels, torch.full_like(labels, self.num_classes))
        onehot = F.one_hot(slot.to(z.device), self.num_classes + 1).to(z.dtype)  # (N, M+1)
        return torch.cat([z, onehot], dim=1)  # (N, L + M + 1)

    def sample_prior(self, n: int, *, generator: torch.Generator | None = None,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` codes ``(n, L)`` from the prior, on the model's device (for the
        semi-supervised variant, from the components ``labels``)."""
        n = check_int(n, "n", "AdversarialAutoencoder.sample_prior", low=1)
        if self.prior is None:
            raise NotFittedError(
                "This AdversarialAutoencoder has no prior (it was saved with a user-defined "
                "prior, which checkpoints do not store). Assign one: model.prior = sampler, a "
                "callable (n, generator) -> (n, latent_dim)."
            )
        if self.num_classes is not None and labels is not None:
            z = self.prior(n, generator, labels.cpu())
        else:
            z = self.prior(n, generator)
        if not isinstance(z, torch.Tensor) or tuple(z.shape) != (n, self.latent_dim):
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"The 'prior' of AdversarialAutoencoder must return a tensor of shape (n, "
                f"latent_dim) = ({n}, {self.latent_dim}). Got {got} instead."
            )
        device, dtype = self._device_dtype
        return z.to(device, dtype)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self, lr: float = 1e-3, reg_lr: float | None = None,
                             adversarial_betas: tuple[float, float] = (0.5, 0.999)
                             ) -> dict[str, torch.optim.Optimizer]:
        """Create (and keep, in ``optimizers_``) the three Adam optimisers used by
        :meth:`step`: ``"recon"`` over the encoder and decoder (rate ``lr``), ``"disc"`` over
        the discriminator and ``"gen"`` over the encoder (rate ``reg_lr``, default ``lr``,
        with ``adversarial_betas``). Pass them to :func:`dunno.training.fit`'s ``state`` to
        checkpoint them."""
        owner = "AdversarialAutoencoder.configure_optimizers"
        lr = check_float(lr, "lr", owner, low=0.0, low_open=True)
        reg_lr = lr if reg_lr is None else check_float(reg_lr, "reg_lr", owner, low=0.0,
                                                       low_open=True)
        ae = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.optimizers_ = {
            "recon": torch.optim.Adam(ae, lr=lr),
            "disc": torch.optim.Adam(self.discriminator.parameters(), lr=reg_lr,
                                     betas=adversarial_betas),
            "gen": torch.optim.Adam(self.encoder.parameters(), lr=reg_lr,
                                    betas=adversarial_betas),
        }
        return self.optimizers_

    def _optimizer(self, name: str) -> torch.optim.Optimizer:
        if self.optimizers_ is None:
            raise NotFittedError(
                "This AdversarialAutoencoder has no optimisers yet. Call "
                "'configure_optimizers' before 'step' or the training phases."
            )
        return self.optimizers_[name]

    def reconstruction_phase(self, x: torch.Tensor) -> torch.Tensor:
        """One step of the ``"recon"`` optimiser (encoder + decoder) on the mean
        reconstruction cross-entropy of ``x (N, C, H, W)``; returns it (nats)."""
        opt = self._optimizer("recon")
        u = self.check_images(x, "AdversarialAutoencoder.reconstruction_phase")
        self.zero_grad(set_to_none=True)
        loss = self._recon_error(u).mean()
        loss.backward()
        opt.step()
        self.zero_grad(set_to_none=True)
        return loss.detach()

    def discriminator_phase(self, x: torch.Tensor, labels=None, *,
                            generator: torch.Generator | None = None) -> torch.Tensor:
        """One step of the ``"disc"`` optimiser: prior samples are the real class, the
        (detached) codes of ``x`` the fake one. Returns the discriminator's loss."""
        opt = self._optimizer("disc")
        u = self.check_images(x, "AdversarialAutoencoder.discriminator_phase")
        labels = self._check_labels(labels, u.shape[0], "AdversarialAutoencoder.step")
        with torch.no_grad():
            fake = self.encoder(u)  # (N, L)
        real = self.sample_prior(u.shape[0], generator=generator, labels=labels)  # (N, L)
        if labels is not None:
            labels = labels.to(u.device)
        self.zero_grad(set_to_none=True)
        d_real = self.discriminator(self._disc_input(real, labels)).squeeze(1)  # (N,)
        d_fake = self.discriminator(self._disc_input(fake, labels)).squeeze(1)  # (N,)
        loss = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        loss.backward()
        opt.step()
        self.zero_grad(set_to_none=True)
        return loss.detach()

    def generator_phase(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        r"""One step of the ``"gen"`` optimiser (encoder only) on the non-saturating loss
        :math:`-\log \sigma(D(E(x)))`; the discriminator's gradients are discarded."""
        opt = self._optimizer("gen")
        u = self.check_images(x, "AdversarialAutoencoder.generator_phase")
        labels = self._check_labels(labels, u.shape[0], "AdversarialAutoencoder.step")
        if labels is not None:
            labels = labels.to(u.device)
        self.zero_grad(set_to_none=True)
        d_fake = self.discriminator(self._disc_input(self.encoder(u), labels)).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
        loss.backward()
        opt.step()
        self.zero_grad(set_to_none=True)
        return loss.detach()

    def step(self, batch) -> dict[str, torch.Tensor]:
        """One training step on ``batch`` (``x`` or ``(x, y)``; the labels ``y`` are used
        by the semi-supervised variant only): reconstruction, discriminator and generator
        phases. Returns ``{"recon_loss", "d_loss", "g_loss"}``."""
        if isinstance(batch, list | tuple):
            x = batch[0]
            y = batch[1] if len(batch) > 1 else None
        else:
            x, y = batch, None
        device, _ = self._device_dtype
        x = x.to(device)
        return {
            "recon_loss": self.reconstruction_phase(x),
            "d_loss": self.discriminator_phase(x, y),
            "g_loss": self.generator_phase(x, y),
        }

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None,
               generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
               mean: bool = True) -> torch.Tensor:
        r"""``n`` images ``(n, C, H, W)``: decoded prior draws, :math:`\sigma(G(z))` values in
        [0, 1] (``mean=False``: a Bernoulli draw of them). ``labels`` picks the mixture
        component of each draw (semi-supervised variant).
        ``seed`` (an int) or ``generator`` makes the draw reproducible (:mod:`dunno.seeding`)."""
        generator = make_generator(seed, generator, owner="AdversarialAutoencoder.sample")
        if labels is not None:
            labels = self._check_labels(labels, n, "AdversarialAutoencoder.sample")
        probs = self.decode_mean(self.sample_prior(n, generator=generator, labels=labels))
        if mean:
            return probs
        u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype).to(probs.device)
        return (u < probs).to(probs.dtype)

    def extra_repr(self) -> str:
        return (f"image_shape={self.image_shape}, latent_dim={self.latent_dim}, "
                f"prior={self.prior!r}, num_classes={self.num_classes}")
