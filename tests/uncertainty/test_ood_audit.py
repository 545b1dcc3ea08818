"""OOD detectors on a user's own path: outputs of another width, degenerate Gaussian fits and
integer inputs are refused with messages naming what was expected and what was given."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from torch import nn

from uncertainty.ood import (
    KNN,
    KLMatching,
    Mahalanobis,
    ModelOutputs,
    NNGuide,
    RelativeMahalanobis,
    extract_outputs,
    make_detector,
)


def _outputs(n: int = 200, c: int = 4, f: int = 8, seed: int = 0) -> ModelOutputs:
    g = torch.Generator().manual_seed(seed)
    return ModelOutputs(logits=torch.randn(n, c, generator=g, dtype=torch.float64),
                        features=torch.rand(n, f, generator=g, dtype=torch.float64),
                        labels=torch.arange(n) % c)


@pytest.mark.parametrize("cls", [Mahalanobis, KNN, RelativeMahalanobis, NNGuide])
@pytest.mark.parametrize("width", [6, 10])
def test_features_of_another_width_are_refused(cls, width):
    """These used to end in a bare 'mat1 and mat2 shapes cannot be multiplied'."""
    params = {"k": 5} if cls in (KNN, NNGuide) else {}
    det = cls(**params).fit_outputs(_outputs())
    test = _outputs(20, f=width, seed=1)
    with pytest.raises(ValueError, match=rf"{cls.__name__} was fitted on 8 features per "
                                         rf"example; the features have {width}"):
        det.score_outputs(test)


def test_logits_of_another_class_count_are_refused():
    det = KLMatching().fit_outputs(_outputs())
    with pytest.raises(ValueError, match="KLMatching was fitted on 4 classes; the logits have 5"):
        det.score_outputs(_outputs(20, c=5, seed=1))


def test_outputs_of_the_fitted_width_score_as_scipy_computes():
    train, test = _outputs(), _outputs(20, seed=1)
    det = Mahalanobis().fit_outputs(train)
    scores = det.score_outputs(test).numpy()
    f, y = train.features.numpy(), train.labels.numpy()
    means = np.stack([f[y == k].mean(0) for k in range(4)])
    centred = f - means[y]
    precision = np.linalg.inv(centred.T @ centred / len(f))
    expected = [min(scipy_mahalanobis(x, m, precision) ** 2 for m in means)
                for x in test.features.numpy()]
    np.testing.assert_allclose(scores, expected, rtol=1e-8)


@pytest.mark.parametrize("cls", [Mahalanobis, RelativeMahalanobis])
def test_one_training_example_per_class_is_refused(cls):
    """The class-centred features are then all 0: every Mahalanobis distance was 0 (constant
    scores for any input, AUROC 0.5); relative Mahalanobis became -MD_0, sign-reversed."""
    with pytest.raises(ValueError, match=r"no variance \(4 examples of 4 classes, 8 "
                                         r"features\).*would be 0"):
        cls().fit_outputs(_outputs(4))


def test_one_example_per_class_with_jitter_still_ranks_by_distance():
    det = Mahalanobis(inverse="jitter").fit_outputs(_outputs(4))
    test = _outputs(20, seed=1)
    scores = det.score_outputs(test)
    euclid = torch.cdist(test.features, det.means_).square().amin(dim=1)
    assert torch.equal(torch.argsort(scores), torch.argsort(euclid))


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(3 * 6 * 6, 4)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize("name", ["energy", "knn"])
def test_uint8_images_are_refused_naming_the_dtypes(name):
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 256, size=(60, 1, 8, 8)).astype(np.uint8)
    x = x8.astype(np.float32) / 255
    det = make_detector(name, _Conv(), **({"k": 5} if name == "knn" else {})).fit(x)
    reference = det.score(x[:10])
    with pytest.raises(ValueError, match=r"dtype torch\.uint8 but the model's weights are "
                                         r"torch\.float32.*/ 255"):
        det.score(x8[:10])
    np.testing.assert_array_equal(det.score(x8[:10].astype(np.float32) / 255), reference)


def test_a_model_that_takes_integer_tokens_is_not_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 3))
    tokens = torch.randint(0, 10, (7, 3))
    out = extract_outputs(model, tokens, needs=("logits",))
    with torch.no_grad():
        assert torch.equal(out.logits, model(tokens))


def test_odin_names_integer_inputs():
    from uncertainty.ood import make_detector

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"odin_score: the inputs have dtype torch\.uint8.*"
                       r"float32.*/ 255"):
        make_detector("odin", model).score(x)
    scores = make_detector("odin", model).score(x.float() / 255)
    assert scores.shape == (8,) and torch.isfinite(torch.as_tensor(scores)).all()
