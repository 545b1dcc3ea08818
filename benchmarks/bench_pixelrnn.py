"""Diagonal BiLSTM training throughput: the packed wavefront with its hand-written backward
(``generative.autoregressive.DiagonalBiLSTM``) against the skewed column loop it replaced
(kept below as ``ReferenceDiagonalBiLSTM``), on the same parameters and images in the same
run.

    python benchmarks/bench_pixelrnn.py                  # batch 100, hidden 16, 7 layers
    python benchmarks/bench_pixelrnn.py --threads 1      # what benchmarks/README.md quotes

A training step is forward + backward + an Adam step on a batch of binary 28x28 images with
the pixel density of MNIST (13% ones; the timings do not depend on the values), at the batch
size of ``dunno density train`` (100) and the model's default width and depth. The two
implementations are timed alternately, ``--rounds`` times each after a warm-up step, and the
best step of each is reported with the ratio (reference time / new time). Before timing, the
script loads one state dict into both and checks that their log-likelihoods and gradients
agree (float32; the test suite checks the same in float64).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import generative.autoregressive._diagonal as diagonal  # noqa: E402
from dunno.reporting import format_table  # noqa: E402
from generative.autoregressive import DiagonalBiLSTM  # noqa: E402
from generative.autoregressive.masks import (  # noqa: E402
    MaskedConv2d,
    channel_groups,
    shift_down,
)

__all__ = ["ReferenceDiagonalBiLSTM", "cells_throughput", "compare", "main", "throughput"]


# ----------------------------------------------------------------------------- reference
# The Diagonal BiLSTM layer as it was before the packed wavefront, verbatim: the gates of
# both directions are skewed with one pad per row, and the columns of the skewed map
# (padding included) are run one at a time through autograd.
def _skew(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[2]
    rows = [F.pad(row, (r, h - 1 - r)) for r, row in enumerate(x.unbind(2))]
    return torch.stack(rows, dim=2)  # (N, C, H, W + H - 1)


def _unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    rows = [row[..., r : r + width] for r, row in enumerate(x.unbind(2))]
    return torch.stack(rows, dim=2)  # (N, C, H, W)


def _lstm_gates(z, c_prev, dim=1):
    o, f, i, g = z.chunk(4, dim=dim)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class _ReferenceLayer(nn.Module):
    """The previous ``_DiagonalBiLSTMLayer`` (same parameters, same names)."""

    def __init__(self, hidden: int, colors: int):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d(
            2 * hidden, 8 * hidden, 1, "B", colors=colors,
            out_groups=channel_groups(hidden, colors).repeat(8),
        )
        bound = 1.0 / math.sqrt(2 * hidden)
        self.state_to_state = nn.Parameter(
            torch.empty(2, 2 * hidden, 4 * hidden).uniform_(-bound, bound)
        )
        self.out = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors=colors)

    def _column_lstm(self, columns: torch.Tensor) -> torch.Tensor:
        _, _, n, rows, _ = columns.shape
        hd = self.hidden
        h = columns.new_zeros(2, n, rows, hd)
        c = columns.new_zeros(2, n, rows, hd)
        outputs = []
        for column in columns.unbind(0):
            above = F.pad(h, (0, 0, 1, 0))[:, :, :rows]
            prev = torch.cat([above, h], dim=-1).view(2, n * rows, 2 * hd)
            z = column + torch.bmm(prev, self.state_to_state).view(2, n, rows, 4 * hd)
            h, c = _lstm_gates(z, c, dim=-1)
            outputs.append(h)
        return torch.stack(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, rows, w = x.shape
        hd = self.hidden
        gates = self.input_to_state(x).view(n, 2, 4 * hd, rows, w)
        l2r = gates[:, 0]
        r2l = gates[:, 1].flip(-1)
        skewed = torch.stack([_skew(l2r), _skew(r2l)], dim=1)
        columns = skewed.permute(4, 1, 0, 3, 2).contiguous()
        hid = self._column_lstm(columns).permute(2, 1, 4, 3, 0)
        out_l2r = _unskew(hid[:, 0], w)
        out_r2l = _unskew(hid[:, 1], w).flip(-1)
        combined = out_l2r + shift_down(out_r2l)
        return x + self.out(combined)


class ReferenceDiagonalBiLSTM(DiagonalBiLSTM):
    """:class:`~generative.autoregressive.DiagonalBiLSTM` with the previous layers; its state
    dict has the same keys and shapes, so either model loads the other's."""

    _layer_type = _ReferenceLayer


# ----------------------------------------------------------------------------- measuring
def _images(n: int, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) < 0.13).float()


def _loss_and_grads(model: nn.Module, x: torch.Tensor):
    model.zero_grad(set_to_none=True)
    log_p = model.log_prob(x)
    (-log_p.mean()).backward()
    return log_p.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


def compare(options: dict, batch: int, shape=(1, 28, 28), dtype=torch.float32,
            seed: int = 0) -> dict:
    """Largest differences between the two implementations on one state dict: of the
    log-likelihoods (nats, absolute and relative to ``max |log p|``) and of the gradients
    (relative to the largest gradient entry of each parameter)."""
    torch.manual_seed(seed)
    new = DiagonalBiLSTM(shape, **options).to(dtype)
    ref = ReferenceDiagonalBiLSTM(shape, **options).to(dtype)
    ref.load_state_dict(new.state_dict())
    x = _images(batch, shape, seed)
    lp_new, g_new = _loss_and_grads(new, x)
    lp_ref, g_ref = _loss_and_grads(ref, x)
    grad_rel = max(float((g_new[k] - g_ref[k]).abs().max() / g_ref[k].abs().max().clamp_min(
        torch.finfo(dtype).tiny)) for k in g_ref)
    diff = float((lp_new - lp_ref).abs().max())
    return {"log_prob_max_abs_diff": diff,
            "log_prob_max_rel_diff": diff / float(lp_ref.abs().max()),
            "grad_max_rel_diff": grad_rel}


def _pair(classes: dict, options: dict, batch: int, shape, seed: int):
    """Two models (``{name: class}``, the second loading the first's state dict), an Adam
    optimiser each, and ``batch`` seeded binary images."""
    torch.manual_seed(seed)
    (first, first_cls), (second, second_cls) = classes.items()
    models = {first: first_cls(shape, **options)}
    models[second] = second_cls(shape, **options)
    models[second].load_state_dict(models[first].state_dict())
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    return models, optimizers, _images(batch, shape, seed)


def _train_step(model, optimizer, x) -> None:
    """One training step: the loss, its backward pass and the Adam update."""
    loss = model.loss(x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def throughput(options: dict, batch: int, rounds: int = 3, shape=(1, 28, 28),
               seed: int = 0) -> dict:
    """Best seconds per training step (forward + backward + Adam) of both implementations,
    timed alternately, the images/s of each and the ratio (reference / new)."""
    models, optimizers, x = _pair({"new": DiagonalBiLSTM, "reference": ReferenceDiagonalBiLSTM},
                                  options, batch, shape, seed)

    def step(name):
        _train_step(models[name], optimizers[name], x)

    best, best_cpu = {}, {}
    for name in models:
        step(name)  # warm-up
    for _ in range(rounds):
        for name in ("reference", "new"):
            t0, c0 = time.perf_counter(), time.process_time()
            step(name)
            best[name] = min(best.get(name, math.inf), time.perf_counter() - t0)
            best_cpu[name] = min(best_cpu.get(name, math.inf), time.process_time() - c0)
    return {"batch": batch, "options": options, "threads": torch.get_num_threads(),
            "reference_s": best["reference"], "new_s": best["new"],
            "reference_cpu_s": best_cpu["reference"], "new_cpu_s": best_cpu["new"],
            "reference_images_per_s": batch / best["reference"],
            "new_images_per_s": batch / best["new"],
            "ratio": best["reference"] / best["new"],
            "cpu_ratio": best_cpu["reference"] / best_cpu["new"]}


def cells_throughput(options: dict, batch: int, rounds: int = 5, shape=(1, 28, 28),
                     seed: int = 0) -> dict:
    """Best CPU seconds per training step of the library's layer with the compiled cell
    arithmetic and with the eager one (``generative.autoregressive._cells``), two copies of
    one model timed alternately in this process, and the ratio (eager / compiled)."""
    models, optimizers, x = _pair({"compiled": DiagonalBiLSTM, "eager": DiagonalBiLSTM},
                                  options, batch, shape, seed)
    compiled_path = diagonal.cells_available

    def step(name):
        diagonal.cells_available = compiled_path if name == "compiled" else (lambda t: False)
        try:
            _train_step(models[name], optimizers[name], x)
        finally:
            diagonal.cells_available = compiled_path

    best: dict[str, float] = {}
    for name in models:
        step(name)  # warm-up (and the compilation, on a first run)
    for _ in range(rounds):
        for name in models:
            c0 = time.process_time()
            step(name)
            best[name] = min(best.get(name, math.inf), time.process_time() - c0)
    return {"compiled_cpu_s": best["compiled"], "eager_cpu_s": best["eager"],
            "cells_ratio": best["eager"] / best["compiled"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--layers", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=28, help="image height and width")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.batch, args.hidden, args.layers, args.rounds, args.size = 4, 4, 2, 1, 8
    options = {"hidden": args.hidden, "layers": args.layers}
    shape = (1, args.size, args.size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); Diagonal BiLSTM "
          f"hidden {args.hidden}, {args.layers} layers, batch {args.batch}, binary "
          f"{args.size}x{args.size}")
    load_before = os.getloadavg()[0]
    check = compare(options, min(args.batch, 16), shape)
    print(f"same parameters: max |log p difference| {check['log_prob_max_abs_diff']:.2e} "
          f"nats ({check['log_prob_max_rel_diff']:.1e} relative), max relative gradient "
          f"difference {check['grad_max_rel_diff']:.1e}")
    result = throughput(options, args.batch, args.rounds, shape)
    print(format_table([
        {"implementation": "reference (skewed columns)", "step_s": result["reference_s"],
         "cpu_s": result["reference_cpu_s"], "images/s": result["reference_images_per_s"]},
        {"implementation": "packed wavefront", "step_s": result["new_s"],
         "cpu_s": result["new_cpu_s"], "images/s": result["new_images_per_s"]},
    ], digits=3))
    print(f"training step speed-up: {result['ratio']:.1f}x wall clock, "
          f"{result['cpu_ratio']:.1f}x process CPU time (best of {args.rounds})")
    cells = None
    if diagonal.cells_available(torch.zeros(1)):
        cells = cells_throughput(options, args.batch, max(args.rounds, 5), shape)
        print(f"cell arithmetic compiled {cells['compiled_cpu_s']:.3f} s vs eager "
              f"{cells['eager_cpu_s']:.3f} s CPU per step: {cells['cells_ratio']:.2f}x "
              f"(same process, alternating, best of {max(args.rounds, 5)})")
    else:
        print("cell arithmetic: eager only here (no compiled cells: no C compiler, not "
              "Linux/glibc, or DUNNO_KERNELS=0)")
    load_after = os.getloadavg()[0]
    print(f"1-minute load average {load_before:.2f} before, {load_after:.2f} after "
          f"({os.cpu_count()} CPUs)")
    return {"check": check, "load": (load_before, load_after), "cells": cells, **result}


if __name__ == "__main__":
    main()
