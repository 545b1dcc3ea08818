"""Scoring a density checkpoint on the user's own files: values outside the model's pixels
are refused with the range that was given, and the scores are the model's exact
log-likelihoods of the images as loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generative.autoregressive import PixelCNN
from generative.scoring import score_density

pytestmark = pytest.mark.one_thread

SHAPE = (1, 4, 4)


def _pixelcnn_8bit() -> PixelCNN:
    torch.manual_seed(0)
    return PixelCNN(SHAPE, "8bit", hidden=4, layers=2, output_hidden=8).eval()


def _whole_numbers(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *SHAPE))


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_8bit_model_refuses_whole_numbers_that_are_not_uint8(tmp_path, dtype):
    # only uint8 files are read as intensities k / 255; other dtypes keep their values
    path = tmp_path / "mine.npz"
    np.savez(path, x_test=_whole_numbers().astype(dtype))
    with pytest.raises(ValueError, match=r"values in \[0, 255\].*8-bit model.*\[0, 1\]"
                       r".*uint8.*divide"):
        score_density(_pixelcnn_8bit(), str(path), "test", device="cpu")


def test_8bit_model_scores_a_uint8_file_exactly(tmp_path):
    images = _whole_numbers()
    path = tmp_path / "mine.npz"
    np.savez(path, x_test=images.astype(np.uint8))
    model = _pixelcnn_8bit()
    nll, summary = score_density(model, str(path), "test", batch_size=5, device="cpu")
    with torch.no_grad():
        expected = -model.log_prob(torch.from_numpy(images).float()).double().numpy()
    np.testing.assert_allclose(nll, expected, rtol=1e-6)
    assert summary["n"] == len(images) and summary["num_dims"] == 16
    np.testing.assert_allclose(summary["nll_nats"], expected.mean(), rtol=1e-6)
    np.testing.assert_allclose(summary["bits_per_dim"], expected.mean() / (16 * np.log(2)),
                               rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -3])
def test_score_density_names_its_batch_size(tmp_path, bad):
    path = tmp_path / "mine.npz"
    np.savez(path, x_test=_whole_numbers().astype(np.uint8))
    with pytest.raises(ValueError, match=rf"'batch_size' parameter of score_density.*{bad}"):
        score_density(_pixelcnn_8bit(), str(path), "test", batch_size=bad, device="cpu")


def test_8bit_training_refuses_whole_numbers_outside_0_1(tmp_path):
    """Training an 8-bit model on whole numbers 0..255 stored as int64 (not uint8, so not
    scaled on load) is refused with the range, as scoring is."""
    from generative.pixels import to_8bit

    x = torch.arange(256, dtype=torch.float32).reshape(1, 1, 16, 16)
    with pytest.raises(ValueError, match=r"'mine' holds values in \[0, 255\].*8-bit"):
        to_8bit(x, "mine")
    torch.testing.assert_close(to_8bit(x / 255, "mine"), x)  # [0, 1] -> exactly 0..255
