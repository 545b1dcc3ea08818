r"""The two-direction column recursion of the Diagonal BiLSTM, run diagonal by diagonal on
the pixels of the image only, with a hand-written backward pass.

In image coordinates the skewed column-wise LSTM of :class:`~.pixelrnn.DiagonalBiLSTM` is a
wavefront: the state of the left-to-right direction at pixel :math:`(r, c)` is computed from
the input at :math:`(r, c)` and the states at :math:`(r - 1, c)` ("above") and
:math:`(r, c - 1)` ("left"), so step :math:`d` of the recursion updates the anti-diagonal
:math:`\{(r, c) : r + c = d\}`, :math:`d = 0, \dots, H + W - 2` (column :math:`d` of the
skewed map). The right-to-left direction is the same recursion on the mirrored image
(:math:`c \mapsto W - 1 - c`). The skewed map also holds :math:`H (H - 1)` padding cells; the
states there either stay exactly zero (left of the image: zero input, zero neighbours, no
bias in the state-to-state kernel) or never reach a pixel (right of it), so they are not
computed.

Layout: feature maps are stored as ``(F, H, W, N)`` (features, rows, columns, batch), so that
the cells of one diagonal are a strided view (row step ``W - 1`` for the left-to-right
direction, ``W + 1`` for the mirrored one) of contiguous ``N``-blocks. Per step, the input
``x``, the state above, the state to the left and a constant 1 of every cell of the diagonal
are copied into one reused ``(2, F_x + 2h + 1, n_d N)`` buffer, and the pre-activations of
each direction are one matrix product with its kernel ``[K^{is} | K^{ss} | b]``
``(4h, F_x + 2h + 1)`` (:func:`~._products.mm`: oneDNN on CPU in float32); the backward
pass rebuilds the same buffer and has one product for the gradient of the inputs and one
for the kernel's per direction. The above and left states come from the previous step's
hidden states kept with zero padding (:func:`diagonal_steps`), so no step needs a special
case at the image border. Gate activations, cell states and hidden states of every step
are kept as separate small tensors, which the allocator recycles from step to step (one
buffer of a whole layer's cells would be a fresh, page-faulting allocation every call).

In float32 on the CPU, the per-step cell arithmetic (gate sigmoids, cell update,
``tanh(c)``, output; in the backward pass the gradients of the cell, the gates and the
carried cell state) runs as one compiled loop per step (:mod:`._cells`) instead of about ten
elementwise operations, each a pass over memory; elsewhere, and without a C compiler, it
runs eagerly (:func:`_cell_forward`, :func:`_cell_backward`), and the tests compare the
two.

``tanh`` is evaluated as :math:`1 - 2 \sigma(-2 u)`, exact in real arithmetic and within a
few units in the last place in floating point, and several times faster than ``tanh`` on
CPU: the ``g`` rows of the kernel are multiplied by :math:`-2` (exact), so that one
``sigmoid`` of all pre-activations gives :math:`s_g = \sigma(-2 z_g)` and
:math:`g = 1 - 2 s_g`. In the backward pass, :math:`1 - g^2 = 4 s_g (1 - s_g)` has the form
of the other gates' :math:`\sigma' = s (1 - s)`; the factor 4 is moved into the kernel
(exact) and taken out of the kernel's gradient at the end.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ._cells import available as cells_available
from ._cells import cell_backward, cell_forward
from ._products import mm, mm_nt, use_onednn

__all__ = ["DiagonalRecursion", "diagonal_steps"]


@lru_cache(maxsize=64)
def diagonal_steps(height: int, width: int) -> tuple[tuple[int, int, int, int, int], ...]:
    """Per diagonal ``d``: ``(rows, lo, shift, base0, base1)``: the number of pixels
    ``n_d``, the first row ``lo_d``, ``shift = lo_d - lo_{d-1}`` (0 for ``d = 0``) and the
    flat index ``r W + c`` of the first pixel in the left-to-right and in the mirrored
    direction.

    Cell ``j`` of step ``d`` (row ``lo_d + j``) has the pixel above at cell
    ``j + shift - 1`` of step ``d - 1`` and its left neighbour at cell ``j + shift``.
    States kept *padded*, ``(2, h, (n_d + 2) N)`` with cell ``j`` at column block ``j + 1``
    and zero blocks first and last, give the above and the left states of a whole step as
    two contiguous windows of the previous step's, starting at blocks ``shift`` and
    ``shift + 1``; a missing neighbour (row 0, column 0) falls on a zero block."""
    steps = []
    prev_lo = 0
    for d in range(height + width - 1):
        lo, hi = max(0, d - width + 1), min(height - 1, d)
        steps.append((hi - lo + 1, lo, lo - prev_lo,
                      lo * width + (d - lo), lo * width + (width - 1 - d + lo)))
        prev_lo = lo
    return tuple(steps)


def _diag(t: torch.Tensor, q: int, base: int, rows: int, width: int) -> torch.Tensor:
    """``(F, rows, N)`` view of the cells of one diagonal of ``t (F, H', W, N)`` (contiguous)
    for direction ``q``, starting at flat pixel index ``base``."""
    f, h, w, n = t.shape
    step = width - 1 if q == 0 else width + 1
    return t.as_strided((f, rows, n), (h * w * n, step * n, 1), t.storage_offset() + base * n)


def _fill(buf, xs, hpad, step, hd, width, n):
    """``buf (2, F + 1, n_d N)[:, :F] <- [x | h above | h left]`` of the cells of ``step``
    (both directions) from the input and the previous step's padded hidden states."""
    rows, _lo, shift, base0, base1 = step
    cx = xs.shape[0]
    buf[0, :cx].view(cx, rows, n).copy_(_diag(xs, 0, base0, rows, width))
    buf[1, :cx].view(cx, rows, n).copy_(_diag(xs, 1, base1, rows, width))
    if hpad is None:
        buf[:, cx : cx + 2 * hd].zero_()
    else:
        buf[:, cx : cx + hd].copy_(hpad[:, :, shift * n : (shift + rows) * n])
        buf[:, cx + hd : cx + 2 * hd].copy_(hpad[:, :, (shift + 1) * n : (shift + 1 + rows) * n])


def _padded(like, hd, cols, n):
    """``(2, h, cols + 2 N)`` with zero first and last ``N`` columns (the rest is written
    by the caller)."""
    out = like.new_empty(2, hd, cols + 2 * n)
    out[:, :, :n].zero_()
    out[:, :, cols + n :].zero_()
    return out


def _forward(xs, kernel, hd):
    """``kernel (2, 4h, F + 1)``: ``[K^{is} | K^{ss} | b]`` with the ``g`` rows multiplied
    by -2 (see the module docstring). Returns the combined output and, per step, ``s =
    sigma(kernel @ [x | above | left | 1])`` (``[o, f, i, s_g]`` with ``g = 1 - 2 s_g``),
    the padded cell states ``c``, ``t = sigma(-2 c)`` (``tanh c = 1 - 2 t``) and the padded
    hidden states (see :func:`diagonal_steps`)."""
    cx, height, width, n = xs.shape
    steps = diagonal_steps(height, width)
    fe = cx + 2 * hd + 1
    scratch = xs.new_empty(2 * fe * min(height, width) * n)
    kq = (kernel[0].contiguous(), kernel[1].contiguous())
    onednn, fused = use_onednn(xs), cells_available(xs)
    combined = xs.new_zeros(hd, height, width, n)
    saved = []
    hpad = cpad = None
    for step in steps:
        rows, lo, shift, base0, base1 = step
        cols = rows * n
        below = rows - (1 if lo + rows == height else 0)  # cells with a row below
        buf = scratch[: 2 * fe * cols].view(2, fe, cols)
        buf[:, -1].fill_(1)
        _fill(buf, xs, hpad, step, hd, width, n)
        s = xs.new_empty(2, 4 * hd, cols)
        state = xs.new_empty(2, 2, hd, cols + 2 * n)  # [c, h], zero-padded
        state[..., :n].zero_()
        state[..., cols + n :].zero_()
        z = (mm(kq[0], buf[0], onednn), mm(kq[1], buf[1], onednn))
        t = xs.new_empty(2, hd, cols)
        if fused:  # the arithmetic of _cell_forward in one compiled pass (_cells)
            cell_forward(*z, s, cpad, (shift + 1) * n, state, n, t)
        else:
            _cell_forward(z, s, cpad, state, t, shift, n, hd)
        cpad, hpad = state
        h = hpad[:, :, n : n + cols]
        _diag(combined, 0, base0, rows, width).add_(h[0].view(hd, rows, n))
        # the r2l output of pixel (r, c) is added at (r + 1, c); the last row's is dropped
        _diag(combined, 1, base1 + width, below, width).add_(
            h[1, :, : below * n].view(hd, below, n))
        saved.append((s, cpad, t, hpad))
    return combined, saved


def _cell_forward(z, s, prev_cpad, state, t, shift, n, hd):
    """One step's cell arithmetic, in place: ``s <- sigma(z)`` (the gates of both directions
    from their pre-activations ``z``), the cell states and hidden states into the padded
    ``state (2, 2, h, cols + 2N)`` and ``t <- sigma(-2 c)``, from the previous step's padded
    cell states ``prev_cpad`` (``None`` for the first step)."""
    torch.sigmoid(z[0], out=s[0])
    torch.sigmoid(z[1], out=s[1])
    o, f, i, s_g = s.split(hd, dim=1)
    cols = s.shape[-1]
    cpad, hpad = state
    c = cpad[:, :, n : n + cols]
    torch.addcmul(i, i, s_g, value=-2, out=c)  # i * g
    if prev_cpad is not None:
        c.addcmul_(f, prev_cpad[:, :, (shift + 1) * n : (shift + 1) * n + cols])
    torch.mul(c, -2, out=t).sigmoid_()
    torch.addcmul(o, o, t, value=-2, out=hpad[:, :, n : n + cols])  # o * tanh(c)


def _cell_backward(s, t, gh, carry, prev_cpad, up, shift, n, hd):
    """``(dz, carry)``: the gradients of the pre-activations of one step and the gradient
    reaching the previous step's cell states (``None`` for the first step), from the saved
    gates ``s``, ``t``, the hidden-state gradient ``gh`` and the ``carry`` from the next
    step; ``up (2, 4h, cols)`` is scratch."""
    o, f, i, s_g = s.split(hd, dim=1)
    cols = s.shape[-1]
    # dL/dc = carry + dh * o * (1 - tanh(c)^2),  1 - tanh(c)^2 = 4 t (1 - t)
    gc = torch.addcmul(t, t, t, value=-1).mul_(o)
    if carry is None:
        gc.mul_(gh).mul_(4)
    else:
        gc = torch.addcmul(carry, gc, gh, value=4)
    # dz = s (1 - s) * [dh tanh(c), dc c_prev, dc g, dc i]   (g rows: a quarter)
    u_o, u_f, u_i, u_g = up.split(hd, dim=1)
    torch.addcmul(gh, gh, t, value=-2, out=u_o)
    if prev_cpad is not None:
        window = slice((shift + 1) * n, (shift + 1) * n + cols)
        torch.mul(gc, prev_cpad[:, :, window], out=u_f)
        carry_pad = prev_cpad.new_zeros(prev_cpad.shape)
        torch.mul(gc, f, out=carry_pad[:, :, window])
        carry = carry_pad[:, :, n : prev_cpad.shape[-1] - n]
    else:
        u_f.zero_()
        carry = None
    torch.addcmul(gc, gc, s_g, value=-2, out=u_i)
    torch.mul(gc, i, out=u_g)
    return torch.addcmul(s, s, s, value=-1).mul_(up), carry  # (2, 4h, n_d N)


def _backward(grad, xs, kernel4, saved, hd):
    """``grad (h, H, W, N)`` of the combined output -> gradients of ``xs`` and of the
    extended kernel ``[K^{is} | K^{ss} | b]``; ``kernel4 (2, 4h, F)`` is ``[K^{is} | K^{ss}]``
    with its ``g`` rows multiplied by 4 (the ``g`` rows of ``dz`` below are a quarter of the
    true gradient, undone at the end). Gradients of padded states use the same padding;
    what lands on the zero blocks is dropped."""
    cx, height, width, n = xs.shape
    steps = diagonal_steps(height, width)
    maxcols = min(height, width) * n
    fe = cx + 2 * hd + 1
    onednn, fused = use_onednn(xs), cells_available(xs)
    grad_x = torch.zeros_like(xs)
    kt = (kernel4[0].t().contiguous(), kernel4[1].t().contiguous())  # (F, 4h) each
    gk_parts = ([], [])  # per step and direction: [x | above | left | 1]^T dz^T, (F + 1, 4h)
    scratch = xs.new_empty(2 * fe * maxcols)
    ghpad = xs.new_empty(2, hd, maxcols + 2 * n)
    up_all = xs.new_empty(2, 4 * hd, maxcols)
    carry = None  # gradient reaching the cell states of step d through step d + 1
    dx_next = None  # per direction (F, n_{d+1} N): gradient of the inputs of step d + 1
    for d in range(len(steps) - 1, -1, -1):
        step = steps[d]
        rows, lo, shift, base0, base1 = step
        cols = rows * n
        s, _, t, _ = saved[d]
        # dL/dh: the output (r2l: one row down; the last row's was dropped)
        gh = ghpad[:, :, n : n + cols]
        gh[0].view(hd, rows, n).copy_(_diag(grad, 0, base0, rows, width))
        below = rows - (1 if lo + rows == height else 0)
        gh[1, :, : below * n].view(hd, below, n).copy_(
            _diag(grad, 1, base1 + width, below, width))
        if below < rows:
            gh[1, :, below * n :].zero_()
        if dx_next is not None:  # ... and the next step's above and left inputs
            nshift, ncols = steps[d + 1][2], dx_next[0].shape[-1]
            for q in (0, 1):
                ghpad[q, :, nshift * n : nshift * n + ncols].add_(dx_next[q][cx : cx + hd])
                ghpad[q, :, (nshift + 1) * n : (nshift + 1) * n + ncols].add_(
                    dx_next[q][cx + hd : cx + 2 * hd])
        if fused:  # the arithmetic of _cell_backward in one compiled pass (_cells)
            dz = xs.new_empty(2, 4 * hd, cols)
            prev_cpad = saved[d - 1][1] if d else None
            carry_out = None if prev_cpad is None else torch.zeros_like(prev_cpad)
            cell_backward(s, t, ghpad, n, carry, n, prev_cpad, (shift + 1) * n, carry_out, dz)
            carry = carry_out  # padded like the previous step's states: read from column n
        else:
            dz, carry = _cell_backward(s, t, gh, carry, saved[d - 1][1] if d else None,
                                       up_all[:, :, :cols], shift, n, hd)
        dx = (mm(kt[0], dz[0], onednn), mm(kt[1], dz[1], onednn))  # (F, n_d N) each
        _diag(grad_x, 0, base0, rows, width).add_(dx[0][:cx].view(cx, rows, n))
        _diag(grad_x, 1, base1, rows, width).add_(dx[1][:cx].view(cx, rows, n))
        buf = scratch[: 2 * fe * cols].view(2, fe, cols)
        buf[:, -1].fill_(1)
        _fill(buf, xs, saved[d - 1][3] if d else None, step, hd, width, n)
        for q in (0, 1):  # (F + 1, cols) @ (cols, 4h)
            gk_parts[q].append(mm_nt(buf[q], dz[q], onednn))
        dx_next = dx
    grad_kernel = torch.stack([torch.stack(p).sum(0).t() for p in gk_parts])  # (2, 4h, F+1)
    grad_kernel[:, 3 * hd :] *= 4
    return grad_x, grad_kernel


class DiagonalRecursion(torch.autograd.Function):
    r"""Both directions of the Diagonal BiLSTM's column LSTM, their outputs combined.

    ``apply(xs (F_x, H, W, N), kernel (2, 4h, F_x + 2h), bias (2, 4h)) -> (h, H, W, N)``.
    ``kernel[q] = [K^{is}_q | K^{ss}_q]`` maps ``[x | h above | h left]`` of a pixel to the
    pre-activations :math:`[o, f, i, g]` of direction ``q`` (0: left to right, 1: the
    mirrored image), and

    .. math::

        z = K^{is} x_{r,c} + K^{ss} [h_{r-1, c} ; h_{r, c \mp 1}] + b, \quad
        [o, f, i, g] = [\sigma, \sigma, \sigma, \tanh](z), \quad
        c_{r,c} = f \odot c_{r, c \mp 1} + i \odot g, \quad h_{r,c} = o \odot \tanh(c_{r,c}),

    with zero states outside the image. The output at :math:`(r, c)` is
    :math:`h^{(0)}_{r,c} + h^{(1)}_{r-1,c}` (the right-to-left state one row down; zero
    for :math:`r = 0`). The backward pass runs the recursion in reverse on the saved gate
    activations and cell states. Differentiable once (no double backward).
    """

    @staticmethod
    def forward(ctx, xs, kernel, bias):
        xs = xs.contiguous()
        hd = kernel.shape[1] // 4
        # g rows times -2: tanh(z) = 1 - 2 sigma(-2 z); times 4 for the backward (exact)
        scale = kernel.new_ones(1, 4 * hd, 1)
        scale[:, 3 * hd :] = -2
        extended = torch.cat([kernel, bias.unsqueeze(-1)], dim=2)  # (2, 4h, F + 1)
        combined, saved = _forward(xs, extended * scale, hd)
        # the per-step tensors too, so that autograd frees them after the backward pass
        ctx.save_for_backward(xs, kernel, *(t for step in saved for t in step))
        return combined

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        xs, kernel, *flat = ctx.saved_tensors
        saved = [tuple(flat[j : j + 4]) for j in range(0, len(flat), 4)]
        hd = kernel.shape[1] // 4
        scale = kernel.new_ones(1, 4 * hd, 1)
        scale[:, 3 * hd :] = 4
        grad_x, grad_ext = _backward(grad.contiguous(), xs, kernel * scale, saved, hd)
        return grad_x, grad_ext[:, :, :-1], grad_ext[:, :, -1]
