"""GEN, KL matching, SHE and GradNorm: hand-worked scores on tiny tensors, limiting cases,
GradNorm's per-example gradients against a loop and the closed form, and bad input. (The
registry contract in test_ood.py runs over them as well.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import expit, softmax
from scipy.stats import entropy as kl_divergence
from torch import nn

from dunno import nets
from uncertainty.ood import (
    GEN,
    SHE,
    GradNorm,
    KLMatching,
    ModelOutputs,
    class_log_templates,
    extract_outputs,
    gen_score,
    gradnorm_score,
    kl_matching_score,
    make_detector,
    run_ood,
    she_score,
)
from uncertainty.ood.suite import resolve_detectors

pytestmark = pytest.mark.one_thread


# --------------------------------------------------------------------------- GEN
def _gen_numpy(p, gamma, m):
    top = np.sort(p, axis=1)[:, ::-1][:, :m]
    return (top**gamma * (1 - top) ** gamma).sum(1)


def test_gen_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]])
    logits = torch.tensor(np.log(p))
    # first row, gamma = 0.1, all three classes:
    # 0.7^.1 0.3^.1 + 0.2^.1 0.8^.1 + 0.1^.1 0.9^.1
    row0 = (0.21**0.1) + (0.16**0.1) + (0.09**0.1)
    np.testing.assert_allclose(gen_score(logits, 0.1, 3)[0].item(), row0, rtol=1e-12)
    for gamma in (0.1, 0.5, 1.0):
        for m in (1, 2, 3):
            np.testing.assert_allclose(gen_score(logits, gamma, m).numpy(),
                                       _gen_numpy(p, gamma, m), rtol=1e-12)
    # M beyond C is M = C; gamma = 1 with one class kept is p(1 - p)
    torch.testing.assert_close(gen_score(logits, 0.1, 100), gen_score(logits, 0.1, 3))
    np.testing.assert_allclose(gen_score(logits, 1.0, 1).numpy(), [0.7 * 0.3, 0.5 * 0.5])


def test_gen_limits_and_defaults():
    # uniform over C classes: C (1/C)^g (1 - 1/C)^g, the largest value
    c = 7
    uniform = gen_score(torch.zeros(1, c), 0.1, c).item()
    assert uniform == pytest.approx(c * (1 / c * (1 - 1 / c)) ** 0.1, rel=1e-12)
    rng = np.random.default_rng(0)
    assert (gen_score(torch.tensor(rng.normal(size=(50, c))), 0.1, c) < uniform).all()
    det = GEN()
    assert (det.gamma, det.top_m) == (0.1, 100)
    # a confident prediction: 1 - p_(1) = p_(2) = expit(-50) ~ 2e-22 is below float64's
    # resolution of p_(1), yet (1 - p_(1))^0.1 = e^-5: G = 2 (p1 p2)^0.1, not (p2 (1 - p2))^0.1
    p2 = expit(-50.0)
    got = gen_score(torch.tensor([[50.0, 0.0]]), 0.1, 2).item()
    assert got == pytest.approx(2 * ((1 - p2) * p2) ** 0.1, rel=1e-12)
    assert got == pytest.approx(2 * math.exp(-5.0), rel=1e-12)
    # a single class: p = 1, nothing uncertain
    assert gen_score(torch.tensor([[3.0]]), 0.1, 5).item() == 0.0


@pytest.mark.parametrize("params, match", [
    ({"gamma": 0.0}, r"'gamma' parameter of GEN must be a float in \(0, 1\]"),
    ({"gamma": 1.5}, "'gamma' parameter of GEN"),
    ({"top_m": 0}, "'top_m' parameter of GEN must be an int >= 1"),
    ({"top_m": 2.0}, "'top_m' parameter of GEN must be an int"),
])
def test_gen_parameters_are_checked(params, match):
    with pytest.raises(ValueError, match=match):
        make_detector("gen", **params).score_outputs(ModelOutputs(logits=torch.zeros(2, 3)))


# --------------------------------------------------------------------------- KL matching
def test_kl_matching_by_hand():
    fit_p = np.array([[0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4]])
    # predicted classes 0, 0, 1, 1; class 2 is never predicted and gets no template
    det = KLMatching().fit_outputs(ModelOutputs(logits=torch.tensor(np.log(fit_p))))
    assert det.template_classes_.tolist() == [0, 1]
    d = np.array([[0.7, 0.2, 0.1], [0.15, 0.6, 0.25]])
    np.testing.assert_allclose(det.templates_.numpy(), d, rtol=1e-12)
    query = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]])
    expected = np.array([min(kl_divergence(q, t) for t in d) for q in query])
    got = det.score_outputs(ModelOutputs(logits=torch.tensor(np.log(query)))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15)
    assert got[0] == pytest.approx(0.0, abs=1e-15)  # the template itself
    # the pure function with the fitted log-templates agrees
    np.testing.assert_allclose(
        kl_matching_score(torch.tensor(np.log(query)), det.log_templates_).numpy(), got)


def test_kl_matching_templates_stay_finite_for_confident_fits():
    """softmax([800, 0, 0]) has entries e^-800, below float64: a template averaged in
    probability space would hold zeros and every other posterior would be infinitely far."""
    log_t, classes = class_log_templates(torch.tensor([[800.0, 0.0, 0.0], [800.0, 0.0, 0.0]]))
    assert classes.tolist() == [0]
    np.testing.assert_allclose(log_t.numpy(), [[0.0, -800.0, -800.0]], atol=1e-12)
    # KL(u || d_0) = sum_c (1/3)(log 1/3 - log d_0c) = -log 3 + 1600/3
    got = kl_matching_score(torch.zeros(1, 3), log_t).item()
    assert got == pytest.approx(-math.log(3) + 1600 / 3, rel=1e-12)


def test_kl_matching_needs_no_labels():
    det = KLMatching()
    assert not det.fit_needs_labels and det.fit_needs == {"logits"}
    assert "kl-matching" in resolve_detectors("all", model=None, labels=False)


# --------------------------------------------------------------------------- SHE
def test_she_by_hand():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # predictions 0, 0, 1, 0: the last example (a 1) is wrong and is not memorised
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    det = SHE().fit_outputs(ModelOutputs(logits=logits, features=feats, labels=labels))
    np.testing.assert_allclose(det.patterns_.numpy(), [[2.0, 0.0], [0.0, 2.0]])
    assert det.pattern_counts_.tolist() == [2, 1] and det.fallback_classes_ == []
    query = ModelOutputs(features=torch.tensor([[1.0, 1.0], [2.0, 3.0]]),
                         logits=torch.tensor([[0.0, 5.0], [1.0, -1.0]]))  # predicted 1, 0
    # -<(1, 1), (0, 2)> = -2 ; -<(2, 3), (2, 0)> = -4
    assert det.score_outputs(query).tolist() == [-2.0, -4.0]
    assert she_score(query.features, query.logits, det.patterns_).tolist() == [-2.0, -4.0]


def test_she_class_never_classified_right_and_refusals():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    logits = torch.tensor([[1.0, 0.0]] * 4)  # always predicts 0: class 1 is never right
    outputs = ModelOutputs(logits=logits, features=feats, labels=torch.tensor([0, 0, 1, 1]))
    det = SHE().fit_outputs(outputs)
    # class 0 from its correct examples; class 1 (no T_1) from all its examples, and listed
    np.testing.assert_allclose(det.patterns_.numpy(), [[2.0, 0.0], [0.0, 3.0]])
    assert det.pattern_counts_.tolist() == [2, 2]
    assert det.fallback_classes_ == [1]
    full = SHE().fit_outputs(ModelOutputs(logits=torch.eye(2).repeat(2, 1), features=feats,
                                          labels=torch.tensor([0, 1, 0, 1])))
    assert full.fallback_classes_ == []
    with pytest.raises(ValueError, match=r"needs at least one training example of every "
                                         r"class; classes \[1\] have none"):
        SHE().fit_outputs(ModelOutputs(logits=logits, features=feats,
                                       labels=torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="SHE stores one pattern per class .* no labels"):
        SHE().fit_outputs(ModelOutputs(logits=logits, features=feats))
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\]"):
        SHE().fit_outputs(ModelOutputs(logits=logits, features=feats,
                                       labels=torch.tensor([0, 1, 2, 0])))
    with pytest.raises(ValueError, match="fitted on 2 classes; the logits have 3"):
        full.score_outputs(ModelOutputs(logits=torch.zeros(2, 3), features=torch.zeros(2, 3)))
    assert SHE.fit_needs_labels and "she" not in resolve_detectors("all", model=None,
                                                                    labels=False)


# --------------------------------------------------------------------------- GradNorm
class TwoPart(nn.Module):
    """float64 ``features`` (a small MLP) and a linear ``head``."""

    def __init__(self, head=None, classes=4, dim=6, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(5, dim), nn.Tanh())
        self.head = head if head is not None else nn.Linear(dim, classes)
        self.double()

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def _loop_gradnorm(model, x, temperature, weight):
    """The paper's recipe, one example at a time with torch.autograd.grad."""
    out = []
    for i in range(len(x)):
        logits = model(x[i:i + 1])  # (1, C)
        c = logits.shape[1]
        loss = -torch.log_softmax(logits / temperature, dim=1).mean() - math.log(c)
        (g,) = torch.autograd.grad(loss, weight)
        out.append(-g.abs().sum())
    return torch.stack(out).detach()


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_gradnorm_equals_a_per_example_loop_and_the_closed_form(temperature):
    model = TwoPart().eval()
    x = torch.randn(13, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    got = GradNorm(model, temperature=temperature).score(x)
    loop = _loop_gradnorm(model, x, temperature, model.head.weight)
    torch.testing.assert_close(got, loop, rtol=1e-10, atol=1e-10)
    # closed form: (1/T) (sum_c |p_c - 1/C|) (sum_j |h_j|), h = features(x)
    with torch.no_grad():
        h = model.features(x).numpy()
        p = softmax(model(x).numpy() / temperature, axis=1)
    closed = -np.abs(p - 1 / p.shape[1]).sum(1) * np.abs(h).sum(1) / temperature
    np.testing.assert_allclose(got.numpy(), closed, rtol=1e-10, atol=1e-10)
    # the pure function on the head's inputs, without a bias the same recipe
    w = torch.randn(3, 6, dtype=torch.float64)
    z = h @ w.numpy().T
    q = softmax(z / temperature, axis=1)
    np.testing.assert_allclose(
        gradnorm_score(torch.tensor(h), w, None, temperature).numpy(),
        -np.abs(q - 1 / 3).sum(1) * np.abs(h).sum(1) / temperature, rtol=1e-10, atol=1e-10)


def test_gradnorm_blocks_and_a_sequential_head(monkeypatch):
    import uncertainty.ood.gradnorm as gradnorm

    model = TwoPart(head=nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))).eval()
    x = torch.randn(9, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    loop = _loop_gradnorm(model, x, 1.0, model.head[-1].weight)
    whole = GradNorm(model).score(x)
    torch.testing.assert_close(whole, loop, rtol=1e-10, atol=1e-10)
    monkeypatch.setattr(gradnorm, "BLOCK_ELEMENTS", 2 * 15)  # blocks of two examples
    assert torch.equal(GradNorm(model).score(x), whole)
    # the detector joins the shared pass: it reads features, and needs the model to score
    out = extract_outputs(model, x, needs=("features",))
    assert torch.equal(GradNorm(model).score_outputs(out), whole)
    with pytest.raises(ValueError, match="built without one. Pass it as GradNorm"):
        GradNorm().score_outputs(out)
    with pytest.raises(ValueError, match="model.head takes 6 inputs per example; the features "
                                         "give 4"):
        GradNorm(model).score_outputs(ModelOutputs(features=torch.zeros(2, 4)))


class NoHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 4)
        self.out = nn.Linear(4, 2)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.out(self.features(x))


def test_gradnorm_refuses_models_it_cannot_differentiate():
    with pytest.raises(ValueError, match=r"'model' argument of GradNorm \('gradnorm'\) cannot "
                                         "be scored: NoHead has no 'features' method with a "
                                         "'head'"):
        make_detector("gradnorm", NoHead())
    bad_head = TwoPart(head=nn.Sequential(nn.Linear(6, 4), nn.ReLU()))
    with pytest.raises(ValueError, match="nn.Linear \\(or an nn.Sequential ending in one\\)"):
        GradNorm(bad_head).score(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"'layer' parameter of GradNorm \('gradnorm'\) must be "
                                         r"None. Got 'body' instead.*not the head's input"):
        make_detector("gradnorm", TwoPart(), layer="body")
    with pytest.raises(ValueError, match="'temperature' parameter of GradNorm"):
        GradNorm(TwoPart(), temperature=0.0).score(torch.zeros(2, 5, dtype=torch.float64))
    # "all" leaves GradNorm out where it cannot run, and keeps the others
    lenet = nets.create("lenet5", 1, 3, input_size=8)
    assert "gradnorm" in resolve_detectors("all", model=lenet)
    with_layer = resolve_detectors("all", model=lenet, layer="conv2")
    assert "gradnorm" not in with_layer and "ddu" in with_layer
    assert "gradnorm" not in resolve_detectors("all", model=NoHead())


# --------------------------------------------------------------------------- the suite
def test_the_new_detectors_share_the_suites_single_pass():
    from dunno.data import load_dataset

    torch.manual_seed(0)
    model = nets.create("lenet5", 1, 5, input_size=8)
    train = load_dataset("digits:classes=0-4", "train")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):  # full batch, a few seconds: a classifier worth detecting OOD with
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.x), train.y).backward()
        opt.step()
    model.eval()
    names = "gen,kl-matching,she,gradnorm"
    table = run_ood(model, "digits:classes=0-4", "gaussian-noise", names, batch_size=100)
    assert table.detectors == names.split(",") and len(table.rows) == 4
    assert table.own_passes == [] and len(table.timings["forward"]) == 3
    assert table.accuracy > 0.9
    assert all(r["auroc"] > 0.5 for r in table.rows), table.rows
