r"""What every autoregressive image model shares: the likelihood from conditional logits,
the training loss, ancestral sampling and the config used by checkpoints.

An autoregressive model factorises the probability of an image :math:`x` with
:math:`D = C H W` values, in raster order with channel order for RGB
(:math:`d = (rW + c)\,C + k` for row :math:`r`, column :math:`c`, channel :math:`k`), as

.. math::

    \log p(x) = \sum_{d=1}^{D} \log p(x_d \mid x_{<d}),

where each conditional is a Bernoulli with logit :math:`\ell_d` (binary pixels,
:math:`\log p = x_d \ell_d - \log(1 + e^{\ell_d})`) or a 256-way categorical with logits
:math:`\ell_{d,0..255}` (8-bit pixels, :math:`\log p = \ell_{d,x_d} - \log\sum_v e^{\ell_{d,v}}`).
A subclass's ``forward(u)`` maps the float network input ``u`` (the pixel values scaled to
[0, 1]) to all :math:`D` conditional logits in one pass, and :math:`\ell_d` depends only on
:math:`x_{<d}`. Probabilities are never formed: the losses take logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dunno.inputs import apply_batched
from dunno.seeding import make_generator
from dunno.validation import check_image_shape, check_int
from generative.fitting import DensityFitMixin

from ._checks import check_images, check_pixels

__all__ = ["AutoregressiveImageModel"]

LEVELS = 256  # values of an 8-bit pixel


class AutoregressiveImageModel(DensityFitMixin, nn.Module):
    """Base class: subclasses set ``self.config`` and implement ``forward(u)``.

    ``fit(x, epochs=..., max_minutes=..., batch_size=..., lr=..., seed=...)`` trains on the
    user's images ``(N, C, H, W)`` or, for a single-channel model, flat vectors
    ``(N, H * W)`` and returns ``self`` (:mod:`generative.fitting`); :meth:`log_prob`,
    :meth:`loss` and :meth:`logits` take the same inputs.

    ``forward(u)`` takes the float network input ``u (N, C, H, W)`` (binary pixels as 0/1,
    8-bit pixels divided by 255) and returns logits ``(N, C, H, W)`` (binary) or
    ``(N, 256, C, H, W)`` (8-bit). It does not validate its input; :meth:`logits`,
    :meth:`log_prob`, :meth:`loss` do.
    """

    #: registry name of the checkpoint builder (``"generative/<name>"``)
    arch: str = ""

    def __init__(self, image_shape, pixels: str):
        super().__init__()
        name = type(self).__name__
        self.image_shape = check_image_shape(image_shape, name, channels=(1, 3))
        self.pixels = check_pixels(pixels, name, self._pixel_kinds())
        self.config: dict[str, Any] = {}

    @classmethod
    def _pixel_kinds(cls) -> tuple[str, ...]:
        return ("binary", "8bit")

    # ------------------------------------------------------------------ shapes and data
    @property
    def num_dims(self) -> int:
        """:math:`D = C H W`, the number of modelled values per image."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def _dtype(self) -> torch.dtype:
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.get_default_dtype()

    def preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate images ``x (N, C, H, W)`` (or flat ``(N, H * W)`` for one channel) and
        return ``(u, target)``: the network input ``(N, C, H, W)`` (float, in the model's
        dtype) and the target (0/1 float or int64 0..255)."""
        xf, target = check_images(x, self.image_shape, self.pixels, type(self).__name__)
        u = xf if self.pixels == "binary" else xf / (LEVELS - 1)
        return u.to(self._dtype), target

    def _fit_images(self, x: torch.Tensor, owner: str) -> torch.Tensor:
        return check_images(x, self.image_shape, self.pixels, owner)[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Conditional logits of images ``x``: ``(N, C, H, W)`` or ``(N, 256, C, H, W)``."""
        u, _ = self.preprocess(x)
        return self(u)

    # ------------------------------------------------------------------ likelihood
    def _log_prob_from_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.pixels == "binary":
            nll = F.binary_cross_entropy_with_logits(
                logits, target.to(logits.dtype), reduction="none"
            )  # (N, C, H, W)
        else:
            nll = F.cross_entropy(logits, target, reduction="none")  # (N, C, H, W)
        # summed in float64: D float32 terms of up to a few nats each lose ~1e-4 nats at D = 784
        return -nll.flatten(1).double().sum(1).to(nll.dtype)  # (N,)

    def log_prob(self, x) -> torch.Tensor:
        r"""Exact :math:`\log p(x)` in nats, ``(N,)``, for images ``x (N, C, H, W)``: a
        tensor (differentiable), or any kind read by :mod:`dunno.inputs` (numpy in, numpy
        out; Datasets and loaders are scored batch by batch). NaN / inf are refused."""
        return apply_batched(self._log_prob, x, owner=f"{type(self).__name__}.log_prob",
                             device=next(self.parameters()).device)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        u, target = self.preprocess(x)
        return self._log_prob_from_logits(self(u), target)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss: the mean negative log-likelihood in nats over the batch."""
        return -self.log_prob(x).mean()

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`-\log_2 p(x) / D` per image, ``(N,)``."""
        return -self.log_prob(x) / (self.num_dims * math.log(2.0))

    # ------------------------------------------------------------------ sampling
    def _draw(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One value per row of ``logits``: ``(N,)`` for binary, ``(N, 256)`` for 8-bit.
        Bernoulli by comparing a uniform with the sigmoid's log-odds; categorical by the
        Gumbel-max trick. Returns pixel values (0/1 or 0..255) as floats."""
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype,
                       device="cpu").to(logits.device)
        if self.pixels == "binary":
            # x = 1  iff  U < sigmoid(l)  iff  logit(U) < l
            return (torch.log(u) - torch.log1p(-u) < logits).to(logits.dtype)
        tiny = torch.finfo(logits.dtype).tiny
        gumbel = -torch.log(-torch.log(u.clamp_min(tiny)))
        return (logits + gumbel).argmax(dim=-1).to(logits.dtype)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` images by ancestral sampling, one value at a time in the model's order;
        ``seed`` (an int) or ``generator`` makes the draw reproducible (:mod:`dunno.seeding`).

        Returns ``(n, C, H, W)`` floats holding 0/1 (binary) or 0..255 (8-bit) values, on
        the model's device. The network is re-run on the rows generated so far before each
        of the :math:`D` draws (outputs of row :math:`r` never depend on later rows).
        """
        n = check_int(n, "n", f"{type(self).__name__}.sample", low=1)
        generator = make_generator(seed, generator, owner=f"{type(self).__name__}.sample")
        c, h, w = self.image_shape
        p = next(self.parameters())
        x = torch.zeros(n, c, h, w, dtype=p.dtype, device=p.device)  # (n, C, H, W)
        scale = 1.0 if self.pixels == "binary" else 1.0 / (LEVELS - 1)
        was_training = self.training
        self.eval()
        for r in range(h):
            for col in range(w):
                for k in range(c):
                    logits = self(x[:, :, : r + 1] * scale)  # rows 0..r
                    if self.pixels == "binary":
                        step = logits[:, k, r, col]  # (n,)
                    else:
                        step = logits[:, :, k, r, col]  # (n, 256)
                    x[:, k, r, col] = self._draw(step, generator)
        self.train(was_training)
        return x

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, pixels={self.pixels!r}"
