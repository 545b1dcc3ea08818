"""The ensemble / MC-Dropout speed benchmark runs, and its outputs agree."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ensemble.py"


def test_bench_ensemble_quick_outputs_agree():
    spec = importlib.util.spec_from_file_location("bench_ensemble", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        rows = module.main(["--quick", "--repeat", "1"])
    finally:
        torch.set_num_threads(threads)
    methods = [r["method"] for r in rows]
    assert {"loop", "vmap", "full", "fast"} <= set(methods)
    for row in rows:
        assert row["best_s"] > 0 and row["speedup"] > 0
        if row["method"] == "vmap" and not math.isnan(row["max_abs_diff"]):
            assert row["max_abs_diff"] < 1e-5
        if row["method"] == "fast":
            assert row["max_abs_diff"] == 0.0  # same seed -> identical samples
