"""``dunno gan train | eval``: GANs, DCGANs and InfoGANs.

Train a GAN, DCGAN or InfoGAN (per-epoch sample grids), or score a checkpoint's samples with
our own classifier's features: classifier-based FID (cFID, not comparable with Inception FID)
next to the train-vs-test floor, classifier score, k-NN precision/recall, InfoGAN code
accuracy; ring-of-Gaussians mode coverage."""

from __future__ import annotations

import argparse

from dunno.cli.common import HelpFormatter

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from evaluation.benchmarks.gan import build_parser

    p = subparsers.add_parser(
        "gan", help="GANs: train gan | dcgan | infogan; eval (cFID, precision/recall)",
        description=__doc__, formatter_class=HelpFormatter)
    build_parser(p)
    p.set_defaults(run=run, prog="gan")
    return p


def run(args: argparse.Namespace) -> int:
    from evaluation.benchmarks.gan import run as run_gan

    return run_gan(args)
