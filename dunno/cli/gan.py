"""``dunno gan train | eval``: GANs, DCGANs and InfoGANs.

Train a GAN, DCGAN or InfoGAN (per-epoch sample grids), or score a checkpoint's samples with
our own classifier's features: classifier-based FID (cFID, not comparable with Inception FID)
next to the train-vs-test floor, classifier score, k-NN precision/recall, InfoGAN code
accuracy; ring-of-Gaussians mode coverage.

train writes to --out: model.pt, training_state.pt (--resume), history.csv (a row per epoch as
it trains), history.json, summary.json, losses.png, samples.png and samples/epoch_NNN.png
after every epoch (a scatter plot over the data for 2-D sets; for InfoGAN also
epoch_NNN_cK.png: rows = categorical value, columns = a sweep of continuous code K from -2 to
2, as Figure 2 of Chen et al. 2016).
eval writes eval.json, eval.csv, eval_samples.png and the report (report.md, a self-contained
report.html, report.json) to --out when given."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from dunno.cli.common import (
    add_common,
    add_format,
    add_model_options,
    add_tensorboard,
    load_cli_model,
    open_run_log,
    print_report,
    progress_of,
    run_subcommand,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from generative.adversarial import ADVERSARIAL_MODELS

    p = subparsers.add_parser(
        "gan", help="GANs: train gan | dcgan | infogan; eval (cFID, precision/recall)",
        description=__doc__)
    p.set_defaults(run=run, prog="gan", needs_subcommand=True, group_parser=p)
    sub = p.add_subparsers(dest="gan_command", metavar="COMMAND")
    t = sub.add_parser("train", help="train gan | dcgan | infogan; writes model.pt and grids",
                       description="Train a GAN, DCGAN or InfoGAN; sample grids per epoch.")
    t.add_argument("model", choices=list(ADVERSARIAL_MODELS), help="the model")
    t.add_argument("--data", default="mnist",
                   help="dataset spec: mnist, fashion-mnist, ring-of-gaussians, ...")
    t.add_argument("--epochs", type=int, default=5, help="epochs (an upper bound with a budget)")
    t.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    t.add_argument("--budget-clock", choices=("wall", "cpu"), default="wall",
                   help="what --max-minutes counts: wall-clock time, or this process's CPU time")
    t.add_argument("--batch-size", type=int, default=64, help="training batch size")
    t.add_argument("--train-size", type=int, default=None,
                   help="train on a seeded random subset of this many examples")
    t.add_argument("--grid", type=int, default=64,
                   help="samples per epoch grid (0: none; 2-D data: 1000 points)")
    t.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, repeatable (latent_dim=100, width=32, hidden=0, "
                        "lr_g=2e-4, info_weight=1, continuous_weight=1, noise=uniform)")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/training_state.pt (only with "
                   "the same settings; --epochs may grow, the schedule is re-planned)")
    t.add_argument("--out", default=None, help="output directory (None: runs/gan-MODEL)")
    t.set_defaults(needs_subcommand=False, prog="gan train")
    e = sub.add_parser("eval", help="cFID, classifier score, precision/recall of samples",
                       description="Score a GAN checkpoint's samples with a classifier's "
                       "features (cFID, classifier score, precision/recall), or by mode "
                       "coverage on the ring of Gaussians.")
    e.add_argument("--checkpoint", required=True, help="a GAN checkpoint (model.pt)")
    add_model_options(e, flag="--classifier",
                      what="the classifier with features(x) (image GANs), e.g. "
                      "runs/lenet5-mnist/model.pt")
    e.add_argument("--data", default=None, help="real data (None: what the GAN saw)")
    e.add_argument("-n", "--num-samples", type=int, default=None,
                   help="samples per set (None: 10000 images, 2500 2-D points)")
    e.add_argument("-k", type=int, default=3, help="neighbours for precision / recall")
    e.add_argument("--compare", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="another image model to score the same way (e.g. vae=runs/vae/model.pt)")
    e.add_argument("--seed", type=int, default=0, help="seed of the samples and subsets")
    e.add_argument("--out", default=None,
                   help="output directory: eval.json / .csv, eval_samples.png, report.md / "
                   ".html / .json (None: print only)")
    add_format(e)
    e.set_defaults(needs_subcommand=False, prog="gan eval")
    for q in (t, e):
        add_common(q)
    add_tensorboard(t)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``gan train | eval``; returns the exit status."""
    return run_subcommand(args, "gan_command", {"train": run_train, "eval": run_eval})


def run_train(args: argparse.Namespace) -> int:
    """The --out folder is checked writable and locked for the whole command."""
    from dunno.outputs import run_output_dir

    out = Path(args.out or f"runs/gan-{args.model}")
    with run_output_dir(out), open_run_log(args, out / "history.csv", resume=args.resume) as log:
        return _run_train(args, log)


def _run_train(args: argparse.Namespace, log) -> int:
    from dunno.config import parse_options
    from dunno.reporting import write_json
    from generative import GANConfig, train_gan
    from generative.adversarial.training import training_data
    from generative.plots import EpochSamplePlots, gan_loss_plot, sample_plot

    config = GANConfig(
        model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
        max_minutes=args.max_minutes, budget_clock=args.budget_clock,
        train_size=args.train_size, seed=args.seed,
        device=args.device, options=parse_options(args.option),
    )
    if not isinstance(args.grid, int) or args.grid < 0:
        raise ValueError(f"--grid must be an int >= 0. Got {args.grid!r} instead.")
    out = Path(args.out or f"runs/gan-{args.model}")
    title = f"{config.model} on {config.data}"
    points = None
    if args.grid:
        train = training_data(config, args.data_dir)
        points = train.x[:2000] if tuple(train.info.shape) == (2,) else None
    snapshots = EpochSamplePlots(out / "samples", args.grid, config.seed, title, points)
    images = None
    if log.tensorboard is not None:
        from evaluation.benchmarks.tensorboard_logs import GANEpochImages

        images = GANEpochImages(log.tensorboard, snapshots)

    def on_epoch_end(model, epoch: int, record: dict) -> None:
        snapshots(model, epoch, record)
        log.epoch(epoch, record)
        if images is not None:
            images(model, epoch, record)

    model, history = train_gan(config=config, out=out, root=args.data_dir, resume=args.resume,
                               progress=progress_of(args), on_epoch_end=on_epoch_end)
    metrics = history.metrics
    write_json({"config": asdict(config), **history.as_dict(), "metrics": metrics},
               out / "history.json")
    log.write_all(history.epochs)  # the whole run, resumed parts included
    write_json({"config": asdict(config), "metrics": metrics}, out / "summary.json")
    gan_loss_plot(history.epochs, title=title, path=out / "losses.png")
    if args.grid:
        sample_plot(snapshots.fixed_samples(model), title=f"{title}: samples", data=points,
                    path=out / "samples.png")
    if args.quiet:
        print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, int | float | str)}))
    else:
        line = (f"{title}: {metrics['epochs']} epochs, {metrics['steps']} steps in "
                f"{metrics['train_minutes']:.1f} min ({metrics['train_images_per_s']:.0f} "
                "images/s)")
        if "modes_covered" in metrics:
            line += (f"; modes covered {metrics['modes_covered']}/8, high-quality samples "
                     f"{metrics['high_quality']:.1%}")
        print(line)
    print(f"checkpoint: {history.checkpoint}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from dunno.outputs import check_output_dir
    from evaluation.benchmarks.generative import gan_eval_report, write_gan_eval_report
    from generative import evaluate_gan

    if args.out is not None:
        check_output_dir(args.out)  # before the evaluation, not after it

    compare = {}
    for item in args.compare:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--compare must look like NAME=CHECKPOINT. Got {item!r}.")
        compare[key] = value
    from dunno.devices import resolve_device
    from dunno.models import model_kind

    classifier = load_cli_model(args, resolve_device(args.device), required=False)
    if classifier is not None and not callable(getattr(classifier, "features", None)):
        raise ValueError(
            f"gan eval scores samples in a classifier's feature space, but the --classifier / "
            f"--model given ({type(classifier).__name__}, a {model_kind(classifier)}) has no "
            "features(x) method; TorchScript and torch.export files keep only forward. Use a "
            "dunno checkpoint (dunno train classifier) or --model MODULE:FACTORY --weights "
            "FILE for a model with a features method."
        )
    result = evaluate_gan(args.checkpoint, classifier=classifier, data=args.data,
                          num_samples=args.num_samples, k=args.k, compare=compare,
                          seed=args.seed, device=args.device, root=args.data_dir,
                          progress=progress_of(args))
    if args.out is not None:
        write_gan_eval_report(result, args.out)
    print_report(args, gan_eval_report(result.report, figures=args.out is not None))
    return 0
