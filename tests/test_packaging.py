"""The imported top-level packages are this repository's, not PyPI namesakes."""

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["dunno", "evaluation", "uncertainty", "generative"])
def test_packages_come_from_this_repository(name):
    module = importlib.import_module(name)
    path = Path(module.__file__).resolve()
    assert path.is_relative_to(REPO), f"{name} imported from {path}, not from {REPO}"


def test_dunno_does_not_import_cli_or_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys, dunno, dunno.data, dunno.training, dunno.checkpoints;"
        "print('dunno.cli' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
