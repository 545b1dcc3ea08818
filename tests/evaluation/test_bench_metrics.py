"""benchmarks/bench_metrics.py runs at a tiny size and reports our values as exact."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_bench():
    path = REPO / "benchmarks" / "bench_metrics.py"
    spec = importlib.util.spec_from_file_location("bench_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_metrics_smoke(capsys):
    bench = _load_bench()
    assert bench.main(["--n", "20000", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "AUROC: 20,000 scores" in out and "ECE: 20,000 x 10" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("evaluation.")]
    assert len(rows) == 2
    for row in rows:
        assert float(row[2]) == 1.0  # ratio to ours
        assert float(row[-1]) <= 1e-12  # |value - reference|
    sklearn_row = next(line for line in out.splitlines() if "sklearn roc_auc_score" in line)
    assert float(sklearn_row.split()[-1]) <= 1e-9
