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
``x``, the state above and the state to the left of every cell of the diagonal are copied
into one reused ``(2, F_x + 2h, n_d N)`` buffer and the pre-activations of both directions
are one batched matrix product with the kernel ``(2, 4h, F_x + 2h)``; the gate activations,
cell states and hidden states of every step are kept as separate small tensors (many small
blocks are recycled by the allocator; one image-sized buffer per layer is not).

``tanh`` is evaluated as :math:`2 \sigma(2 u) - 1` (exact in real arithmetic; a few units
in the last place in floating point), which on CPU is several times faster than ``tanh``;
the doubled pre-activation of the ``g`` gate comes out of the matrix product by doubling its
kernel rows, which is exact.
"""

from __future__ import annotations

from functools import lru_cache

import torch

__all__ = ["DiagonalRecursion", "diagonal_steps"]


@lru_cache(maxsize=64)
def diagonal_steps(height: int, width: int) -> tuple[tuple[int, ...], ...]:
    """Per diagonal ``d``: ``(rows, lo, with_left, shift, base0, base1)``: the number of
    pixels ``n_d``, the first row ``lo_d``, how many of them (from the first) have a left
    neighbour (``n_d - 1`` when the diagonal reaches column 0, else ``n_d``), ``lo_d -
    lo_{d-1}`` (cell ``j`` of step ``d`` has its left neighbour at cell ``j + shift`` of
    step ``d - 1`` and the pixel above at ``j + shift - 1``), and the flat index ``r W + c``
    of the first pixel for the left-to-right and the mirrored direction."""
    steps = []
    prev_lo = prev_hi = None
    for d in range(height + width - 1):
        lo, hi = max(0, d - width + 1), min(height - 1, d)
        if prev_lo is None:
            with_left, shift = 0, 0
        else:
            with_left, shift = min(hi, prev_hi) - lo + 1, lo - prev_lo
        steps.append((hi - lo + 1, lo, with_left, shift,
                      lo * width + (d - lo), lo * width + (width - 1 - d + lo)))
        prev_lo, prev_hi = lo, hi
    return tuple(steps)


def _diag(t: torch.Tensor, q: int, base: int, rows: int, width: int) -> torch.Tensor:
    """``(F, rows, N)`` view of the cells of one diagonal of ``t (F, H', W, N)`` (contiguous)
    for direction ``q``, starting at flat pixel index ``base``."""
    f, h, w, n = t.shape
    step = width - 1 if q == 0 else width + 1
    return t.as_strided((f, rows, n), (h * w * n, step * n, 1), t.storage_offset() + base * n)


def _fill_state(buf, hid_prev, step, cx, hd, n):
    """Write ``[h above | h left]`` of the cells of ``step`` from the previous step's hidden
    states ``hid_prev (2, h, n_{d-1} N)`` into rows ``cx:`` of ``buf (2, F, n_d N)``."""
    rows, _lo, with_left, shift = step[:4]
    first = 1 - shift  # cell 0 is in row 0 (nothing above) iff the diagonal starts there
    above, left = buf[:, cx : cx + hd], buf[:, cx + hd :]
    if first:
        above[:, :, :n].zero_()
    above[:, :, first * n :].copy_(hid_prev[:, :, : (rows - first) * n])
    left[:, :, : with_left * n].copy_(hid_prev[:, :, shift * n : (shift + with_left) * n])
    if with_left < rows:
        left[:, :, with_left * n :].zero_()


def _fill(buf, xs, hid_prev, step, hd, width, n):
    """``buf (2, F, n_d N) <- [x | h above | h left]`` of the cells of ``step`` (both
    directions; zero states outside the image)."""
    rows, _lo, _wl, _shift, base0, base1 = step
    cx = xs.shape[0]
    buf[0, :cx].view(cx, rows, n).copy_(_diag(xs, 0, base0, rows, width))
    buf[1, :cx].view(cx, rows, n).copy_(_diag(xs, 1, base1, rows, width))
    if hid_prev is None:
        buf[:, cx:].zero_()
    else:
        _fill_state(buf, hid_prev, step, cx, hd, n)


def _forward(xs, kernel, bias, hd):
    """``kernel``/``bias`` with the ``g`` rows multiplied by -2 (see the module docstring).
    Returns the combined output and, per step, ``s = sigma(kernel @ [x | above | left] +
    bias)`` (``[o, f, i, s_g]`` with ``g = 1 - 2 s_g``), ``c``, ``t = sigma(-2 c)`` (so
    ``tanh c = 1 - 2 t``) and ``h``."""
    cx, height, width, n = xs.shape
    steps = diagonal_steps(height, width)
    scratch = xs.new_empty(2, cx + 2 * hd, min(height, width) * n)
    # the r2l output of pixel (r, c) is added at (r + 1, c): one spare row at the bottom
    combined = xs.new_zeros(hd, height + 1, width, n)
    saved = []
    h = None
    for step in steps:
        rows, _lo, with_left, shift, base0, base1 = step
        buf = scratch[:, :, : rows * n]
        _fill(buf, xs, h, step, hd, width, n)
        s = torch.baddbmm(bias, kernel, buf).sigmoid_()  # (2, 4h, n_d N)
        o, f, i, s_g = s.split(hd, dim=1)
        c = torch.addcmul(i, i, s_g, value=-2)  # i * g
        if with_left:
            wl = with_left * n
            c_prev = saved[-1][1][:, :, shift * n : shift * n + wl]
            c[:, :, :wl].addcmul_(f[:, :, :wl], c_prev)
        t = torch.mul(c, -2).sigmoid_()
        h = torch.addcmul(o, o, t, value=-2)  # o * tanh(c)
        _diag(combined, 0, base0, rows, width).add_(h[0].view(hd, rows, n))
        _diag(combined, 1, base1 + width, rows, width).add_(h[1].view(hd, rows, n))
        saved.append((s, c, t, h))
    return combined[:, :height], saved


def _backward(grad, xs, kernel4, saved, hd):
    """``grad (h, H, W, N)`` of the combined output -> gradients of ``xs``, the kernel and
    the bias; ``kernel4`` is the kernel with its ``g`` rows multiplied by 4 (the ``g`` rows
    of ``dz`` below are a quarter of the true gradient, undone at the end)."""
    cx, height, width, n = xs.shape
    steps = diagonal_steps(height, width)
    maxcols = min(height, width) * n
    grad_x = torch.zeros_like(xs)
    grad_kernel = kernel4.new_zeros(kernel4.shape)
    grad_bias = kernel4.new_zeros(2, 4 * hd)
    kernel_t = kernel4.transpose(1, 2)  # (2, F, 4h)
    scratch = xs.new_empty(2, cx + 2 * hd, maxcols)
    gh_buf = xs.new_empty(2, hd, maxcols)
    up_buf = xs.new_empty(2, 4 * hd, maxcols)
    carry = None  # gradient reaching the cell states of step d through step d + 1
    dx_next = None  # (2, F, n_{d+1} N): gradient of the inputs of step d + 1
    for d in range(len(steps) - 1, -1, -1):
        step = steps[d]
        rows, lo, with_left, shift, base0, base1 = step
        cols = rows * n
        s, c, t, _ = saved[d]
        o, f, i, s_g = s.split(hd, dim=1)
        # dL/dh of this step: the output, and the next step's [above | left] inputs
        gh = gh_buf[:, :, :cols]
        gh[0].view(hd, rows, n).copy_(_diag(grad, 0, base0, rows, width))
        below = rows - (1 if lo + rows == height else 0)  # the last row's r2l went nowhere
        gh[1, :, : below * n].view(hd, below, n).copy_(
            _diag(grad, 1, base1 + width, below, width))
        if below < rows:
            gh[1, :, below * n :].zero_()
        if dx_next is not None:
            nrows, _nlo, nwith_left, nshift = steps[d + 1][:4]
            nfirst = 1 - nshift
            gh[:, :, : (nrows - nfirst) * n].add_(dx_next[:, cx : cx + hd, nfirst * n :])
            gh[:, :, nshift * n : (nshift + nwith_left) * n].add_(
                dx_next[:, cx + hd :, : nwith_left * n])
        # dL/dc = carry + dh * o * (1 - tanh(c)^2),  1 - tanh(c)^2 = 4 t (1 - t)
        gc = torch.addcmul(t, t, t, value=-1).mul_(o)
        if carry is None:
            gc.mul_(gh).mul_(4)
        else:
            gc = torch.addcmul(carry, gc, gh, value=4)
        # dz = s (1 - s) * [dh tanh(c), dc c_prev, dc g, dc i]   (g rows: a quarter)
        up = up_buf[:, :, :cols]
        u_o, u_f, u_i, u_g = up.split(hd, dim=1)
        torch.addcmul(gh, gh, t, value=-2, out=u_o)
        if with_left:
            wl = with_left * n
            c_prev = saved[d - 1][1][:, :, shift * n : shift * n + wl]
            torch.mul(gc[:, :, :wl], c_prev, out=u_f[:, :, :wl])
            carry = c.new_zeros(2, hd, steps[d - 1][0] * n)
            torch.mul(gc[:, :, :wl], f[:, :, :wl], out=carry[:, :, shift * n : shift * n + wl])
        else:
            carry = None
        if with_left < rows:
            u_f[:, :, with_left * n :].zero_()
        torch.addcmul(gc, gc, s_g, value=-2, out=u_i)
        torch.mul(gc, i, out=u_g)
        dz = torch.addcmul(s, s, s, value=-1).mul_(up)  # (2, 4h, n_d N)
        dx = torch.bmm(kernel_t, dz)  # (2, F, n_d N)
        _diag(grad_x, 0, base0, rows, width).add_(dx[0, :cx].view(cx, rows, n))
        _diag(grad_x, 1, base1, rows, width).add_(dx[1, :cx].view(cx, rows, n))
        buf = scratch[:, :, :cols]
        _fill(buf, xs, saved[d - 1][3] if d else None, step, hd, width, n)
        grad_kernel.baddbmm_(dz, buf.transpose(1, 2))
        grad_bias.add_(dz.sum(-1))
        dx_next = dx
    grad_kernel[:, 3 * hd :] *= 4
    grad_bias[:, 3 * hd :] *= 4
    return grad_x, grad_kernel, grad_bias


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
    for :math:`r = 0`). Differentiable once.
    """

    @staticmethod
    def forward(ctx, xs, kernel, bias):
        xs = xs.contiguous()
        hd = kernel.shape[1] // 4
        # g rows times -2: tanh(z) = 1 - 2 sigma(-2 z); times 4 for the backward (exact)
        scale = kernel.new_ones(1, 4 * hd, 1)
        scale[:, 3 * hd :] = -2
        combined, saved = _forward(xs, (kernel * scale).contiguous(),
                                   bias.unsqueeze(-1) * scale, hd)
        ctx.save_for_backward(xs, kernel)
        ctx.saved_steps = saved
        return combined

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        xs, kernel = ctx.saved_tensors
        saved = ctx.saved_steps
        del ctx.saved_steps
        hd = kernel.shape[1] // 4
        scale = kernel.new_ones(1, 4 * hd, 1)
        scale[:, 3 * hd :] = 4
        return _backward(grad.contiguous(), xs, kernel * scale, saved, hd)
