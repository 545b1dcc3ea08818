r"""NADE: the neural autoregressive distribution estimator (Larochelle & Murray 2011), with
optional order-agnostic training (Uria, Murray & Larochelle 2014).

For binary vectors :math:`x \in \{0, 1\}^D` (images flattened in raster order) and a fixed
ordering, NADE models each conditional with one hidden layer whose input weights are *tied*
across the :math:`D` conditionals:

.. math::

    h_d = g\big(c + W_{:, <d}\, x_{<d}\big) \in \mathbb{R}^H, \qquad
    \ell_d = b_d + V_{d, :}\, h_d, \qquad
    p(x_d = 1 \mid x_{<d}) = \sigma(\ell_d),

with :math:`W \in \mathbb{R}^{H \times D}`, :math:`V \in \mathbb{R}^{D \times H}`,
:math:`b \in \mathbb{R}^D`, :math:`c \in \mathbb{R}^H` and the hidden activation :math:`g`:
``activation="relu"`` (the default) or ``"sigmoid"`` (Larochelle & Murray's). Because of
the tying, the pre-activations obey the running sum

.. math::

    a_1 = c, \qquad a_{d+1} = a_d + W_{:, d}\, x_d,

so all :math:`D` conditionals (and the exact :math:`\log p(x)`) cost :math:`O(HD)` per image
in one pass, instead of :math:`O(HD^2)` for evaluating each conditional on its own
(:meth:`NADE.log_prob_naive`).

**Two implementations of the one pass.** With gradients (training), the running sum is
taken in chunks of ``chunk_size`` dimensions: a carried sum between chunks and a masked
matrix product inside each, which keeps the work in fast matrix kernels and the memory at
``N * chunk * H``. Without gradients, on the CPU, in the raster ordering and without mask
weights (scoring: ``log_prob`` under ``torch.no_grad()``, every :mod:`dunno.inputs` kind
but a tensor that needs gradients), the pass uses that :math:`a_d` only changes at the ones
of :math:`x`: an image with :math:`S` ones has :math:`S + 1` distinct hidden vectors, which
are computed once each and dotted with the rows of :math:`V` they serve in one sampled
dense product (:mod:`generative.autoregressive._nade_states`; about 8x fewer activations on
binarised MNIST). Both give the same log-likelihoods to float rounding (a test holds them to
the :math:`D`-pass reference).

**Why ReLU by default.** Trained with Adam (1e-3, batch 128) on fixed binarised MNIST, a
NADE-500 with sigmoid units and small Gaussian weights needs many epochs: its hidden units
start in the linear middle of the sigmoid and the conditionals move slowly (107 test nats
after 2 epochs), while ReLU units with Kaiming-scaled input weights reach the level of a
reference ReLU NADE (`benchmarks/bench_nade.py --train-epochs 2`; numbers in
``benchmarks/README.md``). The activation is part of the model's config; a checkpoint
written before it existed is rebuilt with sigmoid units, as it was trained.

**Order-agnostic training** (``order_agnostic=True``, Uria et al. 2014): each training
example gets a random ordering :math:`o` and a random split point :math:`k \sim U\{0..D-1\}`;
the network sees :math:`x_{o_{<k}}` and the mask :math:`m = 1[o_{<k}]` and predicts every
remaining dimension at once,

.. math::

    h = g\big(c + W (x \odot m) + U m\big), \qquad
    \hat{\mathcal{L}} = \frac{D}{D - k} \sum_{j \ge k}
        -\log p(x_{o_j} \mid x_{o_{<k}}),

an unbiased estimate of the NLL averaged over orderings. The mask weights :math:`U` enter
linearly, so the one-pass running sum still gives the exact likelihood under any fixed
ordering: :math:`a_{d+1} = a_d + W_{:, o_d} x_{o_d} + U_{:, o_d}`. ``log_prob`` uses the
raster ordering unless given another; :meth:`NADE.ensemble_log_prob` averages the
probability over random orderings (a mixture, as Uria et al. evaluate). In eval mode
:meth:`NADE.loss` is the exact NLL under the raster ordering; in train mode the estimate above.

NADE models binary pixels only (the paper's setting; real values need RNADE).

References:
    Larochelle & Murray, "The Neural Autoregressive Distribution Estimator", AISTATS 2011.
    Uria, Murray & Larochelle, "A Deep and Tractable Density Estimator", ICML 2014.
    He, Zhang, Ren & Sun, "Delving Deep into Rectifiers", ICCV 2015 (Kaiming initialisation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dunno.checkpoints import register_model
from dunno.inputs import apply_batched
from dunno.seeding import make_generator
from dunno.validation import check_bool, check_choice, check_int

from ._base import AutoregressiveImageModel
from ._nade_states import ACTIVATIONS, shared_state_logits

__all__ = ["NADE"]


class NADE(AutoregressiveImageModel):
    r"""Binary NADE over images of shape ``image_shape = (C, H, W)``.

    Args:
        image_shape: ``(C, H, W)``; :math:`D = CHW` values, ordered raster-wise with the
            channel innermost (``d = (r W + c) C + k``). An int ``D`` means ``(1, 1, D)``:
            a NADE over ``D``-dimensional binary vectors (``fit`` / ``log_prob`` take them
            as ``(N, D)``).
        hidden: :math:`H`, hidden units (500 in Larochelle & Murray 2011).
        order_agnostic: train with random orderings (Uria et al. 2014); adds the mask
            weights :math:`U`.
        pixels: ``"binary"`` (the only kind NADE models).
        activation: hidden units :math:`g`: ``"relu"`` (default; :math:`W` initialised
            :math:`N(0, 2/D)`, Kaiming's fan-in scaling, :math:`V` :math:`N(0, 1/H)`) or
            ``"sigmoid"`` (Larochelle & Murray; :math:`W \sim N(0, 1/D)`,
            :math:`V \sim N(0, 1/H)`).
        chunk_size: dimensions per chunk of the running sum (a speed knob, not part of the
            model; 8 is fastest on CPUs we measured).

    Shapes: ``log_prob(x (N, C, H, W)) -> (N,)``; ``forward(u) -> logits (N, C, H, W)``.
    """

    arch = "generative/nade"

    def __init__(
        self,
        image_shape=(1, 28, 28),
        hidden: int = 500,
        order_agnostic: bool = False,
        pixels: str = "binary",
        *,
        activation: str = "relu",
        chunk_size: int = 8,
    ):
        if isinstance(image_shape, int) and not isinstance(image_shape, bool):
            image_shape = (1, 1, image_shape)  # D-dimensional vectors
        super().__init__(image_shape, pixels)
        hidden = check_int(hidden, "hidden", "NADE", low=1)
        check_bool(order_agnostic, "order_agnostic", "NADE")
        self.activation = check_choice(activation, "activation", "NADE", tuple(ACTIVATIONS))
        self.chunk_size = check_int(chunk_size, "chunk_size", "NADE", low=1)
        d = self.num_dims
        self.hidden = hidden
        self.order_agnostic = order_agnostic
        # ReLU: Kaiming's fan-in scaling sqrt(2 / D); sigmoid: a small Gaussian (Larochelle &
        # Murray initialise uniformly, which works no better with Adam).
        w_std = math.sqrt((2.0 if activation == "relu" else 1.0) / d)
        self.W = nn.Parameter(torch.randn(hidden, d) * w_std)  # (H, D)
        self.c = nn.Parameter(torch.zeros(hidden))  # (H,)
        self.V = nn.Parameter(torch.randn(d, hidden) * (1.0 / math.sqrt(hidden)))  # (D, H)
        self.b = nn.Parameter(torch.zeros(d))  # (D,)
        if order_agnostic:
            self.U = nn.Parameter(torch.zeros(hidden, d))  # (H, D) mask weights
        else:
            self.register_parameter("U", None)
        self.config = {
            "image_shape": list(self.image_shape),
            "hidden": hidden,
            "order_agnostic": order_agnostic,
            "pixels": pixels,
            "activation": activation,
        }

    @classmethod
    def _pixel_kinds(cls) -> tuple[str, ...]:
        return ("binary",)

    # ------------------------------------------------------------------ orderings
    def _flatten(self, u: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, D)`` in raster order, channel innermost."""
        return u.permute(0, 2, 3, 1).reshape(u.shape[0], -1)

    def _unflatten(self, v: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        c, h, w = self.image_shape
        return v.reshape(v.shape[0], rows or h, w, c).permute(0, 3, 1, 2)

    def _check_order(self, order) -> torch.Tensor | None:
        if order is None:
            return None
        order = torch.as_tensor(order, dtype=torch.long, device=self.W.device)
        if order.shape != (self.num_dims,) or not torch.equal(
            order.sort().values, torch.arange(self.num_dims, device=order.device)
        ):
            raise ValueError(
                f"The 'order' argument of NADE must be a permutation of 0..{self.num_dims - 1} "
                f"(shape ({self.num_dims},)). Got shape {tuple(order.shape)}."
            )
        if not self.order_agnostic and not torch.equal(
            order, torch.arange(self.num_dims, device=order.device)
        ):
            raise ValueError(
                "This NADE was trained for the raster ordering only; other orderings need "
                "order_agnostic=True."
            )
        return order

    # ------------------------------------------------------------------ one pass
    def _ordered_logits(self, v: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
        r"""Logits ``(N, D')`` of the first ``D' = v.shape[1]`` dimensions of ``order`` for the
        values ``v (N, D')`` of those dimensions, in one pass.

        The running sum is taken ``K = chunk_size`` dimensions at a time: the carry
        :math:`a_s = c + W_{:, <s} x_{<s}` (one small matrix product per chunk) plus, inside
        the chunk, :math:`\sum_{s \le j < i} W_{:, j} x_j` as one matrix product of the
        strictly lower-triangular masked inputs ``(K, N, K)`` with ``W`` ``(K, H)``. Zeros
        in the mask are exact, so no logit ever depends on its own or a later input.
        """
        n, d = v.shape
        if order is None:
            W, V, b = self.W.t()[:d], self.V[:d], self.b[:d]
            U = None if self.U is None else self.U.t()[:d]
        else:
            idx = order[:d]
            W, V, b = self.W.t()[idx], self.V[idx], self.b[idx]
            U = None if self.U is None else self.U.t()[idx]
        k = self.chunk_size
        strict = torch.tril(torch.ones(k, k, dtype=v.dtype, device=v.device), -1)  # (K, K)
        carry = self.c.expand(n, self.hidden)  # (N, H): a_1 = c
        out = []
        xs = v.split(k, 1)
        us = U.split(k) if U is not None else [None] * len(xs)
        chunks = zip(xs, W.split(k), V.split(k), us, strict=True)
        for xk, Wk, Vk, Uk in chunks:
            m = xk.shape[1]
            masked = strict[:m, None, :m] * xk[None]  # (K, N, K): [j < i] x_j
            a = (masked.reshape(m * n, m) @ Wk).view(m, n, self.hidden) + carry  # (K, N, H)
            if Uk is not None:
                a = a + (strict[:m, :m] @ Uk)[:, None, :]
            hid = self._act(a)  # (K, N, H)
            out.append(torch.linalg.vecdot(hid, Vk[:, None, :]))  # (K, N)
            carry = carry + xk @ Wk  # (N, H)
            if Uk is not None:
                carry = carry + Uk.sum(0)
        return torch.cat(out, 0).t() + b  # (N, D')

    def forward(self, u: torch.Tensor, order=None, *, _binary: bool = False) -> torch.Tensor:
        """All :math:`D` conditional logits in one :math:`O(HD)` pass.

        ``u (N, C, H', W)`` binary floats with ``H' <= H`` rows (the first ``H' W C``
        dimensions; only for the raster ordering) -> logits ``(N, C, H', W)``.
        (``_binary`` is for :meth:`log_prob`, whose inputs are already checked to be 0/1.)
        """
        return self._logits(u, order, binary=_binary)

    def _logits(self, u: torch.Tensor, order, *, binary: bool) -> torch.Tensor:
        """:meth:`forward`; ``binary=True`` when ``u`` is known to hold 0/1 values only (the
        inputs of :meth:`log_prob`, checked by :meth:`preprocess`)."""
        order = self._check_order(order)
        v = self._flatten(u)  # (N, D')
        if order is not None:
            if u.shape[2] != self.image_shape[1]:
                raise ValueError("A partial image needs the raster ordering.")
            logits = torch.empty_like(v)
            logits[:, order] = self._ordered_logits(v[:, order], order)
            return self._unflatten(logits)
        if self._shares_states(v, binary=binary):
            logits = shared_state_logits(v, self.W, self.c, self.V, self.b, self.activation)
        else:
            logits = self._ordered_logits(v, None)
        return self._unflatten(logits, rows=u.shape[2])

    def _act(self, a: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation](a)

    def _shares_states(self, v: torch.Tensor, *, binary: bool = False) -> bool:
        """Whether the shared-state pass applies (module docstring): no gradient needed, the
        CPU, no mask weights, and 0/1 inputs (checked here unless ``binary``: ``forward``
        takes unchecked inputs)."""
        needs_grad = torch.is_grad_enabled() and (
            v.requires_grad or any(p.requires_grad for p in self.parameters()))
        return (not needs_grad and self.U is None and v.device.type == "cpu"
                and v.numel() > 0
                and (binary or torch.equal(v, v.bool().to(v.dtype))))

    def log_prob(self, x, order=None) -> torch.Tensor:
        r"""Exact :math:`\log p(x)` in nats ``(N,)`` under the raster ordering, or under
        ``order`` (a permutation of :math:`0..D-1`, for an order-agnostic NADE). ``x``: a
        tensor (differentiable) or any kind read by :mod:`dunno.inputs` (numpy in, numpy
        out); NaN / inf are refused."""
        def one(xb):
            u, target = self.preprocess(xb)
            # through __call__, so that forward hooks see the pass as for the other models
            return self._log_prob_from_logits(self(u, order, _binary=True), target)

        return apply_batched(one, x, owner="NADE.log_prob", device=self.W.device)

    def ensemble_log_prob(
        self, x: torch.Tensor, num_orderings: int = 16, *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r""":math:`\log \frac{1}{K} \sum_k p(x \mid o_k)` over ``K`` random orderings
        (the first is the raster ordering): the exact log-likelihood of the uniform mixture
        of :math:`K` NADEs, which Uria et al. (2014) use to evaluate order-agnostic
        training. ``(N,)`` nats."""
        k = check_int(num_orderings, "num_orderings", "NADE.ensemble_log_prob", low=1)
        if not self.order_agnostic:
            raise ValueError("ensemble_log_prob needs an order-agnostic NADE.")
        logps = [self.log_prob(x)]
        for _ in range(k - 1):
            order = torch.randperm(self.num_dims, generator=generator)
            logps.append(self.log_prob(x, order))
        stacked = torch.stack(logps)  # (K, N)
        return torch.logsumexp(stacked, dim=0) - math.log(k)

    # ------------------------------------------------------------------ naive D passes
    def log_prob_naive(self, x: torch.Tensor) -> torch.Tensor:
        r"""The same :math:`\log p(x)` computed the slow way: each of the :math:`D`
        conditionals gets its own hidden layer :math:`\sigma(c + W_{:,<d} x_{<d})`, a
        matrix product over :math:`d - 1` inputs (:math:`O(HD^2)` per image). For tests and
        the benchmark (raster ordering, without the mask weights' running sum)."""
        _, target = self.preprocess(x)
        v = self._flatten(target.to(self._dtype))  # (N, D)
        total = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)  # as log_prob
        for d in range(self.num_dims):
            a = self.c + v[:, :d] @ self.W[:, :d].t()  # (N, H)
            if self.U is not None:
                a = a + self.U[:, :d].sum(dim=1)
            logit = self._act(a) @ self.V[d] + self.b[d]  # (N,)
            total = total - F.binary_cross_entropy_with_logits(logit, v[:, d], reduction="none")
        return total.to(v.dtype)

    # ------------------------------------------------------------------ training loss
    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean NLL in nats over the batch: exact (raster ordering) in eval mode or for a
        fixed-order NADE; the order-agnostic estimate in train mode when
        ``order_agnostic=True`` (module docstring)."""
        if not (self.order_agnostic and self.training):
            return -self.log_prob(x).mean()
        _, target = self.preprocess(x)
        v = self._flatten(target.to(self._dtype))  # (N, D)
        n, d = v.shape
        ranks = torch.rand(n, d, device=v.device).argsort(dim=1).argsort(dim=1)  # (N, D)
        k = torch.randint(0, d, (n, 1), device=v.device)  # (N, 1)
        m = (ranks < k).to(v.dtype)  # (N, D): 1 = observed
        hid = self._act(self.c + (v * m) @ self.W.t() + m @ self.U.t())  # (N, H)
        logits = hid @ self.V.t() + self.b  # (N, D)
        nll = F.binary_cross_entropy_with_logits(logits, v, reduction="none")  # (N, D)
        scale = d / (d - k.to(v.dtype))  # (N, 1)
        return (scale * ((1 - m) * nll).sum(dim=1, keepdim=True)).mean()

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Ancestral sampling in :math:`D` steps of :math:`O(H)` each, carrying the
        running sum :math:`a_{d+1} = a_d + W_{:,d} x_d`. Returns ``(n, C, H, W)`` 0/1 floats
        (raster ordering);
        ``seed`` (an int) or ``generator`` makes the draw reproducible (:mod:`dunno.seeding`)."""
        n = check_int(n, "n", "NADE.sample", low=1)
        generator = make_generator(seed, generator, owner="NADE.sample")
        a = self.c.expand(n, self.hidden).clone()  # (n, H)
        v = torch.zeros(n, self.num_dims, dtype=self.W.dtype, device=self.W.device)  # (n, D)
        for d in range(self.num_dims):
            logit = self._act(a) @ self.V[d] + self.b[d]  # (n,)
            v[:, d] = self._draw(logit, generator)
            a += v[:, d : d + 1] * self.W[:, d]
            if self.U is not None:
                a += self.U[:, d]
        return self._unflatten(v)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", hidden={self.hidden}, order_agnostic=" \
            f"{self.order_agnostic}, activation={self.activation!r}"


@register_model("generative/nade")
def _build_nade(**config) -> NADE:
    """A NADE rebuilt from its checkpoint config. Configs written before the ``activation``
    option existed are of sigmoid NADEs (then the only kind)."""
    config.setdefault("activation", "sigmoid")
    return NADE(**config)
