"""The activation-shaping OOD detectors (ReAct, DICE, ASH-P / ASH-B / ASH-S, SCALE): hand-worked
values on tiny tensors, numpy re-implementations of the reference algorithms, the undefined and
overflowing cases, and the model checks. The registry contract (sign, shared pass == own pass,
devices, bad input) runs over them in test_ood.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from torch import nn

from dunno import nets
from uncertainty.ood import (
    ASHB,
    ASHP,
    ASHS,
    DICE,
    SCALE,
    ModelOutputs,
    ReAct,
    ash_features,
    ash_score,
    dice_mask,
    dice_score,
    extract_outputs,
    make_detector,
    react_score,
    react_threshold,
    scale_features,
    scale_score,
)
from uncertainty.ood._shaping import kept_count, percentile
from uncertainty.ood.suite import resolve_detectors

pytestmark = pytest.mark.one_thread

SHAPING = ("react", "dice", "ash-p", "ash-b", "ash-s", "scale")


def _linear(weight, bias, dtype=torch.float64) -> nn.Linear:
    weight = torch.as_tensor(weight, dtype=dtype)
    head = nn.Linear(weight.shape[1], weight.shape[0], dtype=dtype)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(torch.as_tensor(bias, dtype=dtype))
    return head


class HeadNet(nn.Module):
    """``features(x) = x`` and a given linear head (float64 unless told)."""

    def __init__(self, weight, bias, dtype=torch.float64):
        super().__init__()
        self.head = _linear(weight, bias, dtype)

    def features(self, x):
        return x

    def forward(self, x):
        return self.head(self.features(x))


def _energy(logits, temperature=1.0):
    z = np.asarray(logits, dtype=np.float64)
    return -temperature * logsumexp(z / temperature, axis=1)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


# --------------------------------------------------------------------------- percentile
def test_percentile_is_numpys_linear_percentile():
    values = _t([[0.5, 2, 3], [1, 0, 4]])  # sorted: 0, 0.5, 1, 2, 3, 4
    assert percentile(values, 50) == 1.5  # rank 2.5: 1 + 0.5 * (2 - 1)
    assert percentile(values, 90) == 3.5  # rank 4.5
    assert percentile(values, 0) == 0.0 and percentile(values, 100) == 4.0
    assert percentile(_t([7.0]), 30) == 7.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 11))
    for q in (1, 12.5, 50, 85, 90, 99.9):
        assert percentile(torch.tensor(x), q) == pytest.approx(np.percentile(x, q), abs=1e-12)


def test_kept_count_rounds_like_the_reference_code():
    assert kept_count(84, 90, "ASH") == 84 - 76  # round(75.6) = 76
    assert kept_count(10, 25, "ASH") == 8  # round(2.5) = 2 (half to even), as np.round
    assert kept_count(5, 60, "ASH") == 2
    with pytest.raises(ValueError, match=r"'percentile' parameter of ASH-S prunes all 84 "
                                         r"features.*below 99\.40"):
        kept_count(84, 99.5, "ASH-S")


# --------------------------------------------------------------------------- ReAct
def test_react_by_hand():
    feats = _t([[0.5, 2, 3], [1, 0, 4]])
    head = _linear([[1, 0, 1], [0, 1, -1]], [0.5, 0])
    assert react_threshold(feats, 50) == 1.5
    # clipped at 1.5: [[0.5, 1.5, 1.5], [1, 0, 1.5]] -> logits [[2.5, 0], [3, -1.5]]
    expected = _energy([[2.5, 0.0], [3.0, -1.5]])
    np.testing.assert_allclose(react_score(feats, head, 1.5).numpy(), expected, rtol=1e-14)
    np.testing.assert_allclose(react_score(feats, head, 1.5, temperature=2.0).numpy(),
                               _energy([[2.5, 0.0], [3.0, -1.5]], 2.0), rtol=1e-14)
    # the detector: threshold from the fit features, energy of the re-applied head
    model = HeadNet([[1, 0, 1], [0, 1, -1]], [0.5, 0])
    det = ReAct(model, percentile=50).fit_outputs(ModelOutputs(features=feats))
    assert det.threshold_ == 1.5
    np.testing.assert_allclose(det.score_outputs(ModelOutputs(features=feats)).numpy(),
                               expected, rtol=1e-14)
    np.testing.assert_allclose(det.score(feats.numpy()), expected, rtol=1e-14)
    # a threshold above every activation leaves the energy score of the model itself
    np.testing.assert_allclose(react_score(feats, head, 10.0).numpy(),
                               _energy(head(feats).detach().numpy()), rtol=1e-14)


def test_react_clips_signed_features_from_above_only():
    head = _linear([[1, 1]], [0.0])
    got = react_score(_t([[-2.0, 5.0]]), head, 1.0)  # min(h, 1) = (-2, 1): logit -1
    assert got.item() == pytest.approx(1.0)  # -log(e^-1)


def test_react_refuses_a_zero_threshold():
    feats = torch.zeros(10, 4, dtype=torch.float64)
    feats[0, 0] = 3.0  # 97.5% of the activations are zero
    with pytest.raises(ValueError, match=r"'percentile' parameter of ReAct gives a clipping "
                                         r"threshold of 0: 97\.5% of the training activations"):
        ReAct(percentile=90).fit_outputs(ModelOutputs(features=feats))
    assert ReAct(percentile=99).fit_outputs(ModelOutputs(features=feats)).threshold_ > 0


# --------------------------------------------------------------------------- ASH and SCALE
ROWS = [[4, 1, 0, 3, 2],  # k = 2 at p = 60: keeps 4 and 3; s1 = 10, s2 = 7
        [0, 0, 0, 0, 0],  # nothing fires: stays zero (the energy of the bias)
        [1, 1, 1, 0, 0]]  # a tie at the cut: the lower indices 0, 1 are kept; s1 = 3, s2 = 2
HEAD = ([[1, 0, 0, 0, 0], [0, 0, 0, 1, 1]], [0.0, 0.5])  # class 0 reads h_0, class 1 h_3 + h_4
E = math.exp(10 / 7)


@pytest.mark.parametrize("variant, shaped, logits", [
    ("p", [[4, 0, 0, 3, 0], [0] * 5, [1, 1, 0, 0, 0]],
     [[4, 3.5], [0, 0.5], [1, 0.5]]),
    ("b", [[5, 0, 0, 5, 0], [0] * 5, [1.5, 1.5, 0, 0, 0]],
     [[5, 5.5], [0, 0.5], [1.5, 0.5]]),
    ("s", [[4 * E, 0, 0, 3 * E, 0], [0] * 5, [math.exp(1.5), math.exp(1.5), 0, 0, 0]],
     [[4 * E, 3 * E + 0.5], [0, 0.5], [math.exp(1.5), 0.5]]),
])
def test_ash_by_hand(variant, shaped, logits):
    feats = _t(ROWS)
    np.testing.assert_allclose(ash_features(feats, 60, variant).numpy(), shaped, rtol=1e-14)
    head = _linear(*HEAD)
    np.testing.assert_allclose(ash_score(feats, head, 60, variant).numpy(), _energy(logits),
                               rtol=1e-14)
    cls = {"p": ASHP, "b": ASHB, "s": ASHS}[variant]
    det = cls(HeadNet(*HEAD), percentile=60)
    assert det.fit(feats) is det and not det.requires_fit
    np.testing.assert_allclose(det.score(feats).numpy(), _energy(logits), rtol=1e-14)


def test_scale_by_hand():
    feats = _t(ROWS)
    e3 = math.exp(1.5)
    shaped = [[4 * E, E, 0, 3 * E, 2 * E], [0] * 5, [e3, e3, e3, 0, 0]]
    np.testing.assert_allclose(scale_features(feats, 60).numpy(), shaped, rtol=1e-14)
    expected = _energy([[4 * E, 5 * E + 0.5], [0, 0.5], [e3, 0.5]])
    np.testing.assert_allclose(scale_score(feats, _linear(*HEAD), 60).numpy(), expected,
                               rtol=1e-14)
    np.testing.assert_allclose(SCALE(HeadNet(*HEAD), percentile=60).score(feats).numpy(),
                               expected, rtol=1e-14)


def _ash_reference(h: np.ndarray, p: float, variant: str) -> np.ndarray:
    """The reference algorithm row by row in numpy: top-k by a stable sort, then shape."""
    n = h.shape[1]
    k = n - int(np.round(n * p / 100.0))
    out = np.zeros_like(h) if variant != "scale" else h.copy()
    for i, row in enumerate(h):
        keep = np.argsort(-row, kind="stable")[:k]
        s1, s2 = row.sum(), row[keep].sum()
        if variant == "p":
            out[i, keep] = row[keep]
        elif variant == "b":
            out[i, keep] = s1 / k
        elif variant == "s":
            out[i, keep] = row[keep] * np.exp(s1 / s2)
        else:
            out[i] = row * np.exp(s1 / s2)
    return out


@pytest.mark.parametrize("p", [65.0, 85.0, 90.0])
def test_ash_and_scale_match_a_numpy_reference(p):
    rng = np.random.default_rng(1)
    h = np.maximum(rng.normal(size=(30, 20)), 0.0)  # post-ReLU, with ties at zero
    w, b = rng.normal(size=(4, 20)), rng.normal(size=4)
    head = _linear(w, b)
    for variant in ("p", "b", "s", "scale"):
        ref = _ash_reference(h, p, variant)
        got = (scale_features(torch.tensor(h), p) if variant == "scale"
               else ash_features(torch.tensor(h), p, variant))
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
        score = (scale_score(torch.tensor(h), head, p) if variant == "scale"
                 else ash_score(torch.tensor(h), head, p, variant))
        np.testing.assert_allclose(score.numpy(), _energy(ref @ w.T + b), rtol=1e-12)


def test_ash_s_and_scale_refuse_an_undefined_factor():
    # signed features: the two kept activations (0.5, -0.5) sum to 0 while the row does not
    feats = _t([[0.5, -0.5, -1.0]])  # k = 3 - round(0.9) = 2 at p = 30
    head = _linear([[1, 1, 1]], [0.0])
    for score in (lambda: ash_score(feats, head, 30, "s"), lambda: scale_score(feats, head, 30)):
        with pytest.raises(ValueError, match=r"row 0 of 'features' sum to s2 = 0 while the row "
                                             r"is not zero.*non-negative \(post-ReLU\)"):
            score()
    # ASH-P and ASH-B are defined as written for signed features: prune, fill s1 / k
    np.testing.assert_allclose(ash_features(_t([[-1.0, 2.0, -3.0]]), 50, "b").numpy(),
                               [[0.0, -2.0, 0.0]])  # k = 1 keeps 2.0; fill -2 / 1


def test_a_sharpening_factor_that_overflows_is_refused_not_scored_inf():
    feats = torch.ones(3, 200)  # k = 200 - round(199) = 1 at p = 99.5: s1 / s2 = 200
    w, b = [[1.0] + [0.0] * 199, [0.0, 1.0] + [0.0] * 198], [0.0, 0.0]
    with pytest.raises(ValueError, match=r"ASH-S: the head gave non-finite logits for 3 of 3 "
                                         r"inputs.*Lower the 'percentile'"):
        ash_score(feats, _linear(w, b, torch.float32), 99.5, "s")
    with pytest.raises(ValueError, match="SCALE: the head gave non-finite logits"):
        SCALE(HeadNet(w, b, torch.float32), percentile=99.5).score(feats)
    # in float64 e^200 fits: the kept unit 0 carries e^200, class 0 reads it
    got = ash_score(feats.double(), _linear(w, b), 99.5, "s")
    np.testing.assert_allclose(got.numpy(), [-math.exp(200)] * 3, rtol=1e-12)


# --------------------------------------------------------------------------- DICE
def test_dice_by_hand():
    w, b = [[1, 2, 0.5], [0.1, -1, 3]], [0.0, 1.0]
    mean = _t([3, 1, 0.5])
    # contributions W * mean = [[3, 2, 0.25], [0.3, -1, 1.5]]; their median is 0.9
    mask = dice_mask(_t(w), mean, 50)
    assert mask.tolist() == [[True, True, False], [False, False, True]]
    feats = _t([[1, 2, 1], [2, 0, 4]])
    # logits with the kept weights: [[1 + 4, 3 + 1], [2 + 0, 12 + 1]]
    expected = _energy([[5, 4], [2, 13]])
    np.testing.assert_allclose(dice_score(feats, _t(w), _t(b), mean, 50).numpy(), expected,
                               rtol=1e-14)
    det = DICE(HeadNet(w, b), sparsity=50).fit_outputs(
        ModelOutputs(features=_t([[2, 0, 1], [4, 2, 0]])))  # mean (3, 1, 0.5)
    np.testing.assert_allclose(det.mean_features_.numpy(), mean.numpy())
    np.testing.assert_allclose(det.score_outputs(ModelOutputs(features=feats)).numpy(), expected,
                               rtol=1e-14)
    # sparsity is read when scoring: a fitted copy at another sparsity shares the fit
    other = det.fitted_variant(DICE(det.model, sparsity=10))
    assert other.mean_features_ is det.mean_features_ and other.sparsity == 10


def test_dice_matches_a_numpy_reference():
    rng = np.random.default_rng(2)
    train = np.maximum(rng.normal(size=(50, 12)), 0.0)
    test = np.maximum(rng.normal(size=(20, 12)), 0.0)
    w, b = rng.normal(size=(5, 12)), rng.normal(size=5)
    contrib = train.mean(0)[None, :] * w
    for p in (70, 90):
        masked = w * (contrib > np.percentile(contrib, p))
        assert masked.astype(bool).sum() == pytest.approx((100 - p) / 100 * 60, abs=1)
        det = DICE(HeadNet(w, b), sparsity=p).fit(torch.tensor(train))
        np.testing.assert_allclose(det.score(test), _energy(test @ masked.T + b), rtol=1e-12)


def test_dice_refuses_an_empty_mask_and_a_non_linear_head():
    with pytest.raises(ValueError, match="DICE keeps no weight"):
        dice_mask(_t([[1, 2], [3, 4]]), _t([0, 0]), 90)
    model = HeadNet([[1, 0]], [0.0])
    model.head = nn.Sequential(model.head)
    with pytest.raises(ValueError, match=r"'model' argument of DICE \('dice'\) cannot be scored: "
                                         r"its head is a Sequential, not a torch.nn.Linear"):
        make_detector("dice", model)
    # ReAct, ASH and SCALE re-apply any head module
    assert make_detector("react", model).fit(_t([[1, 2], [3, 4]])).score(_t([[1, 2]])).shape \
        == (1,)


# --------------------------------------------------------------------------- the model checks
class NoHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def features(self, x):
        return x

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize("name", SHAPING)
def test_models_without_the_head_input_are_refused(name):
    cls = type(make_detector(name)).__name__
    with pytest.raises(ValueError, match=rf"'model' argument of {cls} \('{name}'\) cannot be "
                                         r"scored: NoHead has no 'head' module.*model.head"):
        make_detector(name, NoHead())
    with pytest.raises(ValueError, match=r"has no 'features' method and no 'head' module"):
        make_detector(name, nn.Linear(3, 2))
    lenet = nets.create("lenet5", 1, 3, input_size=8)
    with pytest.raises(ValueError, match=rf"'layer' parameter of {cls} \('{name}'\) must be "
                                         r"None. Got 'fc2' instead.*head's input"):
        make_detector(name, lenet, layer="fc2")
    with pytest.raises(ValueError, match="must be None"):  # also when scoring given outputs
        make_detector(name, layer="fc2").score_outputs(ModelOutputs(features=torch.ones(2, 3)))
    det = make_detector(name)  # no model: the head is missing when scoring
    if det.fit_needs:
        det.fit_outputs(ModelOutputs(features=torch.rand(5, 3) + 0.1))
    with pytest.raises(ValueError, match=rf"{cls} re-applies the classifier's head.*built "
                                         r"without a model"):
        det.score_outputs(ModelOutputs(features=torch.rand(2, 3)))


def test_all_runs_them_only_where_the_features_are_the_heads_input():
    lenet = nets.create("lenet5", 1, 3, input_size=8)
    assert set(SHAPING) <= set(resolve_detectors("all", model=lenet))
    assert not set(SHAPING) & set(resolve_detectors("all", model=lenet, layer="fc2"))
    assert not set(SHAPING) & set(resolve_detectors("all", model=NoHead()))
    names = resolve_detectors("all", model=HeadNet([[1, 0]], [0.0]))
    head_is_sequential = HeadNet([[1, 0]], [0.0])
    head_is_sequential.head = nn.Sequential(head_is_sequential.head)
    assert "dice" in names
    assert "dice" not in resolve_detectors("all", model=head_is_sequential)


@pytest.mark.parametrize("name, params, match", [
    ("react", {"percentile": 0}, r"'percentile' parameter of ReAct must be a float in \(0, 100\)"),
    ("ash-s", {"percentile": 100}, r"'percentile' parameter of ASHS must be a float in \(0, 100\)"),
    ("ash-p", {"percentile": "90"}, r"'percentile' parameter of ASHP must be a float"),
    ("scale", {"percentile": float("nan")}, r"'percentile' parameter of SCALE must be a float"),
    ("dice", {"sparsity": 100.0}, r"'sparsity' parameter of DICE must be a float in \(0, 100\)"),
    ("ash-b", {"temperature": 0}, r"'temperature' parameter of ASHB must be a float in \(0"),
])
def test_hyper_parameters_are_checked(name, params, match):
    with pytest.raises(ValueError, match=match):
        make_detector(name, **params).check_params()


@pytest.mark.parametrize("name", SHAPING)
def test_shared_pass_equals_own_pass_exactly_on_a_lenet(name):
    torch.manual_seed(0)
    lenet = nets.create("lenet5", 1, 3, input_size=8).eval()
    x_fit, x_test = torch.rand(64, 1, 8, 8), torch.rand(40, 1, 8, 8)
    own = make_detector(name, lenet).fit(x_fit, batch_size=16).score(x_test, batch_size=16)
    shared = make_detector(name, lenet).fit_outputs(extract_outputs(lenet, x_fit, batch_size=16))
    assert torch.equal(shared.score_outputs(extract_outputs(lenet, x_test, batch_size=16)), own)


def test_the_head_runs_in_eval_mode_and_is_restored():
    model = HeadNet([[1, 0, 2], [0, 1, 1]], [0.0, 0.0])
    model.head = nn.Sequential(nn.Dropout(0.5), model.head).train()
    feats = _t([[1, 2, 3], [3, 0, 1]])
    det = ReAct(model, percentile=50).fit_outputs(ModelOutputs(features=feats))
    a = det.score_outputs(ModelOutputs(features=feats))
    assert torch.equal(a, det.score_outputs(ModelOutputs(features=feats)))  # no dropout noise
    assert model.head.training
