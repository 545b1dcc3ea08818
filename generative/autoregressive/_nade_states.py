r"""NADE's conditional logits by *shared hidden states*: the no-gradient scoring pass.

For binary inputs the running sum of :mod:`generative.autoregressive.nade`,
:math:`a_{d+1} = a_d + W_{:, d}\, x_d`, changes only where :math:`x_d = 1`. An image with
:math:`S` ones therefore has only :math:`S + 1` distinct hidden vectors
:math:`h_s = g(a_s)`, :math:`a_s = c + \sum_{i \le s} W_{:, q_i}` (:math:`q_i` the position
of its :math:`i`-th one, :math:`g` the activation), and state :math:`s` is the hidden layer
of the contiguous run of dimensions :math:`q_s < d \le q_{s+1}`. So

.. math::

    \ell_d = b_d + V_{d, :}\, h_{s(d)}, \qquad s(d) = \#\{j < d : x_j = 1\},

needs :math:`S + 1` activations of size :math:`H` per image instead of :math:`D` (about 8x
fewer on binarised MNIST, 13% ones).

**The states** are sums of a few rows of one table, so one
:func:`torch.nn.functional.embedding_bag` (a gather-and-add kernel) builds all of them:
with groups of :math:`G` ones (:data:`GROUP`), the *carries*
:math:`a_{gG} = a_{(g-1)G} + \sum_{(g-1)G < i \le gG} W_{:, q_i}` (one bag sum for the
group sums, then :math:`\max_n S_n / G` additions, each over the images that have group
:math:`g`: sorted by their number of ones, those are a prefix, so each addition reads and
writes contiguous rows) are appended to the table :math:`[W^\top; 0; c]`, and state
:math:`s = gG + m` is the bag :math:`\{a_{gG}, W_{:, q_{gG+1}}, \dots, W_{:, q_{gG+m}}\}`:
at most :math:`G` rows each, padded with the zero row (:math:`a_0 = c`).

**The dot products** are one sampled dense product (:func:`torch.sparse.sampled_addmm`):
a CSR pattern whose row :math:`(n, s)` holds the columns of that run, with the bias as the
sampled input. In row order the entries are exactly the :math:`(n, d)` pairs in raster
order, so the values are the ``(N, D)`` logits. Its kernel runs one dot product at a
time, latency-bound, so the rows of the table (hence of the states) and of :math:`V` are
padded with zeros to a multiple of 64 bytes (:math:`H` = 500 -> 512 in float32: whole,
aligned vectors, about 13% faster). The sums differ from the running sum's only in their
order, so the logits agree with the dense pass to float rounding.

**In blocks of images.** The bookkeeping (positions, carries, bags, the CSR rows) is done
once per chunk of :data:`IMAGES_PER_CHUNK` images; the three kernels that touch the states
(their bag sums, the activation in place, the sampled product) then run on
:data:`STATES_BLOCK` images at a time, whose states (about 3 MB at :math:`H` = 500) are
still in the cache when the next kernel reads them. For 128 images at once they are 21 MB
and come back from memory twice: 16 images per block is about 19% faster (5.5 against
6.8 ms per 100 images, one thread).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "GROUP", "IMAGES_PER_CHUNK", "STATES_BLOCK", "shared_state_logits"]

#: images whose bookkeeping is done together: their carries take ``chunk * ones / GROUP * H``
#: floats, the states of a block ``STATES_BLOCK * (ones + 1) * H``
IMAGES_PER_CHUNK = 128

#: images whose states are built, activated and multiplied together (3 MB of states at
#: H = 500 and 13% ones: they stay in the cache between the three kernels)
STATES_BLOCK = 16

#: ones per carried group: a state is the sum of at most ``GROUP`` table rows, and the
#: carries take ``max ones / GROUP`` sequential additions
GROUP = 8

# torch flags its CSR layout as beta on first use; the product used here is plain CPU code.
_CSR_WARNINGS = ("Sparse CSR tensor support is in beta state",
                 "Sparse invariant checks are implicitly disabled")


def _activate_(activation: str, a: torch.Tensor) -> None:
    if activation == "relu":
        a.clamp_min_(0.0)
    else:
        a.sigmoid_()


def _chunk_logits(v: torch.Tensor, table: torch.Tensor, v_rows: torch.Tensor,
                  b: torch.Tensor, activation: str) -> torch.Tensor:
    """Logits ``(M, D)`` of the images ``v (M, D)``. ``table (rows, H')`` holds
    :math:`W^\\top` ``(D, H)``, then the zero row, then :math:`c`, then room for the
    carries (at least ``M * (max ones // GROUP)`` rows); ``v_rows (D, H')`` is :math:`V`;
    columns ``H .. H'`` (the padding) are zero in both."""
    m, d = v.shape
    dev, group = v.device, GROUP
    zero, c_row = d, d + 1  # table rows
    mask = v.bool()  # (M, D)
    img, pos = mask.nonzero().unbind(1)  # (P,) each: sorted by image, then position
    ones = mask.sum(1)  # (M,)
    groups = int(ones.max()) // group  # most full groups of an image
    slots = (groups + 1) * group  # states per image, padded: s = 0 .. slots - 1
    # q[n, t] = position of the t-th one (t = 1 .. S_n) of image n; the zero row elsewhere
    first = torch.cumsum(ones, 0) - ones  # (M,) index in img of each image's first one
    t = torch.arange(1, img.shape[0] + 1, device=dev) - first[img]  # (P,)
    q = torch.full((m, slots), zero, dtype=torch.long, device=dev)  # (M, slots)
    q[img, t] = pos
    # state (n, s) covers d in [start, next start): start = q_s + 1, and 0 for s = 0
    s = torch.arange(slots, device=dev)  # (slots,)
    valid = (s[None, :] <= ones[:, None]).view(-1).nonzero().squeeze(1)  # (R,)
    start = q + 1  # (M, slots)
    start[:, 0] = 0
    start += torch.arange(m, device=dev)[:, None] * d
    crow = torch.cat([start.view(-1)[valid], torch.tensor([m * d], device=dev)])  # (R + 1,)

    # carries a_{gG}, g = 1 .. groups, group after group; within a group only the images
    # that have it, in the order of their number of ones (most first: a prefix)
    carry = torch.full((m, groups + 1), c_row, dtype=torch.long, device=dev)  # a_0 = c
    if groups:
        order = torch.argsort(ones, descending=True, stable=True)  # (M,)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(m, device=dev)
        full = ones[order][None, :] >= group * torch.arange(
            1, groups + 1, device=dev)[:, None]  # (groups, M): image of rank r has group g
        active = full.sum(1)  # (groups,) images with group g
        offset = torch.cumsum(active, 0) - active  # (groups,) first row of group g
        # sums of the full groups: ones (g - 1) G + 1 .. g G of each image that has them
        members = q[order, 1:groups * group + 1].view(m, groups, group).transpose(0, 1)
        sums = F.embedding_bag(members[full], table[:zero + 1], mode="sum")  # (rows, H)
        carries = table[c_row + 1:c_row + 1 + sums.shape[0]]  # (rows, H)
        bounds = torch.stack([offset, active], 1).tolist()
        lo, k = bounds[0]
        torch.add(table[c_row], sums[lo:lo + k], out=carries[lo:lo + k])
        for g in range(1, len(bounds)):
            (prev, _), (lo, k) = bounds[g - 1], bounds[g]
            torch.add(carries[prev:prev + k], sums[lo:lo + k], out=carries[lo:lo + k])
        carry[:, 1:] = c_row + 1 + offset[None, :] + rank[:, None]  # used where g <= groups_n
    # bag of state s = g G + j: [a_{gG}, W q_{gG+1}, ..., W q_{gG+j}], then the zero row
    bags = q.view(m, groups + 1, group)
    bags[:, :, 0] = carry
    upto = torch.arange(group, device=dev)
    bags = torch.where(upto[None, :] <= upto[:, None], bags[:, :, None, :], zero)
    bags = bags.view(m * slots, group)[valid]  # (R, GROUP): the rows summed into each state

    # the states, their activation and their dot products, a block of images at a time:
    # a block's states (about 3 MB) stay in the cache between the three kernels
    cols = torch.arange(d, device=dev).repeat(min(m, STATES_BLOCK))  # (block * D,)
    bias = b.repeat(min(m, STATES_BLOCK))  # (block * D,)
    row_of = [0, *torch.cumsum(ones + 1, 0).tolist()]  # (M + 1,) first state row per image
    out = []
    for lo in range(0, m, STATES_BLOCK):
        hi = min(lo + STATES_BLOCK, m)
        r0, r1, k = row_of[lo], row_of[hi], (hi - lo) * d
        states = F.embedding_bag(bags[r0:r1], table, mode="sum")  # (rows, H)
        _activate_(activation, states)
        with warnings.catch_warnings():
            for message in _CSR_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            pattern = torch.sparse_csr_tensor(crow[r0:r1 + 1] - lo * d, cols[:k], bias[:k],
                                              (r1 - r0, d))
            out.append(torch.sparse.sampled_addmm(pattern, states, v_rows.t()).values())
    return torch.cat(out).view(m, d)  # (M, D): b_d + V_d . h_{s(n, d)}


@torch.no_grad()
def shared_state_logits(v: torch.Tensor, W: torch.Tensor, c: torch.Tensor, V: torch.Tensor,
                        b: torch.Tensor, activation: str, *,
                        chunk: int = IMAGES_PER_CHUNK) -> torch.Tensor:
    r"""NADE logits ``(N, D')`` of binary ``v (N, D')`` (the first :math:`D'` dimensions in
    the model's order) by shared hidden states (module docstring).

    Args:
        v: ``(N, D')`` 0/1 values.
        W: ``(H, D)`` input weights (only the first :math:`D'` columns are used).
        c: ``(H,)`` hidden bias.
        V: ``(D, H)`` output weights; ``b``: ``(D,)`` output bias.
        activation: ``"relu"`` or ``"sigmoid"``.
        chunk: images per chunk (memory about ``(chunk * ones / GROUP + STATES_BLOCK *
            (ones + 1)) * H`` floats for ``ones`` ones per image).

    Returns:
        ``(N, D')`` logits :math:`b_d + V_{d,:} g(c + W_{:,<d} x_{<d})`, no gradient.
    """
    n, d = v.shape
    h = c.shape[0]
    # rows of a multiple of 64 bytes: the dot products then run in whole aligned vectors
    # (13% faster at H = 500 than unpadded rows); the padding is zero in W, c and V
    lanes = 64 // v.element_size()
    hp = -(-h // lanes) * lanes
    lows = range(0, n, chunk)
    ones = v.bool().sum(1)  # (N,)
    groups = max(int(ones[lo:lo + chunk].max()) // GROUP * len(ones[lo:lo + chunk])
                 for lo in lows)  # carry rows of the largest chunk
    table = torch.empty(d + 2 + groups, hp, dtype=v.dtype, device=v.device)
    table[:d, :h] = W.t()[:d]  # (D', H): the rows gathered per one
    table[d] = 0.0
    table[d + 1, :h] = c
    table[:d + 2, h:] = 0.0
    if hp == h:
        v_rows = V[:d]  # (D', H)
    else:
        v_rows = torch.zeros(d, hp, dtype=V.dtype, device=V.device)
        v_rows[:, :h] = V[:d]
    b = b[:d].contiguous()  # (D',)
    if n <= chunk:
        return _chunk_logits(v, table, v_rows, b, activation)
    return torch.cat([_chunk_logits(v[lo:lo + chunk], table, v_rows, b, activation)
                      for lo in lows])


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}
