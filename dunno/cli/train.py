"""``dunno train classifier``: train a backbone from :mod:`dunno.nets` on a dataset (or a deep
ensemble of them); ``dunno train --list`` shows the backbones with parameter counts."""

from __future__ import annotations

import argparse
from pathlib import Path

from dunno.cli.common import (
    USER_DATA_HELP,
    add_common,
    add_tensorboard,
    open_run_log,
    print_split,
    progress_of,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train models (train classifier --help)",
                              description=__doc__)
    p.add_argument("--list", action="store_true", help="list backbones and parameter counts")
    p.set_defaults(run=run_list, needs_subcommand=True, group_parser=p)
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    c = sub.add_parser("classifier", help="train a backbone classifier",
                       description="Train a backbone classifier; writes model.pt, "
                       "history.csv (a row per epoch as it trains), metrics.json and "
                       "training.png to --out.")
    c.add_argument("--backbone", default="lenet5", help="a name from `dunno train --list`")
    c.add_argument("--data", default="digits", help="dataset spec" + USER_DATA_HELP)
    c.add_argument("--epochs", type=int, default=20, help="training epochs")
    c.add_argument("--batch-size", type=int, default=128, help="training batch size")
    c.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    c.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    c.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="optimiser")
    c.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="learning-rate schedule")
    c.add_argument("--dropout", type=float, default=None,
                   help="dropout rate before the head (None: the backbone's own)")
    c.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="data augmentation (None: the data's usual: random crops with padding "
                   "4 + horizontal flips for cifar10/cifar100, crops with padding 2 for 28x28 "
                   "and larger, none for digits)")
    c.add_argument("--crop-padding", type=int, default=None, metavar="P",
                   help="random crops from the image zero-padded by P pixels (0: no crops; "
                   "None: the data's usual)")
    c.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (None: the data's usual: on for CIFAR)")
    c.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="per-channel input normalisation by the training split's mean and std, "
                   "inside the network (None: on for backbones with mean/std options, "
                   "resnet18-cifar)")
    c.add_argument("--patience", type=int, default=None,
                   help="early-stopping patience in epochs on the validation NLL (None: no "
                   "early stopping)")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="backbone option, repeatable (e.g. --option depth=8 --option "
                   "spectral_norm=true); see dunno.nets.describe(NAME)")
    c.add_argument("--seed", type=int, default=0, help="random seed")
    c.add_argument("--out", required=True, help="output directory (checkpoint, history, plots)")
    c.add_argument("--amp", choices=["bf16", "fp16", "auto"], default=None,
                   help="mixed precision (CUDA: bf16 where supported, else fp16 + grad scaler)")
    c.add_argument("--compile", action="store_true", help="torch.compile the model")
    c.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/training_state.pt (only with "
                   "the same settings; --epochs may grow, the schedule is re-planned)")
    c.add_argument("--ensemble", type=int, default=None, metavar="M",
                   help="train a deep ensemble of M members (seeds SEED..SEED+M-1) into one "
                   "checkpoint; under torchrun member k trains on rank k mod N")
    add_common(c)
    add_tensorboard(c)
    c.set_defaults(run=run, needs_subcommand=False, prog="train classifier")
    return p


def run_list(args: argparse.Namespace) -> int:
    from dunno import nets
    from dunno.reporting import format_table

    rows = []
    for name in nets.available():
        model = nets.create(name, 1, 10, input_size=28)
        rows.append({"backbone": name, "parameters (1x28x28, 10 classes)":
                     nets.count_parameters(model), "features": model.num_features})
    print(format_table(rows))
    return 0


#: history.csv's names for the classifier's epoch records (the other keys keep theirs)
HISTORY_COLUMNS = {"loss": "train_nll", "acc": "train_acc", "val_loss": "val_nll"}


def run(args: argparse.Namespace) -> int:
    """--out is checked writable and locked before any work and until the last file is written;
    history.csv (and --tensorboard) get a row per epoch as the run goes."""
    from dunno.outputs import run_output_dir

    with run_output_dir(args.out), open_run_log(
            args, Path(args.out) / "history.csv", resume=args.resume, rename=HISTORY_COLUMNS,
            group="member" if args.ensemble is not None else None) as log:
        return _run(args, log)


def _run(args: argparse.Namespace, log) -> int:
    from dunno import distributed
    from dunno.classify import ClassifierConfig, train_classifier
    from dunno.config import parse_options
    from dunno.reporting import format_table, write_json

    config = ClassifierConfig(
        backbone=args.backbone, data=args.data, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        optimizer=args.optimizer, schedule=args.schedule, dropout=args.dropout,
        augment=args.augment, crop_padding=args.crop_padding, flip=args.flip,
        normalize=args.normalize, patience=args.patience, seed=args.seed, device=args.device,
        options=parse_options(args.option), amp=args.amp, compile=args.compile,
    )
    out = Path(args.out)
    if distributed.is_main_process():
        print_split(args.data, args.data_dir)

    def on_epoch_end(model, epoch: int, record: dict) -> None:
        if distributed.is_main_process():
            log.epoch(epoch, record)

    if args.ensemble is not None:
        return _train_ensemble(config, args, out, on_epoch_end)
    result = train_classifier(config, out=out, root=args.data_dir, resume=args.resume,
                              progress=progress_of(args), on_epoch_end=on_epoch_end)
    if not distributed.is_main_process():
        return 0
    columns = ["epoch", "train_nll", "train_acc", "val_nll", "val_acc", "seconds"]
    print(format_table([log.history().row(e) for e in result.history.epochs], columns))
    print()
    print(format_table([result.metrics]))
    log.write_all(result.history.epochs)  # the whole run, resumed parts included
    write_json({"config": vars(config), "metrics": result.metrics,
                "history": result.history.as_dict()}, out / "metrics.json")
    from evaluation.plots import plot_training_history

    plot_training_history(result.history, path=out / "training.png")
    if log.tensorboard is not None:
        from evaluation.benchmarks.tensorboard_logs import log_classifier_end

        log_classifier_end(log.tensorboard, result.model, config.data, result.history,
                           metrics=result.metrics, root=args.data_dir,
                           device=next(result.model.parameters()).device)
    print(f"\ncheckpoint: {result.checkpoint}")
    return 0


def _train_ensemble(config, args: argparse.Namespace, out: Path, on_epoch_end) -> int:
    from dunno import distributed
    from dunno.ensemble import train_ensemble
    from dunno.reporting import format_table, write_json

    result = train_ensemble(config, args.ensemble, out=out, root=args.data_dir,
                            resume=args.resume, progress=progress_of(args),
                            on_epoch_end=on_epoch_end)
    if not distributed.is_main_process():
        return 0
    m = result.metrics
    rows = [{"member": k, "rank": m["member_ranks"][k], "test_acc": acc}
            for k, acc in enumerate(m["member_test_acc"])]
    print(format_table(rows))
    print()
    print(format_table([{k: m[k] for k in ("test_acc", "test_nll", "val_acc", "val_nll",
                                          "minutes", "world_size")}]))
    write_json({"config": vars(config), "num_members": args.ensemble, "metrics": m},
               out / "metrics.json")
    print(f"\nensemble checkpoint: {result.checkpoint}")
    return 0
