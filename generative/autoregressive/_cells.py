r"""The LSTM cell arithmetic of one diagonal of :mod:`._diagonal` as one compiled loop per
step (forward and backward, both directions), where a C compiler is at hand.

Per step and direction the eager code runs about ten elementwise operations on
``(h, n_d N)`` and ``(4h, n_d N)`` arrays (gate sigmoids, cell update, ``tanh(c)``,
output; in the backward pass the gradients of the cell, of the four gates and of the
carried cell state), each one pass over memory. :func:`cell_forward` and
:func:`cell_backward` do the same arithmetic in one pass: per hidden unit and direction, a
loop over the step's columns that reads the pre-activations (forward) or the saved gates
(backward) once and writes every result once. The loops are plain C (``SOURCE`` below),
compiled on first use with the system's ``cc`` (``-O3 -march=native -ffast-math``, so that
``expf`` is vectorised through glibc's vector maths library; linked without it, so that
loading the library leaves the process's handling of subnormal numbers alone) into the
user's cache directory (``$XDG_CACHE_HOME/dunno/kernels``, else ``~/.cache/dunno/kernels``;
the file is named by a hash of the source, the flags, the compiler and the CPU), and called
through ``ctypes``.

Only float32 CPU tensors on Linux with glibc go this way; everything else (float64 for the
gradient checks, CUDA, no compiler, ``DUNNO_KERNELS=0`` in the environment) runs the eager
code of :mod:`._diagonal`, which the tests compare with this one (same arithmetic; the
results differ by float32 rounding, a few units in the last place). :func:`available` says
which path is taken.

The arithmetic (``[o, f, i, s_g]`` the gate sigmoids with :math:`g = 1 - 2 s_g`, ``t`` =
:math:`\sigma(-2c)` with :math:`\tanh c = 1 - 2t`; see :mod:`._diagonal`)::

    forward:  s = sigma(z);  c = i - 2 i s_g (+ f c_prev);  t = sigma(-2 c);  h = o - 2 o t
    backward: dc = 4 (t - t^2) o dh (+ carry);  u = [dh - 2 dh t, dc c_prev, dc - 2 dc s_g,
              dc i];  dz = (s - s^2) u;  carry_prev = dc f
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["SOURCE", "available", "cell_backward", "cell_forward", "kernel_path"]

SOURCE = r"""
#include <math.h>
#include <stddef.h>

/* sigma(x), its argument clamped to [-88, 88] so that expf never overflows (compiled with
   -ffast-math, an infinity would not be handled); sigma(+-88) is 1 and 6e-39, where the
   exact value rounds to 1 and below 1e-38. */
static inline float sig(float x) {
  x = x < -88.0f ? -88.0f : (x > 88.0f ? 88.0f : x);
  return 1.0f / (1.0f + expf(-x));
}

/* One diagonal step, both directions q = 0, 1; rows of length `cols` (h units x 4 gates).
   z0, z1: pre-activations (4h, cols) of each direction; s: (2, 4h, cols) gate sigmoids out.
   cprev: padded cell states of the previous step (2, h, prev_len) or NULL, read at column
   prev_off + j; state: (2, 2, h, len) [c, h] of this step, written at column off + j;
   t: (2, h, cols) sigma(-2 c) out. */
void dunno_cell_forward(const float *restrict z0, const float *restrict z1,
                        float *restrict s, const float *restrict cprev, long prev_len,
                        long prev_off, float *restrict state, long len, long off,
                        float *restrict t, long h, long cols) {
  for (long q = 0; q < 2; q++) {
    const float *z = q ? z1 : z0;
    for (long k = 0; k < h; k++) {
      const float *zo = z + (0 * h + k) * cols, *zf = z + (1 * h + k) * cols;
      const float *zi = z + (2 * h + k) * cols, *zg = z + (3 * h + k) * cols;
      float *so = s + (q * 4 * h + 0 * h + k) * cols, *sf = s + (q * 4 * h + 1 * h + k) * cols;
      float *si = s + (q * 4 * h + 2 * h + k) * cols, *sg = s + (q * 4 * h + 3 * h + k) * cols;
      const float *cp = cprev ? cprev + (q * h + k) * prev_len + prev_off : NULL;
      float *cc = state + (q * h + k) * len + off;
      float *hh = state + ((2 + q) * h + k) * len + off;
      float *tt = t + (q * h + k) * cols;
      if (cp) {
        #pragma omp simd
        for (long j = 0; j < cols; j++) {
          float o = sig(zo[j]), f = sig(zf[j]);
          float i = sig(zi[j]), g = sig(zg[j]);
          float c = (i - 2.0f * i * g) + f * cp[j];
          float tv = sig(-2.0f * c);
          so[j] = o; sf[j] = f; si[j] = i; sg[j] = g;
          cc[j] = c; tt[j] = tv; hh[j] = o - 2.0f * o * tv;
        }
      } else {
        #pragma omp simd
        for (long j = 0; j < cols; j++) {
          float o = sig(zo[j]), f = sig(zf[j]);
          float i = sig(zi[j]), g = sig(zg[j]);
          float c = i - 2.0f * i * g;
          float tv = sig(-2.0f * c);
          so[j] = o; sf[j] = f; si[j] = i; sg[j] = g;
          cc[j] = c; tt[j] = tv; hh[j] = o - 2.0f * o * tv;
        }
      }
    }
  }
}

/* The backward pass of one step, both directions. s, t: saved (2, 4h, cols), (2, h, cols);
   gh: dL/dh, rows of stride gh_len read from column gh_off; carry: dL/dc reaching this step
   from the next one, rows of stride carry_len read from column carry_off, or NULL; cprev:
   as in the forward pass (NULL for the first step); carry_out: zeros shaped like cprev,
   gets dc * f at column prev_off + j (what lands on its padding is dropped by the caller);
   dz: (2, 4h, cols) gradients of the pre-activations (g rows: a quarter, see _diagonal). */
void dunno_cell_backward(const float *restrict s, const float *restrict t,
                         const float *restrict gh, long gh_len, long gh_off,
                         const float *restrict carry, long carry_len, long carry_off,
                         const float *restrict cprev, long prev_len, long prev_off,
                         float *restrict carry_out, float *restrict dz, long h, long cols) {
  for (long q = 0; q < 2; q++) {
    for (long k = 0; k < h; k++) {
      const float *so = s + (q * 4 * h + 0 * h + k) * cols;
      const float *sf = s + (q * 4 * h + 1 * h + k) * cols;
      const float *si = s + (q * 4 * h + 2 * h + k) * cols;
      const float *sg = s + (q * 4 * h + 3 * h + k) * cols;
      const float *tt = t + (q * h + k) * cols;
      const float *g = gh + (q * h + k) * gh_len + gh_off;
      const float *ca = carry ? carry + (q * h + k) * carry_len + carry_off : NULL;
      const float *cp = cprev ? cprev + (q * h + k) * prev_len + prev_off : NULL;
      float *co = cprev ? carry_out + (q * h + k) * prev_len + prev_off : NULL;
      float *zo = dz + (q * 4 * h + 0 * h + k) * cols, *zf = dz + (q * 4 * h + 1 * h + k) * cols;
      float *zi = dz + (q * 4 * h + 2 * h + k) * cols, *zg = dz + (q * 4 * h + 3 * h + k) * cols;
      #pragma omp simd
      for (long j = 0; j < cols; j++) {
        float tv = tt[j], o = so[j], f = sf[j], i = si[j], sgv = sg[j], dh = g[j];
        float dc = 4.0f * ((tv - tv * tv) * o) * dh;
        if (ca) dc += ca[j];
        float uf = 0.0f;
        if (cp) { uf = dc * cp[j]; co[j] = dc * f; }
        zo[j] = (o - o * o) * (dh - 2.0f * dh * tv);
        zf[j] = (f - f * f) * uf;
        zi[j] = (i - i * i) * (dc - 2.0f * dc * sgv);
        zg[j] = (sgv - sgv * sgv) * (dc * i);
      }
    }
  }
}
"""

#: Compile flags. ``-ffast-math`` lets glibc's libmvec vectorise ``expf``; it is given to the
#: compile step only: linked with it, the library would carry ``crtfastmath``, whose
#: constructor switches the whole process to flushing subnormals to zero when it is loaded.
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC")
LINK_FLAGS = ("-shared",)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dunno" / "kernels"


def _cpu_identity() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def kernel_path() -> Path | None:
    """The compiled library (compiled on the first call), or ``None`` when there is no C
    compiler, compiling fails, ``DUNNO_KERNELS=0``, or the system is not Linux with glibc
    (whose vector maths library the loop needs to be faster than the eager operations)."""
    if os.environ.get("DUNNO_KERNELS", "1") == "0" or platform.system() != "Linux" or \
            platform.libc_ver()[0] != "glibc":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError):
        return None
    recipe = f"compile {' '.join(FLAGS)}; link {' '.join(LINK_FLAGS)}"  # both steps count
    key = hashlib.sha256("\0".join([SOURCE, recipe, *version, _cpu_identity()]).encode())
    target = _cache_dir() / f"cells-{key.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src, obj, out = (Path(tmp) / name for name in ("cells.c", "cells.o", "cells.so"))
            src.write_text(SOURCE, encoding="ascii")
            for command in ([compiler, *FLAGS, "-c", "-o", str(obj), str(src)],
                            [compiler, *LINK_FLAGS, "-o", str(out), str(obj), "-lm"]):
                done = subprocess.run(command, capture_output=True, timeout=120)
                if done.returncode != 0:
                    return None
            if not out.is_file():
                return None
            os.replace(out, target)  # atomic: another process may be compiling the same
    except (OSError, subprocess.SubprocessError):
        return None
    return target


@lru_cache(maxsize=1)
def _library():
    path = kernel_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:
        return None
    p, n = ctypes.c_void_p, ctypes.c_long
    lib.dunno_cell_forward.argtypes = [p, p, p, p, n, n, p, n, n, p, n, n]
    lib.dunno_cell_backward.argtypes = [p, p, p, n, n, p, n, n, p, n, n, p, p, n, n]
    lib.dunno_cell_forward.restype = lib.dunno_cell_backward.restype = None
    return lib


def available(t: torch.Tensor) -> bool:
    """Whether the cell arithmetic of ``t``'s dtype and device runs compiled (float32 on the
    CPU, with the library built)."""
    return t.device.type == "cpu" and t.dtype == torch.float32 and _library() is not None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def cell_forward(z0: torch.Tensor, z1: torch.Tensor, s: torch.Tensor,
                 cprev: torch.Tensor | None, prev_off: int, state: torch.Tensor, off: int,
                 t: torch.Tensor) -> None:
    """The forward cell arithmetic of one step (module docstring), in place.

    ``z0``, ``z1`` ``(4h, cols)``: pre-activations of the two directions; ``s`` ``(2, 4h,
    cols)`` <- gate sigmoids; ``cprev`` ``(2, h, L')`` padded cell states of the previous
    step (``None`` for the first), read from column ``prev_off``; ``state`` ``(2, 2, h, L)``
    <- ``[c, h]`` from column ``off``; ``t`` ``(2, h, cols)`` <- :math:`\\sigma(-2c)`. Every
    tensor contiguous float32 on the CPU."""
    h, cols = s.shape[1] // 4, s.shape[2]
    _library().dunno_cell_forward(
        _ptr(z0), _ptr(z1), _ptr(s), _ptr(cprev),
        0 if cprev is None else cprev.shape[-1], prev_off, _ptr(state), state.shape[-1], off,
        _ptr(t), h, cols)


def cell_backward(s: torch.Tensor, t: torch.Tensor, ghpad: torch.Tensor, gh_off: int,
                  carry: torch.Tensor | None, carry_off: int, cprev: torch.Tensor | None,
                  prev_off: int, carry_out: torch.Tensor | None, dz: torch.Tensor) -> None:
    """The backward cell arithmetic of one step (module docstring), in place.

    ``s``, ``t``: the step's saved gates and :math:`\\sigma(-2c)`; ``ghpad`` ``(2, h, L)``:
    :math:`\\partial L / \\partial h` from column ``gh_off``; ``carry`` ``(2, h, L'')``:
    :math:`\\partial L / \\partial c` from the next step, from column ``carry_off``
    (``None`` for the last step); ``cprev`` ``(2, h, L')``: the previous step's padded cell
    states, from column ``prev_off`` (``None`` for the first step); ``carry_out``: zeros of
    ``cprev``'s shape <- :math:`dc \\odot f` from column ``prev_off``; ``dz`` ``(2, 4h,
    cols)`` <- gradients of the pre-activations. Every tensor contiguous float32 on the
    CPU."""
    h, cols = s.shape[1] // 4, s.shape[2]
    _library().dunno_cell_backward(
        _ptr(s), _ptr(t), _ptr(ghpad), ghpad.shape[-1], gh_off, _ptr(carry),
        0 if carry is None else carry.shape[-1], carry_off, _ptr(cprev),
        0 if cprev is None else cprev.shape[-1], prev_off, _ptr(carry_out), _ptr(dz), h, cols)
