"""The cost of watching a run: one short classifier training with progress reports,
history.csv and TensorBoard events on, against the same training with all of them off, in
the same process.

    python benchmarks/bench_logging.py                      # digits, LeNet-5, 5 epochs, best of 7
    python benchmarks/bench_logging.py --epochs 2 --repeat 3 --batch-size 64
    python benchmarks/bench_logging.py --smoke              # seconds (the tests run it)

Settings, run one after another in every round (alternating, so that a change in the load of
a shared machine hits all of them alike); the best time of ``--repeat`` rounds is reported:

* ``off``: ``train_classifier(progress=False)``, no epoch hook;
* ``progress (log)``: progress reports as plain lines into a file (stderr under ``nohup``):
  one line per epoch, step lines every 10 s;
* ``progress (terminal)``: the ``tqdm`` bar on a stream that says it is a terminal (drawn
  into memory; the bar redraws at most every 0.1 s);
* ``progress + history``: the plain lines and ``history.csv`` (a row per epoch, fsynced);
* ``progress + history + tensorboard``: the plain lines, ``history.csv`` and TensorBoard
  scalars per epoch (``dunno.runlog.RunLog``);
* ``... + end-of-run figures``: all that, plus what ``dunno train classifier --tensorboard``
  logs once at the end (the validation reliability diagram and the training curves, rendered
  by matplotlib: a fixed cost, whatever the length of the run).

Then the per-step bookkeeping of the step bar on its own (microseconds per step: off, plain
lines, terminal bar).

``ratio`` = best time / the best ``off`` time (1.00: no cost); ``ms/epoch`` = the difference
from ``off`` per epoch (the end-of-run figures counted in); ``hook ms/epoch`` = the median time
spent inside the epoch hook (the history row and the TensorBoard scalars), measured directly,
so free of the noise of a shared machine. Every setting trains the same network
from the same seed, so the final losses are identical (checked). Needs ``tensorboard``
(``pip install 'dunno[tensorboard]'``) for the last row.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.classify import ClassifierConfig, train_classifier  # noqa: E402
from dunno.progress import reporting  # noqa: E402
from dunno.reporting import format_table  # noqa: E402
from dunno.runlog import RunLog, TensorBoardLog  # noqa: E402

__all__ = ["main"]

SETTINGS = ("off", "progress (log)", "progress (terminal)", "progress + history",
            "progress + history + tensorboard", "... + end-of-run figures")


class _Terminal(io.StringIO):
    """A stream that says it is a terminal (the tqdm path), kept in memory."""

    def isatty(self) -> bool:
        return True


def _run(setting: str, config: ClassifierConfig, folder: Path,
         data: str) -> tuple[float, float, float]:
    """One training under ``setting``; returns (seconds, seconds inside the epoch hook,
    final training loss)."""
    folder.mkdir(parents=True, exist_ok=True)
    stream = _Terminal() if setting == "progress (terminal)" else open(folder / "log.txt", "w")
    history = folder / "history.csv" if "history" in setting else None
    tb = TensorBoardLog(folder / "tb") if "tensorboard" in setting or "..." in setting else None
    if "..." in setting:
        history = folder / "history.csv"
    t0 = time.perf_counter()
    with stream, reporting(setting != "off", stream=stream), RunLog(history, tb) as log:
        hook, in_hook = None, [0.0]
        if history is not None or tb is not None:
            def hook(model, epoch, record):
                t = time.perf_counter()
                log.epoch(epoch, record)
                in_hook[0] += time.perf_counter() - t
        result = train_classifier(config, progress=setting != "off", on_epoch_end=hook)
        if "..." in setting:
            from evaluation.benchmarks.tensorboard_logs import log_classifier_end

            log_classifier_end(tb, result.model, data, result.history, metrics=result.metrics,
                               device="cpu")
    return time.perf_counter() - t0, in_hook[0], result.history.epochs[-1]["loss"]


def step_costs(steps: int = 100_000) -> list[dict]:
    """The bookkeeping of one training step (``set_postfix`` + ``update`` of the step bar)
    measured on its own, in microseconds: off, plain lines, terminal bar."""
    from dunno.progress import Progress

    rows = []
    for name, stream, enabled in (("off", io.StringIO(), False),
                                  ("plain lines", io.StringIO(), True),
                                  ("terminal bar", _Terminal(), True)):
        with reporting(enabled, stream=stream, min_seconds=0):
            bar = Progress(total=steps, desc="steps", unit="step", enabled=enabled)
            t0 = time.perf_counter()
            for _ in range(steps):
                bar.set_postfix({"loss": 0.5, "acc": 0.9})
                bar.update(1)
            seconds = time.perf_counter() - t0
            bar.close()
        rows.append({"progress": name, "us/step": 1e6 * seconds / steps})
    return rows


def result_size(data: str):
    """The training split of ``data`` (for the number of steps per epoch)."""
    from dunno.data import load_dataset

    return load_dataset(data, "train")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--backbone", default="lenet5")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=7, help="rounds; the best time counts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.data, args.epochs, args.repeat, args.batch_size = "digits:n=120", 1, 1, 64
    torch.set_num_threads(args.threads)
    config = ClassifierConfig(backbone=args.backbone, data=args.data, epochs=args.epochs,
                              batch_size=args.batch_size, seed=0, device="cpu")
    times: dict[str, list[float]] = {s: [] for s in SETTINGS}
    hooks: dict[str, list[float]] = {s: [] for s in SETTINGS}
    losses: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dunno-bench-logging-") as tmp:
        _run("off", config, Path(tmp) / "warm-up", args.data)  # imports, caches
        for round_ in range(args.repeat):
            for i, setting in enumerate(SETTINGS):
                seconds, in_hook, losses[setting] = _run(setting, config,
                                                         Path(tmp) / f"r{round_}-s{i}", args.data)
                times[setting].append(seconds)
                hooks[setting].append(in_hook)
    if len(set(losses.values())) != 1:
        raise AssertionError(f"The settings trained different networks: {losses}.")
    base = min(times["off"])
    rows = [{"setting": s, "best_s": min(times[s]), "median_s": statistics.median(times[s]),
             "ratio": min(times[s]) / base, "ms/epoch": 1e3 * (min(times[s]) - base) / args.epochs,
             "hook ms/epoch": 1e3 * statistics.median(hooks[s]) / args.epochs}
            for s in SETTINGS]
    steps = -(-len(result_size(args.data)) // args.batch_size)
    print(f"{args.backbone} on {args.data}, {args.epochs} epochs of {steps} steps, batch "
          f"{args.batch_size}, {args.threads} thread(s), best of {args.repeat}")
    print(format_table(rows))
    print()
    print(format_table(step_costs(10_000 if args.smoke else 100_000)))
    return rows


if __name__ == "__main__":
    main()
