"""``dunno density train | score | sample``: density models.

Train a density model (autoregressive: NADE, PixelCNN, Row LSTM, Diagonal BiLSTM;
latent-variable: VAE, AAE), score a checkpoint (NLL in nats and bits/dim -- exact, or the
VAE's importance-sampled bound -- per-example scores to .npy) or draw a PNG grid of samples.

train writes to --out: model.pt (checkpoint), training_state.pt (--resume), history.csv (a
row per epoch as it trains), history.json, learning_curve.csv and .png (train and validation
NLL in nats per epoch), summary.json (test NLL in nats and bits/dim, minutes, images/s),
test_scores.npy and, with --samples, samples.png.
score writes scores.npy (per-image NLL, nats), score.json and the report (report.md, a
self-contained report.html, report.json) to --out when given.

bits/dim is reported for discrete likelihoods only (binary and 8-bit pixels): a model of
continuous values (the continuous-Bernoulli VAE) has a log-density, which can be positive
and is no code length, so it is reported in nats only."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dunno.cli.common import (
    add_data_dir,
    add_device,
    add_format,
    add_quiet,
    add_tensorboard,
    open_run_log,
    print_report,
    progress_of,
    run_subcommand,
)

__all__ = ["add_parser", "run"]

_OPTION_HELP = ("model option, repeatable (hidden=500, layers=7, pixels=8bit, gated=true, "
                "order_agnostic=true; VAE: latent_dim=50, hidden=[512,512], net=conv, "
                "objective=iwae, particles=50, warmup_steps=10000, "
                "likelihood=continuous-bernoulli; AAE: prior=mixture, num_classes=10)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from generative.pixels import BINARIZE
    from generative.training import DENSITY_MODELS, SCHEDULES

    p = subparsers.add_parser("density", help="density models: train | score | sample",
                              description=__doc__)
    p.set_defaults(run=run, prog="density", needs_subcommand=True, group_parser=p)
    sub = p.add_subparsers(dest="density_command", metavar="COMMAND")
    t = sub.add_parser("train", help="train a model; writes model.pt and learning curves",
                       description="Train a density model by maximum likelihood (Adam), keep "
                       "the epoch with the best validation NLL and score the test split.")
    t.add_argument("model", choices=sorted(DENSITY_MODELS), help="the density model")
    t.add_argument("--data", required=True, help="dataset spec, e.g. mnist-binary or digits")
    t.add_argument("--epochs", type=int, default=10, help="epochs (an upper bound with a budget)")
    t.add_argument("--batch-size", type=int, default=100, help="training batch size")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    t.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="learning rate: constant, or cosine decay over the epochs / budget")
    t.add_argument("--grad-clip", type=float, default=None, help="gradient norm clip")
    t.add_argument("--binarize", choices=BINARIZE, default="dynamic",
                   help="training images of binary models")
    t.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    t.add_argument("--budget-clock", choices=("wall", "cpu"), default="wall",
                   help="what --max-minutes counts: wall-clock time, or this process's CPU time")
    t.add_argument("--examples-per-epoch", type=int, default=None,
                   help="an epoch is a random subset of this many images (None: all)")
    t.add_argument("--val-size", type=int, default=None,
                   help="score a fixed random subset of the validation split (None: all)")
    t.add_argument("--samples", type=int, default=0, help="write a grid of N samples")
    t.add_argument("--no-test", action="store_true", help="skip scoring the test split")
    t.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help=_OPTION_HELP)
    t.add_argument("--samples-k", type=int, default=5000,
                   help="VAE: importance samples of the test log p(x) (IWAE estimate)")
    t.add_argument("--val-samples-k", type=int, default=100,
                   help="VAE: importance samples of the validation log p(x)")
    t.add_argument("--test-size", type=int, default=None,
                   help="score a seeded random subset of this many test images")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/training_state.pt (only with "
                   "the same settings; --epochs may grow, the schedule is re-planned)")
    t.add_argument("--out", default=None, help="output directory (None: runs/density-MODEL)")
    t.set_defaults(needs_subcommand=False, prog="density train")
    s = sub.add_parser("score", help="per-image NLL (nats) and bits/dim of a checkpoint",
                       description="Per-image NLL (nats) and bits/dim of a checkpoint on a "
                       "split of a dataset.")
    s.add_argument("--checkpoint", required=True, help="a density checkpoint (model.pt)")
    s.add_argument("--data", required=True, help="dataset spec")
    s.add_argument("--split", default="test", help="test | val | train")
    s.add_argument("--binarize", choices=("fixed",), default=None,
                   help="fixed Bernoulli draw of grey data for binary models")
    s.add_argument("--batch-size", type=int, default=500, help="scoring batch size")
    s.add_argument("--samples-k", type=int, default=5000,
                   help="VAE: importance samples per image (IWAE estimate of log p(x))")
    s.add_argument("--size", type=int, default=None,
                   help="score a seeded random subset of this many images")
    s.add_argument("--seed", type=int, default=0,
                   help="seed of the subset and of the VAE's importance samples")
    s.add_argument("--out", default=None,
                   help="output directory: scores.npy, score.json, report.md / .html / .json "
                   "(None: print only)")
    add_format(s)
    s.set_defaults(needs_subcommand=False, prog="density score")
    g = sub.add_parser("sample", help="a PNG grid of samples from a checkpoint",
                       description="A PNG grid of seeded ancestral samples from a checkpoint.")
    g.add_argument("--checkpoint", required=True, help="a density checkpoint (model.pt)")
    g.add_argument("-n", "--num", type=int, default=64, help="number of samples")
    g.add_argument("--seed", type=int, default=0, help="sampling seed")
    g.add_argument("--path", default=None, help="PNG file (None: OUT/samples.png)")
    g.add_argument("--out", default=None,
                   help="output directory (None: the checkpoint's directory)")
    g.set_defaults(needs_subcommand=False, prog="density sample")
    for q in (t, s):
        add_data_dir(q)
    for q in (t, s, g):
        add_device(q)
    for q in (t, s):
        add_quiet(q)
    add_tensorboard(t)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``density train | score | sample``; returns the exit status."""
    return run_subcommand(args, "density_command",
                          {"train": run_train, "score": run_score, "sample": run_sample})


def run_train(args: argparse.Namespace) -> int:
    """The --out folder is checked writable and locked for the whole command."""
    from dunno.outputs import run_output_dir

    out = Path(args.out or f"runs/density-{args.model}")
    with run_output_dir(out), open_run_log(args, out / "history.csv", resume=args.resume) as log:
        return _run_train(args, log)


def _run_train(args: argparse.Namespace, log) -> int:
    from dunno.config import parse_options
    from generative.training import DensityConfig, train_density

    config = DensityConfig(
        model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, schedule=args.schedule, grad_clip=args.grad_clip, binarize=args.binarize,
        max_minutes=args.max_minutes, budget_clock=args.budget_clock,
        examples_per_epoch=args.examples_per_epoch,
        val_size=args.val_size, test=not args.no_test, seed=args.seed, device=args.device,
        options=parse_options(args.option), samples_k=args.samples_k,
        val_samples_k=args.val_samples_k, test_size=args.test_size,
    )
    if args.samples < 0:
        raise ValueError(f"--samples must be an int >= 0. Got {args.samples} instead.")
    out = Path(args.out or f"runs/density-{args.model}")
    model, history = train_density(config=config, out=out, root=args.data_dir,
                                   resume=args.resume, progress=progress_of(args),
                                   on_epoch_end=lambda model, epoch, record: log.epoch(epoch,
                                                                                       record))
    _write_training_outputs(model, history, config, out, args.samples)
    log.write_all(history.epochs)  # the whole run, resumed parts included
    if log.tensorboard is not None:
        from evaluation.benchmarks.tensorboard_logs import log_density_end

        log_density_end(log.tensorboard, model, history, data=config.data, root=args.data_dir,
                        num_samples=args.samples or 64, seed=config.seed)
    print(_summary_line(history.metrics))
    return 0


def _write_training_outputs(model, history, config, out: Path, samples: int) -> list[Path]:
    import numpy as np

    from dunno.reporting import write_csv, write_json
    from generative.plots import learning_curve_plot, sample_grid
    from generative.scoring import draw_samples

    rows = [{k: e.get(k) for k in ("epoch", "loss", "val_loss", "val_bpd", "minutes",
                                    "examples", "seconds")} for e in history.epochs]
    files = [
        write_json({"config": asdict(config), **history.as_dict(), "metrics": history.metrics},
                   out / "history.json"),
        write_csv(rows, out / "learning_curve.csv"),
        write_json({"config": asdict(config), "metrics": history.metrics},
                   out / "summary.json"),
    ]
    learning_curve_plot(history.epochs, title=f"{config.model} on {config.data}",
                        path=out / "learning_curve.png")
    files.append(out / "learning_curve.png")
    if history.test_scores is not None:
        np.save(out / "test_scores.npy", history.test_scores)
        files.append(out / "test_scores.npy")
    if samples:
        images = draw_samples(model, samples, seed=config.seed)
        sample_grid(images, pixels=model.pixels, title=f"{type(model).__name__} samples",
                    path=out / "samples.png")
        files.append(out / "samples.png")
    return files


def _summary_line(metrics: dict[str, Any]) -> str:
    from generative.scoring import CONTINUOUS_NOTE

    line = (f"{metrics['model']} on {metrics['data']}: {metrics['epochs']} epochs in "
            f"{metrics['train_minutes']:.1f} min ({metrics['train_images_per_s']:.0f} images/s)")
    if metrics.get("test_nll_nats") is not None:
        line += f"; test NLL {metrics['test_nll_nats']:.2f} nats"
        if metrics.get("test_bits_per_dim") is not None:
            line += f" ({metrics['test_bits_per_dim']:.4f} bits/dim)"
        else:
            line += f" ({CONTINUOUS_NOTE})"
    if metrics.get("test_recon_nats") is not None:
        line += f"; test reconstruction cross-entropy {metrics['test_recon_nats']:.2f} nats"
    return line


def run_score(args: argparse.Namespace) -> int:
    from dunno.outputs import check_output_dir
    from evaluation.benchmarks.generative import (
        density_score_report,
        write_density_score_report,
    )
    from generative.scoring import load_density_model, score_density

    if args.out is not None:
        check_output_dir(args.out)  # before the scoring, not after it
    model = load_density_model(args.checkpoint)
    nll, summary = score_density(model, args.data, args.split, binarize=args.binarize,
                                 batch_size=args.batch_size, device=args.device,
                                 root=args.data_dir, samples_k=args.samples_k, size=args.size,
                                 seed=args.seed, progress=progress_of(args))
    if args.out is not None:
        write_density_score_report(nll, summary, args.out)
    print_report(args, density_score_report(summary))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from generative.plots import sample_grid
    from generative.scoring import draw_samples, load_density_model

    model = load_density_model(args.checkpoint, device=args.device)
    path = args.path or str(Path(args.out or Path(args.checkpoint).parent) / "samples.png")
    samples = draw_samples(model, args.num, seed=args.seed)
    sample_grid(samples, pixels=model.pixels, title=f"{type(model).__name__} samples",
                path=path)
    print(f"wrote {len(samples)} samples to {path}")
    return 0
