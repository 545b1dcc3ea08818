"""Data-parallel throughput on the CPU: 1 process vs 2 gloo processes, same global batch.

    python benchmarks/bench_ddp.py [--images 12800] [--batch 128] [--data mnist]

Trains LeNet-5 for one epoch over ``n`` images with a fixed global batch, timed after a
warm-up epoch, (a) in one process with 2 threads, (b) in one process with 1 thread and
(c) under ``torchrun --nproc_per_node=2`` (gloo on 127.0.0.1, 1 thread per rank), and prints
images/s and the ratio to (a). On a 2-core machine expect little from (c): both ranks share
the same two cores and pay for the gradient all-reduce.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _epoch_throughput(data: str, n: int, batch: int) -> float:
    from dunno import distributed, nets
    from dunno.data import load_dataset, make_loader
    from dunno.training import classifier_step, fit, seed_everything

    info = distributed.setup("cpu")
    seed_everything(0)
    ds = load_dataset(f"{data}:n={n}", "train")
    c, h, w = ds.info.shape
    net = nets.create("lenet5", c, 10, input_size=(h, w))
    model = distributed.wrap_model(net)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = make_loader(ds, batch, shuffle=True, seed=0)
    step = classifier_step(model, opt)
    fit(step, loader, epochs=1)  # warm-up
    distributed.barrier()
    t0 = time.perf_counter()
    fit(step, loader, epochs=1)
    distributed.barrier()
    seconds = time.perf_counter() - t0
    if info.enabled:
        distributed.teardown()
    return len(ds) / seconds


def _worker(args) -> None:
    rate = _epoch_throughput(args.data, args.images, args.batch)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"images_per_s": rate}))


def _run(cmd: list[str], env: dict) -> float:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])[
        "images_per_s"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return {}
    me = [sys.executable, str(Path(__file__).resolve()), "--worker", "--images", str(args.images),
          "--batch", str(args.batch), "--data", args.data]
    base = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    results = {
        "1 process x 2 threads": _run(me, {**base, "OMP_NUM_THREADS": "2"}),
        "1 process x 1 thread": _run(me, {**base, "OMP_NUM_THREADS": "1"}),
    }
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results["2 processes (gloo) x 1 thread"] = _run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_addr=127.0.0.1", f"--master_port={port}", *me[1:]],
        {**base, "OMP_NUM_THREADS": "1"})
    ref = results["1 process x 2 threads"]
    print(f"LeNet-5, {args.data}, {args.images} images, global batch {args.batch}, CPU "
          f"({os.cpu_count()} cores)")
    print(f"{'setup':34s} {'images/s':>10s} {'vs 1x2':>8s}")
    for name, rate in results.items():
        print(f"{name:34s} {rate:10.0f} {rate / ref:8.2f}")
    return results


if __name__ == "__main__":
    main()
