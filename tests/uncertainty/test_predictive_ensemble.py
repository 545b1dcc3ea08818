"""Deep ensembles: vectorised (vmap) inference equals the loop, the mixture moments, the
loop fallback, adversarial training and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dunno.errors import NotFittedError
from uncertainty.predictive import (
    ClassificationPrediction,
    DeepEnsemble,
    DeepEnsembleRegressor,
    RegressionPrediction,
)

pytestmark = pytest.mark.one_thread


def _toy(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 4 - 2
    y = x[:, :1] ** 2 + 0.2 * torch.randn(n, 1, generator=g)
    return x, y


def test_vmap_inference_equals_loop():
    x, y = _toy()
    est = DeepEnsembleRegressor(16, num_members=4, epochs=3, batch_size=32).fit(x, y)
    assert est.vectorized_
    xt = torch.randn(37, 2)
    a = est.predict_members(xt, vectorized=True)
    b = est.predict_members(xt, vectorized=False)
    assert a.shape == (4, 37, 2)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_vmap_inference_equals_loop_for_a_batch_norm_classifier():
    def model_fn():
        return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4))

    x = torch.randn(90, 3)
    labels = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    est = DeepEnsemble(model_fn, 3, task="classification", epochs=2, batch_size=30).fit(x, labels)
    # batch norm updates running statistics in place: training falls back to a loop ...
    assert not est.vectorized_ and "batch norm" in est.vectorize_reason_
    assert len(est.histories_) == 3
    # ... and eval-mode inference can still be vectorised, equal to the loop
    torch.testing.assert_close(est.predict_members(x, vectorized=True),
                               est.predict_members(x, vectorized=False), rtol=0, atol=1e-6)
    pred = est.predict(x)
    assert isinstance(pred, ClassificationPrediction) and pred.samples.shape == (3, 90, 4)
    assert torch.all(pred.mutual_information >= 0)
    assert torch.all(pred.mutual_information <= math.log(4) + 1e-12)


def test_inference_path_is_chosen_at_fit_and_recorded():
    x, y = _toy()
    auto = DeepEnsembleRegressor(8, num_members=3, epochs=1).fit(x, y)
    timing = auto.inference_timing_
    assert timing["rows"] == 120 and timing["vmap_s"] > 0 and timing["loop_s"] > 0
    assert "timing probe" in auto.inference_reason_
    # vmap is kept only with the margin, as the recorded times say
    assert auto.inference_vectorized_ == (timing["loop_s"] >= 1.25 * timing["vmap_s"])
    chosen = auto.predict_members(x[:9], vectorized=auto.inference_vectorized_)
    assert torch.equal(auto.predict_members(x[:9]), chosen)
    loop = DeepEnsembleRegressor(8, num_members=3, epochs=1, inference="loop").fit(x, y)
    assert not loop.inference_vectorized_ and loop.inference_timing_ is None
    assert loop.inference_reason_ == "inference='loop'"
    vec = DeepEnsembleRegressor(8, num_members=3, epochs=1, inference="vmap").fit(x, y)
    assert vec.inference_vectorized_ and vec.inference_timing_ is None
    # the same seed trains the same members: the two fixed paths agree to float rounding
    torch.testing.assert_close(vec.predict_members(x), loop.predict_members(x), rtol=0,
                               atol=1e-6)
    with pytest.raises(ValueError, match=r"'inference' parameter of DeepEnsembleRegressor must "
                                         r"be one of 'auto', 'vmap', 'loop'\. Got 'fast'"):
        DeepEnsembleRegressor(inference="fast").fit(x, y)


class _DataDependent(nn.Module):
    """Python control flow on tensor values: vmap refuses it in every mode."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        out = self.lin(x)  # batched over the members under vmap
        return out if out.detach().sum().item() < 1e9 else -out


def test_inference_falls_back_to_the_loop_when_vmap_cannot_run():
    x, y = _toy(30)
    est = DeepEnsemble(_DataDependent, 2, epochs=1).fit(x, y)
    assert not est.vectorized_ and not est.inference_vectorized_
    assert "vmap failed in eval mode" in est.inference_reason_
    assert est.predict_members(x).shape == (2, 30, 2)
    with pytest.raises(ValueError, match="cannot predict with torch.func.vmap"):
        DeepEnsemble(_DataDependent, 2, epochs=1, inference="vmap").fit(x, y)


def test_vectorize_true_refuses_batch_norm():
    def model_fn():
        return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    with pytest.raises(ValueError, match="cannot vectorise"):
        DeepEnsemble(model_fn, 2, task="classification", epochs=1, vectorize=True).fit(
            torch.randn(10, 3), torch.randint(0, 2, (10,)))


def test_regression_prediction_is_the_uniform_mixture():
    x, y = _toy()
    est = DeepEnsembleRegressor(8, num_members=3, epochs=2).fit(x, y)
    out = est.predict_members(x[:5]).double()
    mu, var = out[..., :1], torch.nn.functional.softplus(out[..., 1:]) + 1e-6
    pred = est.predict(x[:5])
    assert isinstance(pred, RegressionPrediction)
    torch.testing.assert_close(pred.mean, mu.mean(0))
    # sigma_*^2 = mean(sigma_m^2 + mu_m^2) - mu_*^2
    torch.testing.assert_close(pred.variance, (var + mu**2).mean(0) - mu.mean(0) ** 2)
    assert pred.component_weights.shape == (5, 3)


def test_members_differ_and_learn():
    x, y = _toy(200)
    est = DeepEnsembleRegressor(32, num_members=3, epochs=60, batch_size=50, lr=1e-2).fit(x, y)
    out = est.predict_members(x)
    assert not torch.allclose(out[0], out[1])
    pred = est.predict(x)
    assert float(((pred.mean - y) ** 2).mean()) < 0.15
    # epistemic variance grows away from the data
    far = est.predict(torch.full((1, 2), 8.0))
    assert float(far.epistemic_var) > float(pred.epistemic_var.mean())


def test_adversarial_training_and_fit_many():
    x, y = _toy(60)
    est = DeepEnsembleRegressor(8, num_members=2, epochs=2, adversarial=True, epsilon=0.05)
    fitted = est.fit_many([(x, y), (x + 1, y)])
    assert len(fitted) == 2 and all(len(f.members_) == 2 for f in fitted)
    assert fitted[0].members_[0] is not fitted[1].members_[0]
    assert math.isfinite(fitted[0].histories_[0]["loss"][-1])


def test_bad_input():
    x, y = _toy(20)
    with pytest.raises(ValueError, match=r"'num_members' parameter of DeepEnsembleRegressor "
                                         r"must be an int >= 1\. Got 0 instead\."):
        DeepEnsembleRegressor(num_members=0).fit(x, y)
    with pytest.raises(NotFittedError, match="DeepEnsembleRegressor"):
        DeepEnsembleRegressor().predict(x)
    with pytest.raises(ValueError, match="2 \\* O"):
        DeepEnsemble(lambda: nn.Linear(2, 1), 2, epochs=1).fit(x, y)


# --------------------------------------------------------------------------- one mixture module
def test_classification_ensemble_is_the_ensemble_module(tmp_path):
    """DeepEnsemble(task="classification") and dunno.ensemble.EnsembleClassifier are one
    concept: to_module() gives the module whose softmax is predict_proba (and predict's
    probs), and the module round-trips through dunno.checkpoints."""
    from dunno import nets
    from dunno.checkpoints import load_model, save_checkpoint
    from dunno.ensemble import EnsembleClassifier, mixture_log_probs

    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 1, 8, 8, generator=g)
    labels = torch.arange(48) % 3
    est = DeepEnsemble(lambda: nets.create("lenet5", 1, 3, input_size=8), 2,
                       task="classification", epochs=1, batch_size=16).fit(x, labels)
    module = est.to_module()
    assert isinstance(module, EnsembleClassifier) and module.num_members == 2
    assert not module.training
    xt = torch.rand(10, 1, 8, 8, generator=g)
    with torch.no_grad():
        log_probs = module(xt)  # (N, C) float32
    probs = est.predict_proba(xt)  # (N, C) float64
    assert probs.dtype == torch.float64 and probs.shape == (10, 3)
    torch.testing.assert_close(log_probs.softmax(-1).double(), probs, rtol=0, atol=1e-6)
    torch.testing.assert_close(log_probs.exp().double(), probs, rtol=0, atol=1e-6)
    pred = est.predict(xt)
    torch.testing.assert_close(pred.probs, probs, rtol=0, atol=1e-12)
    torch.testing.assert_close(pred.samples, torch.softmax(est.predict_members(xt).double(), -1))
    # the members' own logits agree, and the mixture is the one formula
    with torch.no_grad():
        torch.testing.assert_close(module.member_logits(xt), est.predict_members(xt),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(mixture_log_probs(module.member_logits(xt)), log_probs)
    # copies: training the module does not change the estimator
    assert all(a is not b for a, b in zip(module.members, est.members_, strict=True))

    path = save_checkpoint(tmp_path / "ensemble.pt", module, arch="ensemble",
                           config=module.config)
    back = load_model(path)
    assert isinstance(back, EnsembleClassifier) and back.num_members == 2
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(xt), log_probs, rtol=0, atol=0)


def test_to_module_and_predict_proba_are_for_classification():
    x, y = _toy(40)
    est = DeepEnsembleRegressor(8, num_members=2, epochs=1).fit(x, y)
    with pytest.raises(ValueError, match="task='classification'"):
        est.to_module()
    with pytest.raises(ValueError, match="task='classification'"):
        est.predict_proba(x)
    with pytest.raises(NotFittedError, match="DeepEnsemble"):
        DeepEnsemble(lambda: nn.Linear(2, 3), 2, task="classification").to_module()
