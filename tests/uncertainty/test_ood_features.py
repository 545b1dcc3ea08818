"""Feature-space detectors: Mahalanobis with the pseudo-inverse (against Lee et al.'s
scikit-learn recipe), relative Mahalanobis, ViM and NNGuide (hand-worked values and numpy /
scikit-learn re-implementations), and the exact top-k search they share with kNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from sklearn.covariance import EmpiricalCovariance
from torch import nn

from dunno import nets
from uncertainty.ood import (
    Mahalanobis,
    ModelOutputs,
    NNGuide,
    RelativeMahalanobis,
    ViM,
    mahalanobis_score,
    make_detector,
    nnguide_score,
    relative_mahalanobis_score,
    vim_score,
)
from uncertainty.ood.knn import knn_score, normalize_features, top_similarities
from uncertainty.ood.nnguide import nnguide_bank
from uncertainty.ood.suite import resolve_detectors
from uncertainty.ood.vim import vim_default_dim

pytestmark = pytest.mark.one_thread


def _outputs(x, y=None, logits=None):
    return ModelOutputs(features=torch.as_tensor(x),
                        labels=None if y is None else torch.as_tensor(y),
                        logits=None if logits is None else torch.as_tensor(logits))


def _singular_features(seed, classes=3, per_class=4, dim=12, dead=4):
    """Fewer examples per class (and in all: N - C < F) than dimensions, one dead unit."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, dim)).repeat(per_class, 0)
    x = rng.normal(size=(classes * per_class, dim)) * rng.uniform(0.1, 10, size=dim) + centres
    x[:, dead] = 0.0
    return x, np.repeat(np.arange(classes), per_class), rng


# --------------------------------------------------------------------------- pseudo-inverse
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mahalanobis_pinv_matches_lee_et_al_sklearn_recipe(seed):
    """deep_Mahalanobis_detector: EmpiricalCovariance(assume_centered=False) fitted on the
    class-centred features; its precision_ (scipy's pinvh) is the inverse used."""
    x, y, rng = _singular_features(seed)
    means = np.stack([x[y == c].mean(0) for c in range(3)])
    precision = EmpiricalCovariance(assume_centered=False).fit(x - means[y]).precision_
    query = rng.normal(scale=5.0, size=(25, x.shape[1]))  # fires the dead unit too
    expected = np.min([np.einsum("nf,fg,ng->n", query - m, precision, query - m)
                       for m in means], axis=0)

    det = Mahalanobis().fit_outputs(_outputs(x, y))
    assert det.rank_ == 12 - 3 - 0 and det.jitter_ == 0.0  # rank N - C = 9 of 12
    np.testing.assert_allclose(det.precision_.numpy(), precision,
                               rtol=0, atol=1e-6 * np.abs(precision).max())
    got = det.score_outputs(_outputs(query)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # the pure function is the same pseudo-inverse
    cov = torch.tensor((x - means[y]).T @ (x - means[y]) / len(x))
    np.testing.assert_allclose(mahalanobis_score(torch.tensor(query), torch.tensor(means),
                                                 cov).numpy(), expected, rtol=1e-6)


def test_dead_unit_adds_nothing_with_the_pinv_and_1e10_with_the_jitter():
    x, y, _ = _singular_features(3, per_class=30, dim=6, dead=2)  # full rank but the dead unit
    pinv = Mahalanobis().fit_outputs(_outputs(x, y))
    jitter = Mahalanobis(inverse="jitter").fit_outputs(_outputs(x, y))
    assert pinv.rank_ == 5 and jitter.jitter_ > 0
    q = np.array(x[:3])
    fired = q.copy()
    fired[:, 2] = 1.0
    base = pinv.score_outputs(_outputs(q))
    torch.testing.assert_close(pinv.score_outputs(_outputs(fired)), base)  # ignored
    torch.testing.assert_close(jitter.score_outputs(_outputs(q)), base, rtol=1e-6, atol=1e-9)
    assert (jitter.score_outputs(_outputs(fired)) > 1e10).all()  # 1 / (1e-12 * mean variance)


def test_mahalanobis_checks_inverse_and_epsilon_is_score_time():
    with pytest.raises(ValueError, match="'inverse' parameter of Mahalanobis must be one of "
                                         "'pinv', 'jitter'. Got 'inv' instead."):
        Mahalanobis(inverse="inv").fit_outputs(_outputs(np.zeros((4, 2)), [0, 0, 1, 1]))
    x, y, _ = _singular_features(4, per_class=10, dim=5)
    det = Mahalanobis().fit_outputs(_outputs(x, y))
    variant = det.fitted_variant(Mahalanobis(epsilon=0.01))
    assert variant is not None and variant.epsilon == 0.01 and variant.means_ is det.means_


class DeadUnitNet(nn.Module):
    """ToyNet-like: features = a linear map whose unit 3 is dead (always 0), head on x_0."""

    def __init__(self, dim=6):
        super().__init__()
        self.body = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 2)
        with torch.no_grad():
            self.body.weight.copy_(torch.eye(dim))
            self.body.weight[3] = 0.0
            self.body.bias.zero_()
            self.head.weight.zero_()
            self.head.weight[0, 0], self.head.weight[1, 0] = -2.0, 2.0
            self.head.bias.zero_()

    def features(self, x):
        return torch.tanh(self.body(x))

    def forward(self, x):
        return self.head(self.features(x))


def test_mahalanobis_input_preprocessing_with_the_pseudo_inverse():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=g)
    x = 0.3 * torch.randn(200, 6, generator=g)
    x[:, 0] += 2.0 * y - 1.0
    model = DeadUnitNet().eval()
    plain = Mahalanobis(model).fit((x, y))
    pre = Mahalanobis(model, epsilon=0.02).fit((x, y))
    assert plain.rank_ == 5 and pre.needs == {"input"}
    test = 0.5 * torch.randn(50, 6, generator=g)
    s_plain, s_pre = plain.score(test), pre.score(test)
    assert torch.isfinite(s_pre).all()
    # the step moves every input towards its closest class mean: distances go down
    assert (s_pre <= s_plain + 1e-9).float().mean() > 0.95 and (s_pre < s_plain).any()


# --------------------------------------------------------------------------- relative Mahalanobis
def test_relative_mahalanobis_by_hand():
    """1-D: classes {-3, -1} and {1, 3}: means -2, 2, tied variance 1; all data: mean 0,
    variance 5. A second, dead unit is ignored by both pseudo-inverses."""
    x = np.array([[-3.0, 0], [-1, 0], [1, 0], [3, 0]])
    det = RelativeMahalanobis().fit_outputs(_outputs(x, [0, 0, 1, 1]))
    query = np.array([[0.0, 0], [2, 0], [10, 0], [0, 7]])
    # min_k (q - mu_k)^2 / 1 - q^2 / 5
    expected = [4 - 0, 0 - 4 / 5, 64 - 100 / 5, 4 - 0]
    np.testing.assert_allclose(det.score_outputs(_outputs(query)).numpy(), expected,
                               rtol=1e-12)
    np.testing.assert_allclose(det.background_mean_.numpy(), [0, 0], atol=1e-15)
    np.testing.assert_allclose(det.background_covariance_.numpy(), [[5, 0], [0, 0]])


def test_relative_mahalanobis_against_sklearn():
    x, y, rng = _singular_features(5, per_class=40, dim=7)
    query = rng.normal(scale=4.0, size=(30, 7))
    means = np.stack([x[y == c].mean(0) for c in range(3)])
    prec = EmpiricalCovariance().fit(x - means[y]).precision_
    prec0 = EmpiricalCovariance().fit(x).precision_  # one Gaussian, labels ignored
    md = np.min([np.einsum("nf,fg,ng->n", query - m, prec, query - m) for m in means], 0)
    d0 = query - x.mean(0)
    expected = md - np.einsum("nf,fg,ng->n", d0, prec0, d0)
    det = RelativeMahalanobis().fit_outputs(_outputs(x, y))
    np.testing.assert_allclose(det.score_outputs(_outputs(query)).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(
        relative_mahalanobis_score(torch.tensor(query), det.means_, det.covariance_,
                                   det.background_mean_, det.background_covariance_).numpy(),
        expected, rtol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        RelativeMahalanobis().fit_outputs(_outputs(x))


# --------------------------------------------------------------------------- ViM
class LinearHead(nn.Module):
    """features(x) = x, head = the given linear map."""

    def __init__(self, weight, bias):
        super().__init__()
        self.body = nn.Identity()
        self.head = nn.Linear(weight.shape[1], weight.shape[0]).double()
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight))
            self.head.bias.copy_(torch.as_tensor(bias))

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(x)


def test_vim_by_hand():
    """W = I, b = (1, -1): origin o = (-1, 1). Offset features X = (+-2, +-0.5): principal
    axis e1 (D = 1), residual e2 of norm 0.5 each; mean max logit (2 + 0.5 + 2 - 0.5) / 4 = 1,
    so alpha = 1 / 0.5 = 2."""
    model = LinearHead(np.eye(2), np.array([1.0, -1.0]))
    offset = np.array([[2, 0.5], [-2, 0.5], [2, -0.5], [-2, -0.5]])
    feats = offset + np.array([-1.0, 1.0])
    logits = feats + np.array([1.0, -1.0])  # W f + b
    det = ViM(model, dim=1).fit_outputs(_outputs(feats, logits=logits))
    np.testing.assert_allclose(det.origin_.numpy(), [-1, 1], atol=1e-15)
    assert det.alpha_ == pytest.approx(2.0, rel=1e-12) and det.dim_ == 1
    np.testing.assert_allclose(det.eigenvalues_.numpy(), [4, 0.25], rtol=1e-12)
    query = np.array([[-1.0, 4.0], [2.0, 1.0]])  # o + (0, 3): residual 3; o + (3, 0): none
    q_logits = query + np.array([1.0, -1.0])  # (0, 3) and (3, 0)
    expected = [2 * 3 - math.log(1 + math.exp(3)), 0 - math.log(math.exp(3) + 1)]
    got = det.score_outputs(_outputs(query, logits=q_logits)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # the log-odds of the virtual class's softmax probability
    p0 = softmax(np.c_[[6.0, 0.0], q_logits], axis=1)[:, 0]
    np.testing.assert_allclose(got, np.log(p0 / (1 - p0)), rtol=1e-10)


def test_vim_against_the_papers_numpy_code():
    rng = np.random.default_rng(0)
    n, f, c, dim = 300, 10, 4, 5
    w, b = rng.normal(size=(c, f)), rng.normal(size=c)
    feats = rng.normal(size=(n, f)) * rng.uniform(0.2, 3, size=f) + 1.0
    query = rng.normal(scale=2.0, size=(40, f))
    logits, q_logits = feats @ w.T + b, query @ w.T + b

    u = -np.linalg.pinv(w) @ b
    cov = EmpiricalCovariance(assume_centered=True).fit(feats - u).covariance_
    eig_vals, eig_vecs = np.linalg.eig(cov)
    ns = np.ascontiguousarray(eig_vecs.T[np.argsort(eig_vals * -1)[dim:]].T)
    alpha = logits.max(axis=-1).mean() / np.linalg.norm((feats - u) @ ns, axis=-1).mean()
    vlogit = np.linalg.norm((query - u) @ ns, axis=-1) * alpha
    expected = -(logsumexp(q_logits, axis=-1) - vlogit)  # the code's score, negated

    det = ViM(LinearHead(w, b), dim=dim).fit_outputs(_outputs(feats, logits=logits))
    assert det.alpha_ == pytest.approx(alpha, rel=1e-10)
    got = det.score_outputs(_outputs(query, logits=q_logits)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    np.testing.assert_allclose(vim_score(torch.tensor(query), torch.tensor(q_logits),
                                         det.origin_, det.residual_basis_, det.alpha_).numpy(),
                               expected, rtol=1e-9)
    # the default D is F // 2 for small F
    assert ViM(LinearHead(w, b)).fit_outputs(_outputs(feats, logits=logits)).dim_ == 5


def test_vim_default_dims_and_refusals():
    assert [vim_default_dim(f) for f in (84, 512, 768, 2047, 2048, 1)] == [42, 256, 512, 512,
                                                                          1000, 1]
    model = LinearHead(np.eye(3), np.zeros(3))
    feats = torch.randn(20, 3, dtype=torch.float64)
    out = _outputs(feats, logits=feats + 1)
    with pytest.raises(ValueError, match="'dim' parameter of ViM must be less than the number "
                                         "of features \\(3\\)"):
        ViM(model, dim=3).fit_outputs(out)
    with pytest.raises(ValueError, match="'dim' parameter of ViM must be None or an int >= 1"):
        ViM(model, dim=0).fit_outputs(out)
    with pytest.raises(ValueError, match="without a model"):
        ViM(dim=1).fit_outputs(out)
    with pytest.raises(ValueError, match="'layer' parameter of ViM must be None"):
        make_detector("vim", model, layer="body")

    class NoHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def features(self, x):
            return x

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ValueError, match=r"'model' argument of ViM \('vim'\).*no linear "
                                         "classifier head"):
        make_detector("vim", NoHead())
    # "all" leaves ViM out where it cannot score, instead of failing the run
    lenet = nets.create("lenet5", 1, 3, input_size=8)
    assert "vim" in resolve_detectors("all", model=lenet)
    assert "vim" not in resolve_detectors("all", model=lenet, layer="fc1")
    assert "vim" not in resolve_detectors("all", model=NoHead())


# --------------------------------------------------------------------------- NNGuide
def test_nnguide_by_hand():
    """Bank (fraction 1): f = (2, 0), (0, 5), (-1, 0) with confidences ln 4, ln 2, ln 8, i.e.
    rows (ln 4, 0), (0, ln 2), (-ln 8, 0). Query (1, 1), logits (0, ln 3): s = ln 4,
    normalised (1, 1)/sqrt 2; the top-2 products are (ln 4 + ln 2)/sqrt 2, so
    score = -ln 4 * 3 ln 2 / (2 sqrt 2)."""
    feats = np.array([[2.0, 0], [0, 5], [-1, 0]])
    logits = np.log([[3.0, 1], [1, 1], [7, 1]])
    det = NNGuide(k=2, bank_fraction=1.0).fit_outputs(_outputs(feats, logits=logits))
    ln2 = math.log(2)
    np.testing.assert_allclose(det.bank_.numpy(), [[2 * ln2, 0], [0, ln2], [-3 * ln2, 0]],
                               rtol=1e-12)
    got = det.score_outputs(_outputs(np.array([[1.0, 1]]), logits=np.log([[1.0, 3]])))
    assert got.item() == pytest.approx(-2 * ln2 * 3 * ln2 / (2 * math.sqrt(2)), rel=1e-12)


def test_nnguide_against_numpy_and_its_bank_subset():
    rng = np.random.default_rng(1)
    feats = np.abs(rng.normal(size=(2000, 6)))
    logits = rng.normal(scale=3, size=(2000, 4))
    query, q_logits = np.abs(rng.normal(size=(30, 6))), rng.normal(scale=3, size=(30, 4))
    det = NNGuide(k=10, seed=3).fit_outputs(_outputs(feats, logits=logits))
    assert det.bank_.shape == (20, 6)  # 1% of 2000, the paper's bank
    index = torch.randperm(2000, generator=torch.Generator().manual_seed(3))[:20].sort().values
    assert torch.equal(det.bank_index_, index)
    sub, sub_logits = feats[index.numpy()], logits[index.numpy()]
    bank = sub / np.linalg.norm(sub, axis=1, keepdims=True) * logsumexp(sub_logits, 1)[:, None]
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    guidance = np.sort(q @ bank.T, axis=1)[:, ::-1][:, :10].mean(1)
    expected = -(logsumexp(q_logits, axis=1) * guidance)
    got = det.score_outputs(_outputs(query, logits=q_logits)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(
        nnguide_score(torch.tensor(query), torch.tensor(q_logits),
                      nnguide_bank(torch.tensor(sub), torch.tensor(sub_logits)), 10).numpy(),
        expected, rtol=1e-10)
    # a small fit set keeps at least k rows; fewer than k examples are refused
    small = NNGuide(k=10).fit_outputs(_outputs(feats[:50], logits=logits[:50]))
    assert small.bank_.shape == (10, 6)
    with pytest.raises(ValueError, match="'k' parameter of NNGuide must be at most the number "
                                         "of training features \\(5\\)"):
        NNGuide(k=10).fit_outputs(_outputs(feats[:5], logits=logits[:5]))
    with pytest.raises(ValueError, match="'bank_fraction' parameter of NNGuide must be a float "
                                         "in \\(0, 1\\]"):
        NNGuide(bank_fraction=0).fit_outputs(_outputs(feats, logits=logits))


# --------------------------------------------------------------------------- the search
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_top_similarities_are_the_float64_top_k(dtype):
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(500, 7, generator=g).relu().to(dtype)
    bank[:, 3] = 0  # a unit dead in every bank row
    bank[100:140] = bank[7]  # duplicated rows: exact ties, searched again in float64
    # near-ties that float32 products cannot order: rows a few float32 ulps apart (float32),
    # or closer than float32 resolves (float64)
    step = 2e-11 if dtype == torch.float64 else torch.finfo(torch.float32).eps
    ulps = torch.randint(-2, 3, (60, 7), generator=g).to(dtype)
    bank[200:260] = bank[9] * (1 + ulps * step)
    queries = torch.randn(60, 7, generator=g).to(dtype)
    queries[:5] = bank[7]
    queries[5:10] = bank[9]
    exact = queries.double() @ bank.double().T
    for k in (1, 9, 45, 500):
        values, index = top_similarities(queries, bank, k, chunk=16)
        np.testing.assert_allclose(values.numpy(), exact.topk(k, dim=1).values.numpy(),
                                   rtol=0, atol=1e-13)
        # the indices point at rows with those products
        np.testing.assert_allclose(exact.gather(1, index).numpy(), values.numpy(), atol=1e-13)
    with pytest.raises(ValueError, match="'k' parameter must be in \\[1, 500\\]"):
        top_similarities(queries, bank, 501)
    # where float32 products may run in TF32 the bound widens, and the result stays exact
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        values, _ = top_similarities(queries, bank, 9)
    finally:
        torch.set_float32_matmul_precision(before)
    np.testing.assert_allclose(values.numpy(), exact.topk(9, dim=1).values.numpy(), atol=1e-13)


def test_knn_score_is_the_exact_kth_neighbour_of_float32_features():
    g = torch.Generator().manual_seed(1)
    bank = torch.nn.functional.normalize(torch.randn(3000, 16, generator=g).relu(), dim=1)
    query = torch.randn(200, 16, generator=g).relu()
    q = normalize_features(query)
    index = (q.double() @ bank.double().T).topk(20, dim=1).indices[:, -1]
    expected = (q - bank[index]).double().norm(dim=1)
    torch.testing.assert_close(knn_score(query, bank, 20, normalized_bank=True), expected,
                               rtol=0, atol=0)
