"""Every example runs end to end with --smoke."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_with_smoke(path, tmp_path):
    module = _load(path)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main(argv)"
    module.main(["--smoke", "--out", str(tmp_path / path.stem)])


def test_train_classifier_example_reloads_identically(tmp_path):
    result = _load(EXAMPLES[[p.stem for p in EXAMPLES].index("train_classifier")]).main(
        ["--smoke", "--out", str(tmp_path)]
    )
    assert result["reloaded_acc"] == pytest.approx(result["test_acc"], abs=0)
    assert result["test_acc"] > 0.5  # three epochs on digits already beat chance (0.1) by far
