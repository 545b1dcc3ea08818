r"""InfoGAN: information-maximising GAN (Chen et al. 2016) with a categorical and continuous
latent codes, on the DCGAN-style MNIST networks of the paper.

The generator reads :math:`z = [\epsilon, \operatorname{onehot}(c_{cat}), c_{cont}]` with
noise :math:`\epsilon \sim N(0, I_{d_\epsilon})`, a categorical code
:math:`c_{cat} \sim \operatorname{Cat}(K, 1/K)` and continuous codes
:math:`c_{cont} \sim U(-1, 1)^{L}` (the paper: :math:`d_\epsilon = 62`, :math:`K = 10`,
:math:`L = 2`). To make the codes meaningful, InfoGAN maximises a variational lower bound on
the mutual information between the codes and the generated image,

.. math::

    I(c; G(z)) \;\ge\; L_I(G, Q) = \mathbb{E}_{c \sim p(c),\, x \sim G(\epsilon, c)}
        \big[\log Q(c \mid x)\big] + H(c),

with an auxiliary distribution :math:`Q(c \mid x)` whose network (the **Q head**) shares
:math:`D`'s trunk: :math:`Q(c_{cat} \mid x)` is categorical with logits from the head, and
each continuous code is Gaussian with the head's mean and either unit standard deviation
(``continuous_std="fixed"``, as the paper's MNIST runs: a fixed-variance squared error) or a
predicted one (``"learned"``). The **Q loss** (:func:`mutual_information_loss`) is the
negative log-likelihood

.. math::

    \mathcal{L}_Q = \frac1B \sum_i \Big[ -\log Q(c_{cat,i} \mid \tilde x_i)
        + \sum_{l=1}^{L} \big(\tfrac12 \log 2\pi + \log s_{il}
        + \tfrac{(c_{il} - \mu_{il})^2}{2 s_{il}^2}\big) \Big]

(:math:`s_{il} = 1` for ``"fixed"``), so :math:`L_I = H(c) - \mathcal{L}_Q` with
:math:`H(c) = \log K + L \log 2`; it is reported as ``mi_lower_bound`` (nats). As in the
authors' code, both players minimise it with weight :math:`\lambda` (``info_weight``, 1 for
MNIST): the discriminator step minimises :math:`\mathcal{L}_D + \lambda \mathcal{L}_Q^w` over
:math:`D`'s trunk, its head and the Q head (on the detached fakes), the generator step
:math:`\mathcal{L}_G + \lambda \mathcal{L}_Q^w` over :math:`G` only, where
:math:`\mathcal{L}_Q^w` weighs the continuous codes' terms by :math:`\lambda_c`
(``continuous_weight``; 1, the authors' code, gives :math:`\mathcal{L}_Q^w = \mathcal{L}_Q`).
The paper (Section 5) advises a smaller weight for continuous codes, whose differential
entropy is on another scale than the GAN losses.

Networks (paper Table 1, MNIST; ``w = width = 64``, ``hidden = 1024``)::

    G: z (N, 74) -> FC 1024 BN ReLU -> FC 7x7x128 BN ReLU -> ConvT 4x4 s2 64 BN ReLU
                 -> ConvT 4x4 s2 1 tanh
    D trunk: x -> Conv 4x4 s2 64 LReLU -> Conv 4x4 s2 128 BN LReLU -> FC 1024 BN LReLU
    D head: FC 1 (logit)    Q head: FC 128 BN LReLU -> FC (K + L, or K + 2L if learned)

The paper reports the categorical code matching the digit class with about 5% error on MNIST.
With these defaults, 20 CPU minutes of one thread (4600-5000 steps at batch 64) gave a code
accuracy of 91.8%, 72.0% and 98.9% on seeds 0, 1 and 2 (benchmarks/README.md, "InfoGAN: three
seeds"): a seed whose codes merge two digits early stays there. Batch 128 gave 98.9 / 84.3
/ 86.8% (mean 90.0%, the best measured); ``continuous_weight=0.1`` (83.1 / 78.5 / 83.8%),
``info_weight=2`` (75.0% on seed 1) and batch 128 with ``noise="uniform"`` (69% on seeds 0
and 1 after 5 epochs) did no better in the same budget.
Learning rates: 2e-4 for :math:`D` (with the Q head), 1e-3 for :math:`G` (the paper).

Reference:
    Chen, Duan, Houthooft, Schulman, Sutskever & Abbeel, "InfoGAN: Interpretable
    Representation Learning by Information Maximizing Generative Adversarial Nets",
    NeurIPS 2016.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dunno.checkpoints import register_model
from dunno.validation import check_choice, check_float, check_image_shape, check_int

from ._base import AdversarialModel, init_dcgan_weights
from .dcgan import ConvDiscriminatorTrunk, ConvGenerator

__all__ = ["CONTINUOUS_STD", "NOISE", "InfoGAN", "mutual_information_loss"]

CONTINUOUS_STD = ("fixed", "learned")
#: distributions of the incompressible noise: N(0, I) (the paper's text) or U(-1, 1) (the
#: authors' MNIST code)
NOISE = ("gaussian", "uniform")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mutual_information_loss(
    cat_logits: torch.Tensor,
    cat_codes: torch.Tensor,
    cont_mean: torch.Tensor | None = None,
    cont_codes: torch.Tensor | None = None,
    cont_log_std: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The Q loss :math:`\mathcal{L}_Q` (see the module docstring): mean over the batch of
    the categorical cross-entropy plus the Gaussian NLL of every continuous code.

    Args:
        cat_logits: ``(B, K)`` logits of :math:`Q(c_{cat} \mid x)`.
        cat_codes: ``(B,)`` the categorical codes (int64 in ``[0, K)``) used to generate x.
        cont_mean: ``(B, L)`` predicted means (``None`` when there are no continuous codes).
        cont_codes: ``(B, L)`` the continuous codes used.
        cont_log_std: ``(B, L)`` predicted log standard deviations, or ``None`` for unit
            standard deviation (then the term is :math:`\tfrac12 (c - \mu)^2 +
            \tfrac12 \log 2\pi`).

    Returns:
        A scalar tensor (nats); :math:`L_I = \log K + L \log 2 - \mathcal{L}_Q`.
    """
    loss = F.cross_entropy(cat_logits, cat_codes)
    if cont_mean is not None and cont_mean.shape[1] > 0:
        loss = loss + _continuous_nll(cont_mean, cont_codes, cont_log_std)
    return loss


def _continuous_nll(cont_mean, cont_codes, cont_log_std):
    """Batch mean of the Gaussian NLL summed over the continuous codes (scalar, nats)."""
    if cont_log_std is None:
        nll = 0.5 * (cont_codes - cont_mean) ** 2 + _HALF_LOG_2PI  # (B, L)
    else:
        nll = (cont_log_std + 0.5 * ((cont_codes - cont_mean) * torch.exp(-cont_log_std)) ** 2
               + _HALF_LOG_2PI)
    return nll.sum(dim=1).mean()


class _InfoDiscriminator(nn.Module):
    """Shared trunk with a D head (one logit) and a Q head (code parameters)."""

    def __init__(self, image_shape, width: int, hidden: int, q_outputs: int):
        super().__init__()
        self.trunk = ConvDiscriminatorTrunk(image_shape, width, hidden)
        self.head = nn.Linear(self.trunk.out_features, 1)
        self.q_head = nn.Sequential(
            nn.Linear(self.trunk.out_features, 128, bias=False),
            nn.BatchNorm1d(128, track_running_stats=False),
            nn.LeakyReLU(0.2),
            nn.Linear(128, q_outputs),
        )

    def both(self, x):
        h = self.trunk(x)  # (N, F)
        return self.head(h).squeeze(1), self.q_head(h)  # (N,), (N, q_outputs)

    def forward(self, x):
        return self.head(self.trunk(x)).squeeze(1)  # (N,)


@register_model("generative/infogan")
class InfoGAN(AdversarialModel):
    """InfoGAN (Chen et al. 2016) for ``(C, H, W)`` images in [0, 1] (``H``, ``W`` multiples
    of 4).

    Args:
        image_shape: ``(C, H, W)``, e.g. ``(1, 28, 28)``.
        noise_dim: size of the incompressible noise :math:`\\epsilon` (62 in the paper).
        categorical: :math:`K`, values of the categorical code (10), >= 2.
        continuous: :math:`L`, continuous codes ~ U(-1, 1) (2), >= 0.
        width, hidden: network sizes (64 and 1024 in the paper; see the module docstring).
        info_weight: :math:`\\lambda`, weight of the Q loss for both players (1).
        continuous_weight: :math:`\\lambda_c`, the continuous codes' share of the Q loss in
            both players' objectives (1; the reported ``q_loss`` is unweighted).
        continuous_std: ``"fixed"`` (unit variance) or ``"learned"``.
        noise: the distribution of :math:`\\epsilon`: ``"gaussian"`` (:math:`N(0, I)`) or
            ``"uniform"`` (:math:`U(-1, 1)^{d_\\epsilon}`, the authors' MNIST code).
        lr_g, lr_d, betas: Adam settings (1e-3 for G, 2e-4 for D and Q, beta1 = 0.5).

    ``latent_dim = noise_dim + categorical + continuous``; :meth:`latent` assembles ``z`` from
    chosen codes, :meth:`split_latent` takes it apart. ``step`` returns ``d_loss``, ``g_loss``,
    ``q_loss`` (nats) and ``mi_lower_bound`` (nats, from the generator step).
    """

    arch = "generative/infogan"

    def __init__(
        self,
        image_shape=(1, 28, 28),
        noise_dim: int = 62,
        categorical: int = 10,
        continuous: int = 2,
        width: int = 64,
        hidden: int = 1024,
        info_weight: float = 1.0,
        continuous_weight: float = 1.0,
        continuous_std: str = "fixed",
        noise: str = "gaussian",
        lr_g: float = 1e-3,
        lr_d: float = 2e-4,
        betas=(0.5, 0.999),
    ):
        name = type(self).__name__
        image_shape = check_image_shape(image_shape, name, multiple=4)
        noise_dim = check_int(noise_dim, "noise_dim", name, low=0)
        categorical = check_int(categorical, "categorical", name, low=2)
        continuous = check_int(continuous, "continuous", name, low=0)
        super().__init__(image_shape, noise_dim + categorical + continuous, "image", lr_g,
                         lr_d, betas)
        check_choice(continuous_std, "continuous_std", name, CONTINUOUS_STD)
        self.noise_dim, self.categorical, self.continuous = noise_dim, categorical, continuous
        self.continuous_std = continuous_std
        self.noise = check_choice(noise, "noise", name, NOISE)
        self.info_weight = check_float(info_weight, "info_weight", name, low=0.0)
        self.continuous_weight = check_float(continuous_weight, "continuous_weight", name,
                                             low=0.0)
        self.width = check_int(width, "width", name, low=1)
        self.hidden = check_int(hidden, "hidden", name, low=0)
        q_outputs = categorical + continuous * (2 if continuous_std == "learned" else 1)
        self.generator = ConvGenerator(self.latent_dim, image_shape, self.width, self.hidden)
        self.discriminator = _InfoDiscriminator(image_shape, self.width, self.hidden, q_outputs)
        init_dcgan_weights(self)
        self.config = {
            "image_shape": list(image_shape),
            "noise_dim": noise_dim,
            "categorical": categorical,
            "continuous": continuous,
            "width": self.width,
            "hidden": self.hidden,
            "info_weight": self.info_weight,
            "continuous_weight": self.continuous_weight,
            "continuous_std": continuous_std,
            "noise": self.noise,
            "lr_g": self.lr_g,
            "lr_d": self.lr_d,
            "betas": list(self.betas),
        }
        self._make_optimizers()

    # ------------------------------------------------------------------ latent codes
    @property
    def code_entropy(self) -> float:
        """:math:`H(c) = \\log K + L \\log 2` (nats; differential for the continuous part)."""
        return math.log(self.categorical) + self.continuous * math.log(2.0)

    def latent(self, noise: torch.Tensor, categorical: torch.Tensor,
               continuous: torch.Tensor | None = None) -> torch.Tensor:
        """``z (N, latent_dim)`` from ``noise (N, noise_dim)``, categorical codes ``(N,)``
        (ints in ``[0, K)``) and continuous codes ``(N, L)`` (zeros when ``None``)."""
        n = noise.shape[0]
        categorical = torch.as_tensor(categorical, device=noise.device).long()
        if categorical.shape != (n,) or (categorical.numel() and (
                categorical.min() < 0 or categorical.max() >= self.categorical)):
            raise ValueError(f"The 'categorical' codes must be {n} ints in "
                             f"[0, {self.categorical}).")
        if continuous is None:
            continuous = noise.new_zeros(n, self.continuous)
        if tuple(continuous.shape) != (n, self.continuous):
            raise ValueError(f"The 'continuous' codes must have shape ({n}, "
                             f"{self.continuous}); got {tuple(continuous.shape)}.")
        onehot = F.one_hot(categorical, self.categorical).to(noise.dtype)
        return torch.cat([noise, onehot, continuous.to(noise)], dim=1)

    def split_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z -> (noise (N, noise_dim), categorical (N,) int64, continuous (N, L))``."""
        d, k = self.noise_dim, self.categorical
        return z[:, :d], z[:, d:d + k].argmax(dim=1), z[:, d + k:]

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z`` with :math:`\\epsilon` from :attr:`noise` (:math:`N(0, I)` or
        :math:`U(-1, 1)`), a uniform categorical code and :math:`c_{cont} \\sim U(-1, 1)^L`,
        drawn on the CPU (seeded by ``generator``)."""
        n = check_int(n, "n", "InfoGAN.sample_latent", low=1)
        noise = self.draw_noise(n, generator)
        cat = torch.randint(0, self.categorical, (n,), generator=generator)
        cont = torch.rand(n, self.continuous, generator=generator) * 2 - 1
        return self.latent(noise, cat, cont).to(self.device)

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, noise_dim)`` draws of the incompressible noise :math:`\\epsilon` from
        :attr:`noise` (``"gaussian"``: :math:`N(0, I)`; ``"uniform"``: :math:`U(-1, 1)`), on
        the CPU, seeded by ``generator``."""
        if self.noise == "uniform":
            return torch.rand(n, self.noise_dim, generator=generator) * 2 - 1
        return torch.randn(n, self.noise_dim, generator=generator)

    @torch.no_grad()
    def sample_codes(self, categorical, continuous=None, *, noise=None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Images ``(N, C, H, W)`` in [0, 1] for chosen codes: ``categorical (N,)``,
        ``continuous (N, L)`` (zeros when ``None``), ``noise (N, noise_dim)`` (drawn with
        ``generator`` when ``None``). Eval mode, as :meth:`sample`."""
        categorical = torch.as_tensor(categorical).long()
        if noise is None:
            noise = self.draw_noise(categorical.shape[0], generator)
        z = self.latent(noise.float().cpu(), categorical.cpu(),
                        None if continuous is None else torch.as_tensor(continuous).float().cpu())
        return self.decode(z.to(self.device))

    # ------------------------------------------------------------------ losses
    def q_terms(self, q_out: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts of :meth:`q_loss`: the categorical cross-entropy and the summed
        continuous-code NLL (a zero tensor without continuous codes), batch means (nats)."""
        _, cat, cont = self.split_latent(z)
        k, ell = self.categorical, self.continuous
        cat_nll = F.cross_entropy(q_out[:, :k], cat)
        if ell == 0:
            return cat_nll, cat_nll.new_zeros(())
        log_std = q_out[:, k + ell:] if self.continuous_std == "learned" else None
        return cat_nll, _continuous_nll(q_out[:, k:k + ell], cont, log_std)

    def q_loss(self, q_out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """:func:`mutual_information_loss` of the Q head's output ``q_out (B, q_outputs)``
        against the codes inside ``z (B, latent_dim)``."""
        cat_nll, cont_nll = self.q_terms(q_out, z)
        return cat_nll + cont_nll

    def _info_objective(self, q_out: torch.Tensor, z: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lambda * (cat + lambda_c * cont), q_loss)``: the term both players add, and
        the unweighted Q loss that is reported."""
        cat_nll, cont_nll = self.q_terms(q_out, z)
        weighted = cat_nll + self.continuous_weight * cont_nll
        return self.info_weight * weighted, (cat_nll + cont_nll).detach()

    def discriminator_step(self, real, fake, z):
        """One Adam step on :math:`D`'s trunk, head and Q head minimising
        :math:`\\mathcal{L}_D + \\lambda \\mathcal{L}_Q^w` (``fake`` is detached)."""
        disc = self.discriminator
        real_logits = disc(real)  # (B,)
        fake_logits, q_out = disc.both(fake.detach())  # (B,), (B, q)
        d_loss = self.discriminator_loss(real_logits, fake_logits)
        info, _ = self._info_objective(q_out, z)
        self.opt_d.zero_grad(set_to_none=True)
        (d_loss + info).backward()
        self.opt_d.step()
        return {"d_loss": d_loss.detach(), "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake": torch.sigmoid(fake_logits).mean().detach()}

    def _generator_objective(self, fake, z):
        fake_logits, q_out = self.discriminator.both(fake)
        g_loss = self.generator_loss(fake_logits)
        info, q_loss = self._info_objective(q_out, z)
        return g_loss + info, {"g_loss": g_loss.detach(), "q_loss": q_loss,
                               "mi_lower_bound": self.code_entropy - q_loss}
