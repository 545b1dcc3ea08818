"""Every plot renders to PNG (and SVG) with the expected axes, without warnings (pytest turns
warnings into errors), and importing evaluation.plots does not import matplotlib."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from evaluation import plots
from evaluation.metrics import (
    CalibrationAccumulator,
    auroc,
    expected_calibration_error,
    reliability_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _is_png(path):
    return path.read_bytes()[:8] == PNG_MAGIC


def test_reliability_diagram(tmp_path, rng):
    probs = rng.dirichlet(np.ones(4), size=400)
    labels = rng.integers(0, 4, 400)
    fig = plots.reliability_diagram(probs, labels, path=tmp_path / "rel.png", title="Test")
    assert isinstance(fig, Figure) and _is_png(tmp_path / "rel.png")
    top, hist = fig.axes
    assert top.get_title() == "Test"
    assert top.get_ylabel() == "Accuracy" and hist.get_xlabel() == "Confidence"
    assert hist.get_ylabel() == "Count"
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    # the legend in percent, as every table shows ECE
    assert any(f"ECE = {100 * expected_calibration_error(probs, labels):.2f}%" in t
               for t in legend)
    # one accuracy bar and one gap bar per non-empty bin on top, one count bar below
    filled = int((reliability_table(probs, labels).counts > 0).sum())
    assert len(top.patches) == 2 * filled and len(hist.patches) == filled
    acc = CalibrationAccumulator(4).update(probs, labels)
    fig2 = plots.reliability_diagram_from_table(acc.reliability_table(),
                                                path=tmp_path / "rel.svg")
    assert len(fig2.axes) == 2
    assert (tmp_path / "rel.svg").read_text().lstrip().startswith("<?xml")
    table = reliability_table(probs, labels, n_bins=10, binning="equal_mass")
    fig3 = plots.reliability_diagram_from_table(table)
    assert len(fig3.axes[1].patches) == 10


def test_roc_pr_curves(tmp_path, rng):
    detectors = {
        "msp": (rng.normal(size=300), rng.normal(1.0, size=200)),
        "energy": (torch.randn(300), torch.randn(200) + 2.0),
    }
    fig = plots.roc_pr_curves(detectors, path=tmp_path / "roc.png")
    assert _is_png(tmp_path / "roc.png")
    roc_ax, pr_ax = fig.axes
    assert roc_ax.get_xlabel().startswith("False positive rate")
    assert pr_ax.get_ylabel() == "Precision (OOD)"
    labels = [t.get_text() for t in roc_ax.get_legend().get_texts()]
    assert labels[0].startswith(f"msp (AUROC {100 * auroc(*detectors['msp']):.2f}%")
    assert len(pr_ax.get_lines()) == 2 and len(roc_ax.get_lines()) == 3  # + chance line


def test_ood_score_histogram(tmp_path, rng):
    s_in, s_out = rng.normal(size=500), rng.normal(2.0, size=300)
    fig = plots.ood_score_histogram(s_in, s_out, bins=20, path=tmp_path / "hist.png")
    assert _is_png(tmp_path / "hist.png")
    (ax,) = fig.axes
    assert f"AUROC {100 * auroc(s_in, s_out):.2f}%" in ax.get_title()
    assert ax.get_ylabel() == "Density" and len(ax.patches) == 40
    plots.ood_score_histogram([1.0, 1.0], [1.0], bins=3)  # constant scores still draw


def test_risk_coverage_plot(tmp_path, rng):
    conf = rng.random(200)
    losses = (rng.random(200) > conf).astype(float)
    fig = plots.risk_coverage_plot({"msp": (conf, losses), "random": (rng.random(200), losses)},
                                   path=tmp_path / "rc.png")
    assert _is_png(tmp_path / "rc.png")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Coverage" and ax.get_ylabel() == "Selective risk"
    assert "AURC" in ax.get_legend().get_texts()[0].get_text()


def test_regression_bands(tmp_path, rng):
    x = rng.uniform(-3, 3, 100)
    fig = plots.regression_bands(x, np.sin(x), np.full(100, 0.09), targets=np.sin(x) +
                                 rng.normal(0, 0.3, 100), path=tmp_path / "bands.png")
    assert _is_png(tmp_path / "bands.png")
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0].startswith("95% interval (coverage") and "Mean" in texts


@pytest.mark.parametrize("shape,value_range", [((10, 8, 8), (0, 1)), ((5, 1, 8, 8), (0, 1)),
                                               ((9, 3, 6, 6), (-1, 1))])
def test_image_grid(tmp_path, rng, shape, value_range):
    images = rng.uniform(value_range[0], value_range[1], size=shape)
    fig = plots.image_grid(torch.from_numpy(images), ncols=4, value_range=value_range,
                           title="samples", path=tmp_path / "grid.png")
    assert _is_png(tmp_path / "grid.png")
    (ax,) = fig.axes
    assert ax.get_title() == "samples" and len(ax.images) == 1
    rows = -(-shape[0] // 4)
    assert ax.images[0].get_array().shape[:2] == (rows * (shape[-2] + 1) + 1, 4 * (shape[-1] + 1)
                                                  + 1)


def test_density_heatmap(tmp_path, rng):
    def log_prob(points):  # standard 2-D Gaussian, takes and returns torch tensors
        return -0.5 * (points**2).sum(dim=1) - np.log(2 * np.pi)

    fig = plots.density_heatmap(log_prob, resolution=41, samples=rng.normal(size=(30, 2)),
                                path=tmp_path / "density.png")
    assert _is_png(tmp_path / "density.png")
    ax, colorbar = fig.axes
    assert ax.get_xlabel() == "$x_1$" and colorbar.get_ylabel() == "density"
    values = ax.collections[0].get_array()
    assert float(values.max()) == pytest.approx(1 / (2 * np.pi), rel=0.01)
    fig = plots.density_heatmap(log_prob, resolution=10, log_scale=True)
    assert fig.axes[1].get_ylabel() == "log density"


def test_training_history(tmp_path):
    epochs = [{"epoch": 1, "loss": 1.0, "val_loss": 1.2, "acc": 0.5, "seconds": 1.0},
              {"epoch": 2, "loss": 0.6, "val_loss": 0.9, "acc": 0.7, "seconds": 1.0}]
    fig = plots.plot_training_history(epochs, path=tmp_path / "history.png")
    assert _is_png(tmp_path / "history.png")
    loss_ax, other_ax = fig.axes
    assert len(loss_ax.get_lines()) == 2 and len(other_ax.get_lines()) == 1


MAGIC = {".png": PNG_MAGIC, ".pdf": b"%PDF-"}


def _has_magic(path):
    head = path.read_bytes()[:256]
    if path.suffix.lower() == ".svg":  # XML declaration, then the svg element
        return head.startswith(b"<?xml") and b"<svg" in path.read_bytes()[:2000]
    return head.startswith(MAGIC[path.suffix.lower()])


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf", ".PDF"])
def test_every_figure_saves_as_png_svg_and_pdf(tmp_path, rng, suffix):
    from generative.latent.traversal import plot_traversal
    from generative.plots import learning_curve_plot, sample_grid

    probs = rng.dirichlet(np.ones(3), size=50)
    labels = rng.integers(0, 3, 50)
    images = torch.rand(4, 1, 8, 8)
    draw = {
        "reliability": lambda p: plots.reliability_diagram(probs, labels, path=p),
        "roc": lambda p: plots.roc_pr_curves({"a": (rng.normal(0, 1, 30),
                                                    rng.normal(1, 1, 30))}, path=p),
        "grid": lambda p: plots.image_grid(images, path=p),
        "samples": lambda p: sample_grid(images, path=p),
        "curve": lambda p: learning_curve_plot([{"epoch": 1, "loss": 2.0, "val_loss": 1.5}],
                                               path=p),
        "traversal": lambda p: plot_traversal(images, 2, p),
    }
    for name, plot in draw.items():
        path = tmp_path / f"{name}{suffix}"
        plot(path)
        assert path.is_file() and _has_magic(path), name
    # written atomically: no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}{suffix}" for n in draw)


def test_save_figure_refuses_other_suffixes(tmp_path):
    from generative.latent.traversal import plot_traversal
    from generative.plots import learning_curve_plot

    fig = plots.image_grid(torch.rand(1, 1, 4, 4))
    for path in (tmp_path / "x.jpg", tmp_path / "x", tmp_path / "x.png.txt"):
        with pytest.raises(ValueError, match=r"'path' argument must end in .png, .svg or "
                           r"\.pdf; got '.*x"):
            plots.save_figure(fig, path)
    with pytest.raises(ValueError, match="must end in .png, .svg or .pdf"):
        plots.reliability_diagram(np.full((2, 2), 0.5), [0, 1], path=tmp_path / "x.eps")
    with pytest.raises(ValueError, match="must end in .png, .svg or .pdf"):
        learning_curve_plot([{"epoch": 1, "loss": 1.0}], path=tmp_path / "x.gif")
    with pytest.raises(ValueError, match="must end in .png, .svg or .pdf"):
        plot_traversal(torch.rand(2, 1, 4, 4), 2, tmp_path / "x.jpeg")
    with pytest.raises(ValueError, match="file path"):
        plots.save_figure(fig, None)
    assert list(tmp_path.iterdir()) == []


def test_bad_plot_arguments(tmp_path):
    with pytest.raises(ValueError, match="must end in .png, .svg or .pdf"):
        plots.ood_score_histogram([0.0], [1.0], path=tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()
    with pytest.raises(ValueError, match="non-empty mapping"):
        plots.roc_pr_curves({})
    with pytest.raises(ValueError, match="1 or 3 channels"):
        plots.image_grid(np.zeros((2, 2, 4, 4)))


def test_importing_plots_does_not_import_matplotlib():
    code = ("import sys, evaluation.plots, evaluation.metrics;"
            "print(sorted(m for m in ('matplotlib', 'uncertainty', 'generative', 'dunno.cli')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
