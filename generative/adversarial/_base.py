r"""What every adversarial model shares: the two-player losses, the alternating update, data
scaling, sampling and the config used by checkpoints.

A generator :math:`G` maps latent vectors :math:`z \sim p(z)` to data space and a
discriminator :math:`D` maps data to one logit :math:`\ell = D(x)`, :math:`\sigma(\ell)` being
the probability that :math:`x` is real. One :meth:`AdversarialModel.step` on a batch of real
data :math:`x_{1..B}` does (Goodfellow et al. 2014, Algorithm 1, with one :math:`D` update per
:math:`G` update):

1. draw :math:`z_{1..B} \sim p(z)` and generate :math:`\tilde x_i = G(z_i)` (the generator's
   forward pass, in train mode: the only place where the generator's batch-norm running
   statistics move);
2. **discriminator step** on :math:`(x, \operatorname{sg}(\tilde x))`, updating only
   :math:`D`'s parameters:

   .. math::

       \mathcal{L}_D = -\frac1B\sum_i \log \sigma(D(x_i))
                       -\frac1B\sum_i \log\big(1 - \sigma(D(\tilde x_i))\big);

3. **generator step** with the *non-saturating* loss (Goodfellow et al. 2014, Section 3),
   gradients flowing through :math:`D` into :math:`G` while :math:`D`'s parameters are frozen:

   .. math::

       \mathcal{L}_G = -\frac1B\sum_i \log \sigma(D(\tilde x_i)).

Both losses are computed from logits with ``softplus`` (:math:`-\log\sigma(\ell) =
\operatorname{softplus}(-\ell)`, :math:`-\log(1-\sigma(\ell)) = \operatorname{softplus}(\ell)`).
Discriminators normalise with batch statistics only (``track_running_stats=False``), so they
hold no buffers and a generator step cannot change anything of :math:`D`.

**Data scaling.** ``output="image"`` models take images in [0, 1] (as :mod:`dunno.data` loads
them), train on :math:`2x - 1 \in [-1, 1]` with a ``tanh`` generator output, and
:meth:`~AdversarialModel.sample` returns [0, 1] images again. ``output="linear"`` models take
and return the data unchanged (2-D toy sets).

Each model owns its two Adam optimisers (``opt_g`` for :math:`G`, ``opt_d`` for :math:`D`);
:meth:`~AdversarialModel.training_state` is the ``state`` mapping for
:func:`dunno.training.fit`, so an interrupted run resumes exactly. Checkpoints
(:func:`dunno.checkpoints.save_checkpoint` with ``arch=model.arch, config=model.config``) hold
both networks; :func:`dunno.checkpoints.load_model` rebuilds them.

Reference:
    Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dunno.seeding import make_generator
from dunno.validation import check_betas, check_choice, check_float, check_int, check_shape

__all__ = [
    "OUTPUTS",
    "AdversarialModel",
    "init_dcgan_weights",
]

OUTPUTS = ("image", "linear")


def init_dcgan_weights(module: nn.Module) -> None:
    """Radford et al. (2016) initialisation: conv / linear weights ~ N(0, 0.02), batch-norm
    scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class AdversarialModel(nn.Module):
    """Base class: a subclass builds ``self.generator`` (``z (N, latent_dim) -> (N,
    *data_shape)`` in model space) and ``self.discriminator`` (``(N, *data_shape) -> (N,)``
    logits), sets ``self.config``, then calls :meth:`_make_optimizers`.

    Args:
        data_shape: shape of one example, e.g. ``(2,)`` or ``(1, 28, 28)``.
        latent_dim: size of :math:`z` (everything the generator reads).
        output: ``"image"`` (data in [0, 1], model space [-1, 1], ``tanh`` output) or
            ``"linear"`` (data unchanged).
        lr_g, lr_d: Adam learning rates of the generator and the discriminator.
        betas: Adam's ``(beta1, beta2)``; ``beta1 = 0.5`` as Radford et al. (2016).
    """

    #: registry name of the checkpoint builder (``"generative/<name>"``)
    arch: str = ""

    def __init__(self, data_shape, latent_dim: int, output: str, lr_g: float, lr_d: float,
                 betas=(0.5, 0.999)):
        super().__init__()
        name = type(self).__name__
        self.data_shape = check_shape(data_shape, "data_shape", name)
        self.latent_dim = check_int(latent_dim, "latent_dim", name, low=1)
        self.output = check_choice(output, "output", name, OUTPUTS)
        self.lr_g = check_float(lr_g, "lr_g", name, low=0.0, low_open=True)
        self.lr_d = check_float(lr_d, "lr_d", name, low=0.0, low_open=True)
        self.betas = check_betas(betas, name)
        self.config: dict[str, Any] = {}
        self.generator: nn.Module
        self.discriminator: nn.Module

    def _make_optimizers(self) -> None:
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr_g,
                                      betas=self.betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr_d,
                                      betas=self.betas)

    # ------------------------------------------------------------------ plumbing
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def training_state(self) -> dict[str, Any]:
        """The ``state`` mapping for :func:`dunno.training.fit`: this model and both
        optimisers (saved in training checkpoints and restored on resume)."""
        return {"model": self, "opt_g": self.opt_g, "opt_d": self.opt_d}

    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Validate data ``x (N, *data_shape)`` and map it to model space (``2x - 1`` for
        ``output="image"``), on the model's device, float32."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} takes data as a torch.Tensor of shape (N, "
                            f"{', '.join(map(str, self.data_shape))}). Got {type(x).__name__}.")
        if x.dim() != 1 + len(self.data_shape) or tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"This {name} was built for data of shape (N, "
                f"{', '.join(map(str, self.data_shape))}); got {tuple(x.shape)}. A model (or a "
                "trained checkpoint) only takes data of the shape it was built for."
            )
        x = x.to(self.device, torch.float32)
        if x.numel() and not torch.isfinite(x).all():
            raise ValueError(f"The data given to {name} contain NaN or infinite values.")
        if self.output == "image":
            if x.numel() and (x.min() < 0 or x.max() > 1):
                raise ValueError(
                    f"{name} with output='image' takes images in [0, 1]; got values in "
                    f"[{x.min().item():g}, {x.max().item():g}]."
                )
            x = 2.0 * x - 1.0
        return x

    def to_data_space(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_model_space`: ``(y + 1) / 2`` for images, else ``y``."""
        return (y + 1.0) / 2.0 if self.output == "image" else y

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z (n, latent_dim)`` from the prior :math:`N(0, I)`, drawn on the CPU (with the
        seeded ``generator`` if given, else torch's global generator) and moved to the
        model's device."""
        n = check_int(n, "n", f"{type(self).__name__}.sample_latent", low=1)
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z)``: ``(N, latent_dim) -> (N, *data_shape)`` in model space."""
        return self.generator(z)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """``D(x)``: logits ``(N,)`` for model-space data ``x (N, *data_shape)``."""
        return self.discriminator(x)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None,
               generator: torch.Generator | None = None, batch_size: int = 1000
               ) -> torch.Tensor:
        """``n`` samples ``(n, *data_shape)`` in data space (images in [0, 1]) on the
        model's device, generated in eval mode (batch norm with running statistics, so a
        sample does not depend on the rest of its batch).
        ``seed`` (an int) or ``generator`` makes the draw reproducible (:mod:`dunno.seeding`)."""
        n = check_int(n, "n", f"{type(self).__name__}.sample", low=1)
        generator = make_generator(seed, generator, owner=f"{type(self).__name__}.sample")
        z = self.sample_latent(n, generator)
        return self.decode(z, batch_size)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Data-space samples ``(N, *data_shape)`` (images in [0, 1]) for latents ``z (N,
        latent_dim)``, generated in eval mode in chunks of ``batch_size`` (what
        :meth:`sample` does after drawing ``z``; fixed ``z`` give comparable snapshots)."""
        was_training = self.training
        self.eval()
        try:
            out = [self.to_data_space(self.generator(z[i:i + batch_size]))
                   for i in range(0, z.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out)

    # ------------------------------------------------------------------ losses
    @staticmethod
    def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        r""":math:`\operatorname{mean}\,\operatorname{softplus}(-\ell_{real}) +
        \operatorname{mean}\,\operatorname{softplus}(\ell_{fake})`, the binary cross-entropy
        of real = 1, fake = 0."""
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    @staticmethod
    def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
        r"""The non-saturating loss :math:`\operatorname{mean}\,\operatorname{softplus}
        (-\ell_{fake}) = -\operatorname{mean} \log \sigma(D(G(z)))`."""
        return F.softplus(-fake_logits).mean()

    # ------------------------------------------------------------------ updates
    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor,
                           z: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step on :math:`D` only, from model-space ``real (B, ...)`` and detached
        ``fake (B, ...)`` generated from ``z (B, latent_dim)``. Returns ``d_loss``, ``d_real``
        and ``d_fake`` (mean :math:`\\sigma(D)` on real and fake data)."""
        real_logits = self.discriminator(real)  # (B,)
        fake_logits = self.discriminator(fake.detach())  # (B,)
        loss = self.discriminator_loss(real_logits, fake_logits)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"d_loss": loss.detach(), "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake": torch.sigmoid(fake_logits).mean().detach()}

    def _generator_objective(self, fake: torch.Tensor,
                             z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.generator_loss(self.discriminator(fake))
        return loss, {"g_loss": loss.detach()}

    def generator_step(self, fake: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step on :math:`G` only, through ``fake = G(z)`` (with its graph);
        :math:`D`'s parameters are frozen meanwhile (no gradients are even accumulated for
        them). Returns ``g_loss`` (and a subclass's extra terms)."""
        flags = [p.requires_grad for p in self.discriminator.parameters()]
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        try:
            loss, out = self._generator_objective(fake, z)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            for p, flag in zip(self.discriminator.parameters(), flags, strict=True):
                p.requires_grad_(flag)
        return out

    def step(self, batch) -> dict[str, torch.Tensor]:
        """One discriminator and one generator update on a batch of real data (a tensor
        ``(B, *data_shape)`` or a ``(x, y)`` pair whose labels are ignored), for
        :func:`dunno.training.fit`. Returns ``{"d_loss", "g_loss", "d_real", "d_fake",
        ...}``."""
        x = batch[0] if isinstance(batch, list | tuple) else batch
        real = self.to_model_space(x)
        z = self.sample_latent(real.shape[0])
        fake = self.generator(z)  # (B, *data_shape), train mode
        out = self.discriminator_step(real, fake.detach(), z)
        out.update(self.generator_step(fake, z))
        return out
