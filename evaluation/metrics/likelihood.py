r"""Likelihood metrics for density models: NLL in nats, bits per dimension, and log-mean-exp
utilities for importance-sampled likelihood estimates.

``log_probs`` are natural-log likelihoods of shape ``(N,)``, one per example, as returned by a
density model's ``log_prob(x)``; ``-inf`` (an impossible example) is allowed, NaN and ``+inf``
are not.

**Bits per dimension and dequantisation.** For ``D``-dimensional examples,

.. math::

    \mathrm{bpd} = \frac{-\log p(x)}{D \ln 2}.

A *discrete* model (e.g. PixelCNN's 256-way softmax) gives :math:`\log P(x)` of the 8-bit data
directly: use ``bin_width=None``. A *continuous* density fitted to dequantised 8-bit data
:math:`y = (x + u)\,\Delta`, :math:`u \sim U[0, 1)^D` (``Δ = 1/256`` for data scaled to
[0, 1], ``2/256`` for [-1, 1], ``1`` for raw 0..255 values) gives a density :math:`p(y)` whose
values depend on the scaling; the comparable discrete quantity is
:math:`\log P(x) \ge \mathbb{E}_u[\log p(y)] + D \log \Delta` (Jensen; Theis et al. 2016). So
with ``bin_width=Δ``

.. math::

    \mathrm{bpd} = \frac{-\log p(y)}{D \ln 2} - \log_2 \Delta ,

i.e. **+8 bits/dim for data scaled to [0, 1]** (``Δ = 1/256``) and +7 for [-1, 1]. For a
single dequantisation sample this is an unbiased estimate of an upper bound on the discrete
model's bits/dim. A density evaluated on values that were not dequantised this way (e.g. a
continuous-Bernoulli VAE on grey values in [0, 1]) has no bits/dim at all: its
:math:`-\log p` can be negative and is no code length, so report it in nats
(``generative.scoring`` does).

References:
    Theis, van den Oord & Bethge, "A note on the evaluation of generative models", ICLR 2016.
    Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
    Kong, "A note on importance sampling using standardized weights", 1992 (effective sample
    size).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from dunno.validation import check_float, check_int, check_real

__all__ = [
    "bits_per_dim",
    "effective_sample_size",
    "has_code_length",
    "importance_sampled_log_likelihood",
    "log_mean_exp",
    "nll_nats",
]

_LN2 = math.log(2.0)


def has_code_length(model) -> bool:
    r"""Whether ``model.log_prob`` is the log of a probability *mass* (a model whose
    ``pixels`` are ``"binary"`` or ``"8bit"``), so that :math:`-\log_2 p(x)` is a code length
    and bits/dim is defined; False for a continuous likelihood (``pixels="grey"``, or a model
    that does not say: a log-density, to be reported in nats only)."""
    return getattr(model, "pixels", None) in ("binary", "8bit")


def _log_probs(x, name: str = "log_probs") -> np.ndarray:
    return check_real(x, name, ndim=1, what="a 1-D array of shape (N,)", allow_neg_inf=True)


def nll_nats(log_probs) -> float:
    r"""Mean negative log-likelihood per example, in nats:
    :math:`-\frac{1}{N}\sum_i \log p(x_i)` (``inf`` if some :math:`\log p(x_i) = -\infty`).

    Args:
        log_probs: ``(N,)`` natural-log likelihood of each example.
    """
    lp = _log_probs(log_probs)
    return 0.0 - float(np.mean(lp))  # 0.0 - 0.0 is +0.0, not -0.0


def bits_per_dim(log_probs, num_dims: int, *, bin_width: float | None = None) -> float:
    r"""Mean bits per dimension, :math:`\frac{1}{N}\sum_i \frac{-\log p(x_i)}{D \ln 2}`,
    plus the dequantisation offset :math:`-\log_2 \Delta` when ``bin_width=Δ`` is given (see
    the module docstring: ``bin_width=1/256`` adds 8 bits for 8-bit data scaled to [0, 1]).

    Args:
        log_probs: ``(N,)`` natural-log likelihood (or density) of each example.
        num_dims: ``D``, the number of dimensions of one example (e.g. ``C * H * W``).
        bin_width: ``None`` for discrete likelihoods; the width ``Δ`` of one quantisation bin
            in the model's data units for densities of dequantised data.
    """
    num_dims = check_int(num_dims, "num_dims", "bits_per_dim", low=1)
    bin_width = check_float(bin_width, "bin_width", "bits_per_dim", low=0.0, low_open=True,
                            allow_none=True)
    offset = 0.0 if bin_width is None else -math.log2(bin_width)
    return nll_nats(log_probs) / (num_dims * _LN2) + offset


def log_mean_exp(values, axis: int = 0) -> np.ndarray | float:
    r"""Numerically stable :math:`\log \frac{1}{K} \sum_{k=1}^{K} e^{v_k}` along ``axis``.

    Entries of ``-inf`` are allowed (a slice of only ``-inf`` gives ``-inf``); NaN and ``+inf``
    are rejected.

    Args:
        values: array of any shape with at least one element along ``axis``.
        axis: the axis averaged over (default 0).

    Returns:
        float64 array with ``axis`` removed (a Python float for 1-D input).
    """
    v = check_real(values, "values", ndim=tuple(range(1, 33)), what="an array with ndim >= 1",
                   allow_neg_inf=True)
    if (isinstance(axis, bool | np.bool_) or not isinstance(axis, numbers.Integral)
            or not -v.ndim <= axis < v.ndim):
        raise ValueError(
            f"The 'axis' parameter of log_mean_exp must be an int in [{-v.ndim}, {v.ndim}). "
            f"Got {axis!r} instead."
        )
    if v.shape[axis] == 0:
        raise ValueError(f"The 'values' argument must not be empty along axis {axis}.")
    m = np.max(v, axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)  # all -inf slice: shift by 0
    with np.errstate(divide="ignore"):
        out = np.log(np.mean(np.exp(v - m_safe), axis=axis)) + np.squeeze(m_safe, axis=axis)
    return float(out) if out.ndim == 0 else out


def importance_sampled_log_likelihood(log_weights) -> np.ndarray:
    r"""Importance-sampling estimate of :math:`\log p(x_n)` from ``K`` samples
    :math:`z_k \sim q(z \mid x_n)` (Burda et al. 2016):

    .. math::

        \log \hat p(x_n) = \log \frac{1}{K} \sum_{k=1}^{K} w_{kn}, \qquad
        \log w_{kn} = \log p(x_n, z_k) - \log q(z_k \mid x_n).

    A lower bound in expectation (the IWAE bound), tightening as ``K`` grows.

    Args:
        log_weights: ``(K, N)`` log importance weights.

    Returns:
        ``(N,)`` float64 estimates of :math:`\log p(x_n)` in nats.
    """
    lw = check_real(log_weights, "log_weights", ndim=2, what="a 2-D array of shape (K, N)",
                    allow_neg_inf=True)
    return np.asarray(log_mean_exp(lw, axis=0), dtype=np.float64).reshape(lw.shape[1])


def effective_sample_size(log_weights) -> np.ndarray:
    r"""Effective sample size of importance weights (Kong 1992),

    .. math::

        \mathrm{ESS}_n = \frac{(\sum_k w_{kn})^2}{\sum_k w_{kn}^2} \in [1, K],

    computed from log weights without overflow. A small ESS means the estimate of
    :func:`importance_sampled_log_likelihood` rests on few samples.

    Args:
        log_weights: ``(K, N)`` log importance weights; each column needs a finite entry.

    Returns:
        ``(N,)`` float64 effective sample sizes.
    """
    lw = check_real(log_weights, "log_weights", ndim=2, what="a 2-D array of shape (K, N)",
                    allow_neg_inf=True)
    m = lw.max(axis=0)
    if not np.all(np.isfinite(m)):
        bad = int(np.flatnonzero(~np.isfinite(m))[0])
        raise ValueError(
            f"The 'log_weights' argument must have a finite entry in every column; column {bad}"
            " is all -inf."
        )
    w = np.exp(lw - m)  # (K, N), max 1 per column
    return np.sum(w, axis=0) ** 2 / np.sum(w * w, axis=0)
