"""InfoGAN: the categorical code's best-mapping accuracy along a CPU-time budget (MNIST).

Trains ``InfoGAN`` (the library defaults unless ``--option KEY=VALUE`` says otherwise) with
the model's own ``step`` for ``--minutes`` of this process's CPU time (the time inside the
steps, as ``dunno gan train --budget-clock cpu`` counts it), and every ``--every`` CPU
minutes scores the categorical code: the accuracy of the best one-to-one mapping of the 10
code values to the digits a LeNet-5 classifier predicts on ``--eval-samples`` generated
images (the ``code_accuracy`` of ``dunno gan eval``). The scoring is outside the budget.
Writes one JSON line per checkpoint on stdout and, with ``--out``, the final ``model.pt``.

Run on one thread (``OMP_NUM_THREADS=1``) so that a CPU minute is a core minute::

    python benchmarks/infogan_seeds.py --classifier runs/lenet5-mnist/model.pt --seed 0 \\
        --minutes 5 --every 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from dunno.checkpoints import load_model, save_checkpoint
from dunno.config import parse_options
from dunno.data import make_loader
from dunno.training import seed_everything
from generative.adversarial import create
from generative.adversarial.evaluation import code_accuracy
from generative.adversarial.training import GANConfig, training_data


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classifier", required=True, help="LeNet-5 MNIST checkpoint")
    p.add_argument("--data", default="mnist", help="training data (images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=5.0, help="CPU-minute budget")
    p.add_argument("--every", type=float, default=1.0, help="CPU minutes between scores")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="directory for the final model.pt")
    args = p.parse_args(argv)
    options = parse_options(args.option)

    torch.set_num_threads(1)
    seed_everything(args.seed)
    config = GANConfig(model="infogan", data=args.data, batch_size=args.batch_size,
                       seed=args.seed, options=options)
    train = training_data(config)
    model = create("infogan", tuple(train.info.shape), **options)
    loader = make_loader(train, args.batch_size, shuffle=True, seed=args.seed, drop_last=True)
    classifier = load_model(args.classifier).eval()
    budget, every = 60.0 * args.minutes, 60.0 * args.every
    spent, steps, next_mark, rows = 0.0, 0, every, []

    def score() -> dict:
        model.eval()
        g = torch.Generator().manual_seed(1000 + args.seed)
        result = code_accuracy(model, classifier, args.eval_samples, generator=g)
        model.train()
        row = {"seed": args.seed, "options": options, "batch_size": args.batch_size,
               "cpu_minutes": spent / 60, "steps": steps,
               "epochs": steps * args.batch_size / len(train),
               "code_accuracy": result["code_accuracy"], "last": last}
        print(json.dumps(row), flush=True)
        rows.append(row)
        return row

    last: dict = {}
    model.train()
    while spent < budget:
        for batch in loader:
            t0 = time.process_time()
            out = model.step(batch)
            spent += time.process_time() - t0
            steps += 1
            if steps % 50 == 0:
                last = {k: round(float(v), 4) for k, v in out.items()}
            if spent >= next_mark or spent >= budget:
                score()
                next_mark += every
            if spent >= budget:
                break
    if args.out:
        model.eval()
        save_checkpoint(Path(args.out) / "model.pt", model, arch=model.arch,
                        config=model.config, meta={"trained_on": args.data, "rows": rows})
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
