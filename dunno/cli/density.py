"""``dunno density train | score | sample``: density models.

Train a density model (autoregressive: NADE, PixelCNN, Row LSTM, Diagonal BiLSTM;
latent-variable: VAE, AAE), score a checkpoint (NLL in nats and bits/dim -- exact, or the
VAE's importance-sampled bound -- per-example scores to .npy) or draw a PNG grid of samples."""

from __future__ import annotations

import argparse

from dunno.cli.common import HelpFormatter

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from evaluation.benchmarks.density import build_parser

    p = subparsers.add_parser("density", help="density models: train | score | sample",
                              description=__doc__, formatter_class=HelpFormatter)
    build_parser(p)
    p.set_defaults(run=run, prog="density")
    return p


def run(args: argparse.Namespace) -> int:
    from evaluation.benchmarks.density import run as run_density

    run_density(args)
    return 0
