"""Shared fixtures: seeded RNGs, a clean Pyro param store, the real-data directory, and one
intra-op thread for modules marked ``one_thread``."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    root = os.environ.get("DUNNO_DATA")
    if root and Path(root).is_dir():
        return Path(root)
    return None


@pytest.fixture
def data_dir() -> Path:
    """The real datasets (``$DUNNO_DATA``); skips the test when they are absent."""
    root = _data_dir()
    if root is None:
        pytest.skip("$DUNNO_DATA is not set to the shared datasets")
    return root


@pytest.fixture(autouse=True, scope="module")
def _one_thread_where_marked(request):
    """Modules marked ``pytestmark = pytest.mark.one_thread`` run on one intra-op thread (their
    models are tiny; one thread is faster and does not oversubscribe a shared machine)."""
    if request.node.get_closest_marker("one_thread") is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed_and_clean_pyro():
    torch.manual_seed(0)
    try:
        import pyro
    except ImportError:  # pragma: no cover - pyro is a hard dependency
        yield
        return
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()
