r"""The variational autoencoder (Kingma & Welling 2014) as a Pyro model and guide, with the
importance-weighted likelihood estimate and training bound of Burda, Grosse & Salakhutdinov
(2016).

Generative model and amortised posterior, for images :math:`x` with :math:`D = CHW` values
and a latent code :math:`z \in \mathbb{R}^L`:

.. math::

    p(z) = \mathcal{N}(0, I_L), \qquad
    p_\theta(x \mid z) = \prod_{d=1}^{D} p(x_d \mid \ell_d(z)), \qquad
    q_\phi(z \mid x) = \mathcal{N}\big(\mu_\phi(x), \operatorname{diag} \sigma_\phi(x)^2\big),

where the decoder gives one logit :math:`\ell_d` per value and the encoder gives
:math:`\mu` and :math:`\sigma = \operatorname{softplus}(\cdot) + 10^{-6}`. The likelihood of a
value is

* ``likelihood="bernoulli"`` (binary data, every value 0 or 1):
  :math:`\log p(x_d \mid \ell_d) = x_d \ell_d - \log(1 + e^{\ell_d})`;
* ``likelihood="continuous-bernoulli"`` (grey data in [0, 1]; Loaiza-Ganem & Cunningham
  2019): :math:`p(x_d \mid \lambda_d) = C(\lambda_d)\, \lambda_d^{x_d}
  (1 - \lambda_d)^{1 - x_d}` with :math:`\lambda_d = \sigma(\ell_d)` and the normaliser
  :math:`C(\lambda) = 2 \tanh^{-1}(1 - 2\lambda) / (1 - 2\lambda)` (:math:`C(1/2) = 2`), a
  proper density on :math:`[0, 1]^D` (so :math:`\log p(x)` may be positive).

**Training** maximises, per example,

.. math::

    \mathcal{L}_K(x) = \mathbb{E}_{z_{1..K} \sim q}\Big[\log \frac{1}{K} \sum_{k=1}^K
        w_k\Big], \qquad
    \log w_k = \log p_\theta(x \mid z_k) + \beta \big(\log p(z_k) - \log q_\phi(z_k \mid x)\big),

with the reparameterisation :math:`z_k = \mu + \sigma \odot \epsilon_k`. ``objective``:

* ``"trace"``: :math:`K = 1`, the ELBO, estimated by Pyro's :class:`~pyro.infer.Trace_ELBO`
  from the :meth:`VAE.model` / :meth:`VAE.guide` pair (``particles`` > 1 averages that many
  single-sample ELBOs, vectorised);
* ``"mean-field"``: the same with the KL term in closed form,
  :math:`\mathbb{E}_q \log p(x \mid z) - \beta\,\mathrm{KL}(q \,\|\, p)`
  (:class:`~pyro.infer.TraceMeanField_ELBO`);
* ``"iwae"``: the importance-weighted bound with :math:`K` = ``particles`` (Burda et al.
  2016), written out by hand (:meth:`VAE.iwae_bound`) because Pyro's
  :class:`~pyro.infer.RenyiELBO` (:math:`\alpha = 0`, the same bound) has no
  ``differentiable_loss`` for use with a torch optimiser.

``warmup_steps`` = :math:`T` > 0 turns on KL warm-up: :math:`\beta = \min(1, (t + 1) / T)`
after :math:`t` training-mode calls of :meth:`VAE.loss` (a linear ramp from :math:`1/T`;
Pyro's scale must be positive) (Bowman et al. 2016; Sønderby et al. 2016); in Pyro
the KL term is scaled with :func:`pyro.poutine.scale` on the ``z`` sites of the model and the
guide. :meth:`VAE.loss` returns the mean of :math:`-\mathcal{L}` over the batch (nats), for
any torch optimiser over ``vae.parameters()``: this is what :class:`pyro.infer.SVI` does,
without Pyro's global parameter store, so that every VAE owns its parameters and two VAEs in
one process never share or overwrite each other's weights (no ``pyro.module`` /
``pyro.param`` calls are made).

**Likelihood estimate** (:meth:`VAE.log_prob`): the importance-sampled estimate
:math:`\log \frac{1}{K}\sum_k p(x, z_k) / q(z_k \mid x)` with :math:`K` = ``num_samples``
(5000 by default, as in Burda et al. 2016), a stochastic lower bound on :math:`\log p(x)` in
expectation that tightens monotonically with :math:`K`. The samples are drawn one
:math:`(N, L)` block at a time from the generator and pushed through the decoder
``chunk_size`` at a time with a running log-sum-exp, so the memory does not grow with
:math:`K` and the result does not depend on the chunking.

References:
    Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
    Loaiza-Ganem & Cunningham, "The continuous Bernoulli", NeurIPS 2019.
    Sønderby et al., "Ladder Variational Autoencoders", NeurIPS 2016 (KL warm-up).
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch import nn

from dunno.checkpoints import register_model
from dunno.errors import CheckpointError
from dunno.inputs import apply_batched
from dunno.seeding import make_generator
from dunno.validation import (
    check_choice,
    check_hidden,
    check_image_shape,
    check_int,
    check_int_sequence,
    check_num_samples,
)
from generative.fitting import DensityFitMixin

from ._nets import (
    NETS,
    check_latent_images,
    make_decoder,
    make_encoder,
)

__all__ = ["LIKELIHOODS", "OBJECTIVES", "VAE"]

LIKELIHOODS = ("bernoulli", "continuous-bernoulli")
OBJECTIVES = ("trace", "mean-field", "iwae")
#: elements of the largest (chunk, N, D) logits tensor made by the automatic chunking
_CHUNK_ELEMENTS = 1 << 22


@register_model("generative/vae")
class VAE(DensityFitMixin, nn.Module):
    """Variational autoencoder over images of shape ``image_shape = (C, H, W)``.

    Args:
        image_shape: ``(C, H, W)``, C in {1, 3}.
        latent_dim: :math:`L`, the size of the code (50 in Burda et al. 2016).
        hidden: widths of the hidden layers of the encoder (the decoder mirrors them); for
            ``net="conv"`` the width of the fully connected layer is ``hidden[-1]``.
        net: ``"mlp"`` or ``"conv"`` (see :mod:`generative.latent._nets`).
        likelihood: ``"bernoulli"`` (binary data) or ``"continuous-bernoulli"`` (grey data
            in [0, 1]).
        objective: ``"trace"`` (Trace_ELBO), ``"mean-field"`` (analytic KL) or ``"iwae"``.
        particles: samples per example in the training objective (:math:`K` of the IWAE
            bound; the number of averaged ELBO samples otherwise).
        warmup_steps: KL warm-up length in training steps (0: off).
        channels: widths of the two convolutions for ``net="conv"``.

    Shapes: images ``(N, C, H, W)``; ``log_prob``, ``elbo`` -> ``(N,)`` nats;
    ``encode -> (loc, scale)`` each ``(N, L)``; ``decode(z (N, L)) -> logits (N, C, H, W)``;
    ``sample(n) -> (n, C, H, W)``.
    """

    arch = "generative/vae"

    def __init__(
        self,
        image_shape=(1, 28, 28),
        latent_dim: int = 50,
        hidden=(512, 512),
        net: str = "mlp",
        likelihood: str = "bernoulli",
        objective: str = "trace",
        particles: int = 1,
        warmup_steps: int = 0,
        channels=(32, 64),
    ):
        super().__init__()
        self.image_shape = check_image_shape(image_shape, "VAE", channels=(1, 3))
        self.latent_dim = check_int(latent_dim, "latent_dim", "VAE", low=1)
        self.hidden = check_hidden(hidden, "VAE")
        self.net = check_choice(net, "net", "VAE", NETS)
        self.likelihood = check_choice(likelihood, "likelihood", "VAE", LIKELIHOODS)
        self.objective = check_choice(objective, "objective", "VAE", OBJECTIVES)
        self.particles = check_num_samples(particles, "VAE", "particles")  # <= MAX_NUM_SAMPLES
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", "VAE", low=0)
        self.channels = check_int_sequence(channels, "channels", "VAE", length=2,
                                           what="the widths of the two convolutions")
        L = self.latent_dim
        self.encoder = make_encoder(net, self.image_shape, self.hidden, 2 * L, self.channels)
        self.decoder = make_decoder(net, self.image_shape, self.hidden, L, self.channels)
        self.register_buffer("prior_loc", torch.zeros(L))  # (L,)
        self.register_buffer("prior_scale", torch.ones(L))  # (L,)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # warm-up clock
        self.config: dict[str, Any] = {
            "image_shape": list(self.image_shape),
            "latent_dim": L,
            "hidden": list(self.hidden),
            "net": net,
            "likelihood": likelihood,
            "objective": objective,
            "particles": self.particles,
            "warmup_steps": self.warmup_steps,
            "channels": list(self.channels),
        }
        if objective == "trace":
            self._elbo = Trace_ELBO(num_particles=self.particles, vectorize_particles=True,
                                    max_plate_nesting=1)
        elif objective == "mean-field":
            self._elbo = TraceMeanField_ELBO(num_particles=self.particles,
                                             vectorize_particles=True, max_plate_nesting=1)
        else:
            self._elbo = None

    # ------------------------------------------------------------------ shapes and data
    @property
    def num_dims(self) -> int:
        """:math:`D = C H W`."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def pixels(self) -> str:
        """``"binary"`` for the Bernoulli likelihood, ``"grey"`` (values in [0, 1]) else."""
        return "binary" if self.likelihood == "bernoulli" else "grey"

    def check_images(self, x, owner: str = "VAE.check_images") -> torch.Tensor:
        """Validate images ``x (N, C, H, W)`` for this model (shape, finite values, 0/1 for
        binary pixels, [0, 1] for grey) and return them as floats of the model's dtype;
        errors name ``owner``."""
        xf = check_latent_images(x, self.image_shape, self.pixels, owner)
        return xf.to(self.prior_loc.dtype)

    def _fit_images(self, x: torch.Tensor, owner: str) -> torch.Tensor:
        return self.check_images(x, owner)

    def kl_weight(self) -> float:
        r""":math:`\beta = \min(1, (t + 1) / T)` with :math:`t` = training steps taken and
        :math:`T` = ``warmup_steps`` (1 without warm-up)."""
        if self.warmup_steps == 0:
            return 1.0
        return min(1.0, (int(self.steps) + 1) / self.warmup_steps)

    # ------------------------------------------------------------------ networks
    def _encode(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(u)  # (N, 2L)
        loc, raw = h.chunk(2, dim=-1)
        return loc, F.softplus(raw) + 1e-6  # (N, L), (N, L)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Posterior parameters :math:`(\mu(x), \sigma(x))`, each ``(N, L)``."""
        return self._encode(self.check_images(x, "VAE.encode"))

    def _decode_flat(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``(..., D)`` for codes ``z (..., L)`` with any leading dimensions."""
        lead = z.shape[:-1]
        logits = self.decoder(z.reshape(-1, self.latent_dim))  # (M, C, H, W)
        return logits.reshape(*lead, self.num_dims)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``(N, C, H, W)`` for codes ``z (N, L)``."""
        return self._decode_flat(z).view(-1, *self.image_shape)

    def _likelihood(self, logits: torch.Tensor):
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=logits, validate_args=False)
        return dist.ContinuousBernoulli(logits=logits, validate_args=False)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathbb{E}[x \mid z]` as images ``(N, C, H, W)``: :math:`\sigma(\ell)`
        (Bernoulli) or the continuous Bernoulli mean."""
        return self._likelihood(self._decode_flat(z)).mean.view(-1, *self.image_shape)

    def _log_px(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(x \\mid z)` summed over the D values: logits ``(..., N, D)``,
        ``u (N, D)`` -> ``(..., N)``."""
        target = u.expand_as(logits)
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
        return self._likelihood(logits).log_prob(target).sum(-1)

    # ------------------------------------------------------------------ Pyro programs
    def model(self, x: torch.Tensor) -> None:
        """Pyro model: ``z ~ N(0, I)`` per example (a ``pyro.plate`` over the batch), then
        ``x ~ p(x | z)`` observed; ``x`` is ``(N, D)`` (flattened images)."""
        beta = self.kl_weight()
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(self.prior_loc, self.prior_scale).to_event(1)
            if beta != 1.0:
                with poutine.scale(scale=beta):
                    z = pyro.sample("z", prior)  # (N, L) or (P, N, L)
            else:
                z = pyro.sample("z", prior)
            pyro.sample("x", self._likelihood(self._decode_flat(z)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        r"""Pyro guide: ``z ~ q(z | x) = N(mu(x), diag sigma(x)^2)`` per example."""
        beta = self.kl_weight()
        with pyro.plate("data", x.shape[0]):
            loc, scale = self._encode(x.view(-1, *self.image_shape))
            posterior = dist.Normal(loc, scale).to_event(1)
            if beta != 1.0:
                with poutine.scale(scale=beta):
                    pyro.sample("z", posterior)
            else:
                pyro.sample("z", posterior)

    # ------------------------------------------------------------------ bounds and estimates
    def _log_weights(self, u: torch.Tensor, eps: torch.Tensor, loc: torch.Tensor,
                     scale: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        r""":math:`\log w_k = \log p(x \mid z_k) + \beta(\log p(z_k) - \log q(z_k \mid x))`
        for ``eps (K, N, L)``, ``u (N, D)`` -> ``(K, N)``."""
        z = loc + scale * eps  # (K, N, L)
        log_px = self._log_px(self._decode_flat(z), u)  # (K, N)
        prior = torch.distributions.Normal(self.prior_loc, self.prior_scale)
        log_pz = prior.log_prob(z).sum(-1)  # (K, N)
        # log q(z | x) at z = loc + scale * eps
        log_qz = (-0.5 * eps.square() - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_px + beta * (log_pz - log_qz)

    def iwae_bound(self, x: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        r"""One reparameterised sample of :math:`\mathcal{L}_K(x)` per example, ``(N,)``
        nats, differentiable (the training objective for ``objective="iwae"``; KL warm-up's
        :math:`\beta` applies). :math:`K` = ``num_samples`` (default ``particles``)."""
        k = self.particles if num_samples is None else check_num_samples(
            num_samples, "VAE.iwae_bound")
        u = self.check_images(x, "VAE.iwae_bound")
        return self._iwae(u, k)

    def _iwae(self, u: torch.Tensor, k: int) -> torch.Tensor:
        loc, scale = self._encode(u)
        eps = torch.randn(k, *loc.shape, dtype=loc.dtype, device=loc.device)  # (K, N, L)
        lw = self._log_weights(u.flatten(1), eps, loc, scale, self.kl_weight())  # (K, N)
        return torch.logsumexp(lw, 0) - math.log(k)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss: the mean over the batch of the negative training objective (ELBO
        or IWAE bound, nats), a differentiable scalar. In train mode each call advances the
        KL warm-up clock by one step."""
        u = self.check_images(x, "VAE.loss")
        if self.objective == "iwae":
            loss = -self._iwae(u, self.particles).mean()
        else:
            with pyro.validation_enabled(False):
                loss = self._elbo.differentiable_loss(self.model, self.guide, u.flatten(1))
            loss = loss / u.shape[0]
        if self.training and self.warmup_steps:
            self.steps += 1
        return loss

    def _noise(self, k: int, n: int, generator, like: torch.Tensor) -> torch.Tensor:
        """``(k, n, L)`` standard normals drawn as ``k`` successive ``(n, L)`` blocks on the
        CPU, so that the draws do not depend on how :math:`K` is chunked."""
        blocks = [torch.randn(n, self.latent_dim, generator=generator, dtype=like.dtype)
                  for _ in range(k)]
        return torch.stack(blocks).to(like.device)

    def log_prob(self, x, num_samples: int = 5000, *, chunk_size: int | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        r"""Importance-sampled :math:`\log p(x)` in nats, ``(N,)``:

        .. math::

            \log \hat p_K(x) = \log \frac{1}{K} \sum_{k=1}^K
                \frac{p(x \mid z_k)\, p(z_k)}{q(z_k \mid x)}, \qquad z_k \sim q(z \mid x),

        :math:`\mathbb{E}[\log \hat p_K(x)] \le \log p(x)`, non-decreasing in :math:`K` and
        consistent as :math:`K \to \infty` (Burda et al. 2016). The :math:`K` =
        ``num_samples`` samples go through the decoder ``chunk_size`` at a time (default:
        as many as keep a ``(chunk, N, D)`` tensor under 4M elements); the answer is the same
        for every chunk size given the same ``generator`` state (or ``seed``). ``x``: a tensor
        or any kind read by :mod:`dunno.inputs` (numpy in, numpy out; NaN / inf refused).
        """
        k = check_int(num_samples, "num_samples", "VAE.log_prob", low=1)
        if chunk_size is not None:
            chunk_size = check_int(chunk_size, "chunk_size", "VAE.log_prob", low=1)
        generator = make_generator(seed, generator, owner="VAE.log_prob")
        with torch.no_grad():
            return apply_batched(lambda xb: self._log_prob(xb, k, chunk_size, generator), x,
                                 owner="VAE.log_prob", device=self.prior_loc.device)

    def _log_prob(self, x, k: int, chunk_size: int | None, generator) -> torch.Tensor:
        u = self.check_images(x, "VAE.log_prob")
        n = u.shape[0]
        if chunk_size is None:
            chunk_size = max(1, min(k, _CHUNK_ELEMENTS // max(1, n * self.num_dims)))
        loc, scale = self._encode(u)
        flat = u.flatten(1)  # (N, D)
        total = None
        for start in range(0, k, chunk_size):
            eps = self._noise(min(chunk_size, k - start), n, generator, loc)  # (k', N, L)
            part = torch.logsumexp(self._log_weights(flat, eps, loc, scale), 0)  # (N,)
            total = part if total is None else torch.logaddexp(total, part)
        return total - math.log(k)

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, num_samples: int = 1, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
        r"""The evidence lower bound per example, ``(N,)`` nats:

        .. math::

            \mathrm{ELBO}(x) = \frac{1}{K}\sum_{k=1}^K \log p(x \mid z_k)
                - \mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big),

        the KL term in closed form (:math:`\tfrac12 \sum_l (\mu_l^2 + \sigma_l^2 - 1 -
        \log \sigma_l^2)`), the reconstruction term averaged over :math:`K` =
        ``num_samples`` draws :math:`z_k = \mu + \sigma \epsilon_k`.
        """
        k = check_num_samples(num_samples, "VAE.elbo")
        u = self.check_images(x, "VAE.elbo")
        loc, scale = self._encode(u)
        eps = self._noise(k, u.shape[0], generator, loc)  # (K, N, L)
        recon = self._log_px(self._decode_flat(loc + scale * eps), u.flatten(1)).mean(0)
        q = torch.distributions.Normal(loc, scale)
        p = torch.distributions.Normal(self.prior_loc, self.prior_scale)
        kl = torch.distributions.kl_divergence(q, p).sum(-1)  # (N,)
        return recon - kl

    def bits_per_dim(self, x: torch.Tensor, num_samples: int = 5000) -> torch.Tensor:
        r""":math:`-\log_2 \hat p_K(x) / D` per image, ``(N,)``: a code length for the
        Bernoulli likelihood only. The continuous Bernoulli's :math:`\log p(x)` is a
        log-*density* on :math:`[0, 1]^D` (it can be positive, so this would be negative and
        is no number of bits); for ``likelihood="continuous-bernoulli"`` a ValueError says
        to report nats (:meth:`log_prob`) instead."""
        if self.likelihood != "bernoulli":
            raise ValueError(
                "VAE.bits_per_dim is defined for likelihood='bernoulli' only: this VAE has "
                f"likelihood={self.likelihood!r}, whose log_prob is a log-density of "
                "continuous values (it can be positive), not a code length. Report nats "
                "(VAE.log_prob) instead."
            )
        return -self.log_prob(x, num_samples) / (self.num_dims * math.log(2.0))

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None,
               generator: torch.Generator | None = None, mean: bool = False) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` by ancestral sampling, ``z ~ p(z)`` then
        ``x ~ p(x | z)`` (0/1 values for the Bernoulli likelihood, [0, 1] values for the
        continuous Bernoulli); ``mean=True`` returns :math:`\\mathbb{E}[x \\mid z]` instead
        of a draw (smoother pictures).
        ``seed`` (an int) or ``generator`` makes the draw reproducible (:mod:`dunno.seeding`)."""
        n = check_int(n, "n", "VAE.sample", low=1)
        generator = make_generator(seed, generator, owner="VAE.sample")
        p = self.prior_loc
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype).to(p.device)
        logits = self._decode_flat(self.prior_loc + self.prior_scale * eps)  # (n, D)
        likelihood = self._likelihood(logits)
        if mean:
            out = likelihood.mean
        else:
            u = torch.rand(logits.shape, generator=generator, dtype=p.dtype).to(p.device)
            if self.likelihood == "bernoulli":
                out = (u < torch.sigmoid(logits)).to(p.dtype)
            else:
                out = likelihood.icdf(u.clamp(1e-6, 1 - 1e-6)).clamp(0, 1)
        return out.view(n, *self.image_shape)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathbb{E}[x \mid z = \mu(x)]`: the decoder's mean at the posterior mean,
        images ``(N, C, H, W)`` in [0, 1]."""
        loc, _ = self.encode(x)
        return self.decode_mean(loc)

    # ------------------------------------------------------------------ checkpoints
    def check_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Raise :class:`~dunno.errors.CheckpointError` when ``state`` holds the weights of a
        VAE with another latent size (called before the weights are loaded)."""
        loc = state.get("prior_loc")
        if loc is not None and tuple(loc.shape) != (self.latent_dim,):
            got = loc.shape[0] if loc.dim() == 1 else tuple(loc.shape)
            raise CheckpointError(
                f"The weights are for a VAE with latent_dim={got}, but this VAE has "
                f"latent_dim={self.latent_dim}. Build the VAE with latent_dim={got}, or load "
                "the checkpoint with dunno.checkpoints.load_model, which rebuilds the model "
                "from the config stored with the weights."
            )

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """:meth:`torch.nn.Module.load_state_dict`, with a clear
        :class:`~dunno.errors.CheckpointError` for weights of another latent size."""
        self.check_state_dict(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return (f"image_shape={self.image_shape}, latent_dim={self.latent_dim}, "
                f"likelihood={self.likelihood!r}, objective={self.objective!r}, "
                f"particles={self.particles}")
