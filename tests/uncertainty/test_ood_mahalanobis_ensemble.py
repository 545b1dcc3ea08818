"""The multi-layer Mahalanobis detector: its score by hand, its fit against the single-layer
Mahalanobis statistics, its default layers and its refusals (the detector contract runs over
it in test_ood.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dunno import nets
from uncertainty.ood import (
    MahalanobisEnsemble,
    ModelOutputs,
    conformal_neg_log_p,
    mahalanobis_ensemble_score,
    make_detector,
)
from uncertainty.ood._gaussian import class_means, tied_covariance
from uncertainty.ood.mahalanobis_ensemble import default_layers, layer_features

pytestmark = pytest.mark.one_thread


def test_score_by_hand():
    # layer A: 1-D, class means 0 and 4, variance 4 (W = 1/2); layer B: 2-D, one class at 0, W = I
    feats = [torch.tensor([[1.0]]), torch.tensor([[1.0, 1.0]])]
    means = [torch.tensor([[0.0], [4.0]]), torch.zeros(1, 2)]
    whitenings = [torch.tensor([[0.5]]), torch.eye(2)]
    refs = [torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([1.0, 3.0, 5.0, 7.0])]
    # A: min(0.25, 2.25) = 0.25, 2 of 4 references >= it: p = 3/5; B: 2, 3 of 4: p = 4/5
    score = mahalanobis_ensemble_score(feats, means, whitenings, refs)
    assert score.dtype == torch.float64
    assert float(score[0]) == pytest.approx(math.log(5 / 3) + math.log(5 / 4), abs=1e-12)
    # beyond every reference: each layer's exponential tail, summed
    far = [torch.tensor([[10.0]]), torch.tensor([[3.0, 3.0]])]
    expected = sum(float(conformal_neg_log_p(torch.tensor([d]), r))
                   for d, r in ((9.0, refs[0]), (18.0, refs[1])))
    assert float(mahalanobis_ensemble_score(far, means, whitenings, refs)[0]) == pytest.approx(
        expected, abs=1e-12)
    with pytest.raises(ValueError, match="same non-zero number"):
        mahalanobis_ensemble_score(feats, means[:1], whitenings, refs)


class TwoLayerNet(nn.Module):
    """``a = 2x`` (6 -> 6), ``b = a[:, :3] - 1`` (6 -> 3), logits from ``b``."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 3)
        self.out = nn.Linear(3, 2)
        with torch.no_grad():
            self.a.weight.copy_(2 * torch.eye(6))
            self.a.bias.zero_()
            self.b.weight.copy_(torch.eye(6)[:3])
            self.b.bias.fill_(-1.0)
            self.out.weight.copy_(torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]]))
            self.out.bias.zero_()

    def forward(self, x):
        return self.out(self.b(self.a(x)))


def _data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 6, generator=g)
    x[:, 0] += 4.0 * y - 2.0
    return x, y


def test_fit_is_the_tied_gaussian_of_each_layer_on_the_kept_part():
    model = TwoLayerNet().eval()
    x, y = _data()
    det = MahalanobisEnsemble(model, holdout=0.25, seed=3).fit((x, y))
    assert det.layers_ == ("a", "b")  # the last linear layer (the logits) left out
    order = torch.randperm(300, generator=torch.Generator().manual_seed(3))
    kept, held = order[75:].sort().values, order[:75].sort().values
    for k, f in enumerate((2 * x, 2 * x[:, :3] - 1)):
        means, _ = class_means(f[kept], y[kept], 2, "test")
        torch.testing.assert_close(det.means_[k], means)
        cov = tied_covariance(f[kept], y[kept], means)
        precision = det.whitenings_[k] @ det.whitenings_[k].T
        torch.testing.assert_close(precision, torch.linalg.inv(cov), rtol=1e-6, atol=1e-8)
        d = f[held].double()[:, None] - means[None]  # (n, C, F)
        dist = torch.einsum("ncf,fg,ncg->nc", d, torch.linalg.inv(cov), d).amin(1)
        torch.testing.assert_close(det.references_[k], dist, rtol=1e-6, atol=1e-8)
    # far from both classes in every layer: more OOD than every training input
    scores = det.score(torch.cat([x[:50], 8 + torch.randn(50, 6)]))
    assert float(scores[50:].min()) > float(scores[:50].max())


def test_default_layers_and_features_of_the_lenet():
    lenet = nets.create("lenet5", in_channels=1, num_classes=10).eval()
    assert default_layers(lenet) == ("conv1@2", "conv2@2", "fc1", "fc2")
    assert default_layers(lenet, grid=1) == ("conv1@1", "conv2@1", "fc1", "fc2")
    x = torch.rand(5, 1, 28, 28)
    feats, logits = layer_features(lenet, x, default_layers(lenet))
    assert [tuple(f.shape) for f in feats] == [(5, 24), (5, 64), (5, 120), (5, 84)]
    torch.testing.assert_close(logits, lenet(x))
    conv1 = nn.functional.adaptive_avg_pool2d(lenet.conv1(x), 2).flatten(1)
    torch.testing.assert_close(feats[0], conv1)
    assert default_layers(TwoLayerNet()) == ("a", "b")


@pytest.mark.parametrize("params, match", [
    ({"layers": []}, "'layers' parameter of MahalanobisEnsemble"),
    ({"layers": ["a", "a"]}, "'layers' parameter"),
    ({"layers": ["a@0"]}, "'layers' parameter of MahalanobisEnsemble: 'a@0' must be NAME"),
    ({"grid": 0}, "'grid' parameter"),
    ({"holdout": 1.5}, "'holdout' parameter"),
    ({"tail": 0.0}, "'tail' parameter"),
])
def test_bad_parameters_are_named(params, match):
    x, y = _data(40)
    with pytest.raises(ValueError, match=match):
        MahalanobisEnsemble(TwoLayerNet(), **params).fit((x, y))


def test_refusals():
    x, y = _data(40)
    with pytest.raises(ValueError, match="'layers' parameter of MahalanobisEnsemble: The 'layer' "
                       "parameter must name a module of TwoLayerNet. Got 'nope'"):
        MahalanobisEnsemble(TwoLayerNet(), layers=["nope"]).fit((x, y))
    with pytest.raises(ValueError, match="needs labelled"):
        make_detector("mahalanobis-ensemble", TwoLayerNet()).fit_outputs(ModelOutputs(inputs=x))
    with pytest.raises(ValueError, match="at least 2 examples on each side"):
        MahalanobisEnsemble(TwoLayerNet(), holdout=0.01).fit((x, y))
    with pytest.raises(ValueError, match="no convolution or linear layer to hook"):
        MahalanobisEnsemble(nn.Sequential(nn.Flatten())).fit((x, y))
    scripted = TwoLayerNet()
    scripted.dunno_info = {"kind": "torchscript"}  # as the loader marks a TorchScript file
    assert not MahalanobisEnsemble.applies_to(scripted)
    with pytest.raises(ValueError, match="compiled graph"):
        make_detector("mahalanobis-ensemble", scripted)


def test_the_default_falls_back_to_label_free_components_without_labels():
    from uncertainty.ood import DEFAULT_COMPONENTS, DEFAULT_COMPONENTS_UNLABELLED, Combined
    from uncertainty.ood.outputs import extract_outputs
    from uncertainty.ood.suite import resolve_detectors

    model = TwoLayerNet()
    default = make_detector("default", model, layer="b")
    assert not default.fit_needs_labels  # it runs on unlabelled data ...
    assert {"features", "input"} <= default.fit_needs  # ... whichever plan it takes
    assert "combined" in resolve_detectors("all", model=model, layer="b", labels=False)
    assert resolve_detectors("default", model=model, labels=False) == ["combined"]
    # components given explicitly that learn per-class statistics still need labels
    with_mahalanobis = Combined(model, components=("mahalanobis", "energy"), layer="b")
    assert with_mahalanobis.fit_needs_labels
    assert not Combined(model, components=("knn", "energy"), layer="b").fit_needs_labels

    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 6, generator=g)  # kNN's k = 50 needs 50 of the 80% fit part
    y = (x[:, 0] > 0).long()
    unlabelled = make_detector("default", model, layer="b").fit(x)
    assert unlabelled.components_ == DEFAULT_COMPONENTS_UNLABELLED
    assert unlabelled.reduce_ == "max"
    assert list(unlabelled.detectors_) == ["odin", "knn", "rapp(mode=sap)"]
    outputs = extract_outputs(model, x, needs=unlabelled.needs, layer="b")
    parts = torch.stack(list(unlabelled.component_scores(outputs).values()))
    torch.testing.assert_close(unlabelled.score(x), parts.amax(0), check_dtype=False)
    labelled = make_detector("default", model, layer="b").fit((x, y))
    assert labelled.components_ == DEFAULT_COMPONENTS and labelled.reduce_ == "fisher"
    assert list(labelled.detectors_) == ["featurenorm", "mahalanobis-ensemble", "rapp(mode=sap)"]
    outputs = extract_outputs(model, x, needs=labelled.needs, layer="b")
    parts = torch.stack(list(labelled.component_scores(outputs).values()))
    torch.testing.assert_close(labelled.score(x), parts.sum(0), check_dtype=False)
