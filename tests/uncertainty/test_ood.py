"""OOD detectors: the contract over the registry, each score against an independent formula,
and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, mahalanobis
from scipy.special import logsumexp, softmax
from scipy.stats import multivariate_normal
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dunno import nets
from dunno.errors import NotFittedError
from evaluation.metrics import auroc
from uncertainty.ood import (
    DDU,
    DETECTORS,
    KNN,
    MSP,
    ODIN,
    Combined,
    Mahalanobis,
    ModelOutputs,
    RaPP,
    available_detectors,
    conformal_neg_log_p,
    ddu_score,
    energy_score,
    entropy_score,
    extract_outputs,
    feature_norm_score,
    knn_score,
    mahalanobis_score,
    make_detector,
    max_logit_score,
    msp_score,
    odin_score,
    register_detector,
)
from uncertainty.ood._base import OODDetector

D = 8  # input = feature dimension of the toy classifier


class ToyNet(nn.Module):
    """``features(x) = x`` (a linear layer set to the identity) and a head reading ``x_0``.

    Class 0 lives at ``x_0 = -3``, class 1 at ``x_0 = +3``; logits ``(-2 x_0, 2 x_0)``.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(D, D)
        self.head = nn.Linear(D, 2)
        with torch.no_grad():
            self.body.weight.copy_(torch.eye(D))
            self.body.bias.zero_()
            self.head.weight.zero_()
            self.head.weight[0, 0], self.head.weight[1, 0] = -2.0, 2.0
            self.head.bias.zero_()

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


class NoFeatures(nn.Module):
    """A classifier without ``features``: hook ``fc1`` instead."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, 5)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DropoutToyNet(ToyNet):
    """ToyNet plus a dropout branch on ``x_1..x_7`` with fixed random weights: in-distribution
    the ``x_0`` term (+-12) dominates every pass; near the origin the passes disagree."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.dropout = nn.Dropout(0.5)
        self.rest = nn.Linear(D - 1, 2, bias=False)
        with torch.no_grad():
            self.rest.weight.copy_(3 * torch.randn(2, D - 1, generator=g))

    def forward(self, x):
        return super().forward(x) + self.rest(self.dropout(x[:, 1:]))


class ToyEnsemble(nn.Module):
    """Five ToyNets whose logits add different random functions of ``x_1..x_7``: they agree
    where ``x_0`` is far from 0 and disagree near the origin."""

    def __init__(self, members=5):
        super().__init__()
        g = torch.Generator().manual_seed(12)
        self.base = ToyNet()
        self.register_buffer("w", 1.5 * torch.randn(members, D - 1, 2, generator=g))

    def member_logits(self, x):
        return self.base(x) + torch.einsum("nd,mdc->mnc", x[:, 1:], self.w)  # (M, N, 2)

    def forward(self, x):
        lp = torch.log_softmax(self.member_logits(x), -1)
        return torch.logsumexp(lp, 0) - math.log(lp.shape[0])


class ReluToyNet(nn.Module):
    """ToyNet's classes behind ReLU features, for the activation-shaping detectors (which assume
    post-ReLU features and re-apply ``head``): ``features_j = relu(+-x_0 + x_{1 + j mod 7})``,
    ``+`` for units 0-7 (class 1), ``-`` for 8-15 (class 0); the head weighs each class's units
    by distinct weights ``(j + 1) / 18`` (distinct, so DICE's contributions do not tie)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(D, 2 * D)
        self.head = nn.Linear(2 * D, 2)
        with torch.no_grad():
            self.body.weight.zero_()
            self.body.bias.zero_()
            self.head.weight.zero_()
            self.head.bias.zero_()
            for j in range(2 * D):
                self.body.weight[j, 0] = 1.0 if j < D else -1.0
                self.body.weight[j, 1 + j % (D - 1)] = 1.0
                self.head.weight[1 if j < D else 0, j] = (j % D + 1) / 18

    def features(self, x):
        return torch.relu(self.body(x))

    def forward(self, x):
        return self.head(self.features(x))


#: Detectors that need a model of a particular kind for the contract.
CONTRACT_MODELS = {"mc-dropout": DropoutToyNet, "ensemble-disagreement": ToyEnsemble,
                   **{name: ReluToyNet for name in DETECTORS if DETECTORS[name].reads_head}}


def _toy_data(n, seed):
    """In-distribution: two tight clusters on the x_0 axis. OOD: near the origin with more
    spread in the other dimensions: low logits, a smaller feature norm, far from both
    clusters, hard to reconstruct."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.3 * torch.randn(n, D, generator=g)
    x[:, 0] += 6.0 * y - 3.0
    ood = 0.6 * torch.randn(n, D, generator=g)
    ood[:, 0] = 0.3 * torch.randn(n, generator=g)
    return x, y, ood


#: Small settings so the contract runs in seconds (defaults are for MNIST-sized data).
CONTRACT_PARAMS = {
    "knn": {"k": 5},
    "rapp": {"hidden": (6, 3), "epochs": 60, "batch_size": 64},
    "combined": {"components": ("knn", "energy", ("rapp", {"hidden": (6, 3), "epochs": 30}))},
    "odin": {"epsilon": 0.01},
    "mc-dropout": {"num_samples": 30},
    "nnguide": {"k": 5, "bank_fraction": 0.5},
}


#: Detectors that score through the classifier (the density-based ones have their own
#: contract tests in test_ood_density.py).
CLASSIFIER_DETECTORS = [n for n in available_detectors() if not DETECTORS[n].uses_density]


def _make(name, model):
    cls = DETECTORS[name]
    if name in CONTRACT_MODELS:
        device = next(model.parameters()).device
        model = CONTRACT_MODELS[name]().to(device).eval()
    return make_detector(name, model if cls.uses_model else None, **CONTRACT_PARAMS.get(name, {}))


pytestmark = pytest.mark.one_thread


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    x, y, ood = _toy_data(400, seed=1)
    x_test, _, ood_test = _toy_data(200, seed=2)
    return ToyNet().eval(), (x, y), x_test, ood_test


# --------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", CLASSIFIER_DETECTORS)
def test_contract_shape_finite_sign(name, toy):
    model, (x, y), x_test, ood_test = toy
    det = _make(name, model)
    assert det.fit([(x[i:i + 100], y[i:i + 100]) for i in range(0, 400, 100)]) is det
    s_in, s_out = det.score(x_test), det.score(ood_test)
    for s in (s_in, s_out):
        assert s.shape == (200,) and s.dtype == torch.float64
        assert torch.isfinite(s).all()
    # higher = more OOD, for every detector
    assert auroc(s_in, s_out) > 0.95, name


@pytest.mark.parametrize("name", CLASSIFIER_DETECTORS)
def test_contract_outputs_path_equals_score(name, toy):
    model, (x, y), x_test, _ = toy
    det = _make(name, model).fit(_loader(x, y))
    shared = _make(name, model)
    # the shared pass runs the detector's own model where the detector re-applies its head
    source = shared.model if shared.reads_head else model
    train = extract_outputs(source, _loader(x, y), needs=("logits", "features", "input"))
    shared.fit_outputs(train)
    test = extract_outputs(source, x_test, needs=("logits", "features", "input"))
    torch.testing.assert_close(shared.score_outputs(test), det.score(x_test, batch_size=64))


def _loader(x, y, batch=64):
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]


@pytest.mark.parametrize("name", CLASSIFIER_DETECTORS)
def test_contract_declares_needs_and_params(name):
    cls = DETECTORS[name]
    det = cls()
    assert det.name == name and cls.reference
    assert det.needs and det.needs <= {"logits", "features", "input"}
    assert det.fit_needs <= {"logits", "features", "input"}
    assert repr(det) == f"{cls.__name__}()"
    assert make_detector(name).get_params() == det.get_params()


@pytest.mark.parametrize("name", [n for n in CLASSIFIER_DETECTORS
                                  if DETECTORS[n]()._state_names])
def test_fit_required_before_score(name, toy):
    model, _, x_test, _ = toy
    det = _make(name, model)
    with pytest.raises(NotFittedError, match="fit"):
        det.score(x_test)
    with pytest.raises(NotFittedError):
        det.score_outputs(extract_outputs(model, x_test, needs=("logits", "features", "input")))


def test_logit_detectors_need_no_fit(toy):
    model, _, x_test, _ = toy
    for name in ("msp", "maxlogit", "entropy", "energy", "featurenorm", "odin"):
        assert make_detector(name, model).score(x_test).shape == (200,)


# --------------------------------------------------------------------------- direct formulas
@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(3)
    return 4 * torch.randn(50, 7, generator=g)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 7.0])
def test_msp_and_energy_against_formulas(logits, temperature):
    z = logits.double().numpy()
    np.testing.assert_allclose(msp_score(logits, temperature).numpy(),
                               -softmax(z / temperature, axis=1).max(1), rtol=1e-12)
    np.testing.assert_allclose(energy_score(logits, temperature).numpy(),
                               -temperature * logsumexp(z / temperature, axis=1), rtol=1e-12)


def test_maxlogit_entropy_featurenorm_against_formulas(logits):
    z = logits.double().numpy()
    np.testing.assert_allclose(max_logit_score(logits).numpy(), -z.max(1))
    p = softmax(z, axis=1)
    np.testing.assert_allclose(entropy_score(logits).numpy(),
                               -(p * np.log(np.clip(p, 1e-300, None))).sum(1), atol=1e-12)
    np.testing.assert_allclose(feature_norm_score(logits).numpy(), -np.linalg.norm(z, axis=1))


def test_entropy_limits():
    assert entropy_score(torch.zeros(2, 5)).tolist() == pytest.approx([math.log(5)] * 2)
    assert entropy_score(torch.tensor([[1e4, 0.0, 0.0]])).item() == pytest.approx(0, abs=1e-12)


def _gaussians(n_per_class=300, dim=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    cov = a @ a.T + 0.5 * np.eye(dim)
    means = rng.normal(scale=3.0, size=(classes, dim))
    x = np.concatenate([rng.multivariate_normal(m, cov, n_per_class) for m in means])
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


def test_mahalanobis_against_scipy():
    x, y = _gaussians()
    query = np.random.default_rng(1).normal(scale=4.0, size=(40, x.shape[1]))
    means = np.stack([x[y == c].mean(0) for c in range(3)])
    centred = x - means[y]
    cov = centred.T @ centred / len(x)  # the tied maximum-likelihood estimate
    vi = np.linalg.inv(cov)
    expected = np.array([min(mahalanobis(q, m, vi) ** 2 for m in means) for q in query])

    det = Mahalanobis().fit_outputs(ModelOutputs(features=torch.tensor(x), labels=torch.tensor(y)))
    assert det.jitter_ == 0.0
    got = det.score_outputs(ModelOutputs(features=torch.tensor(query)))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(
        mahalanobis_score(torch.tensor(query), torch.tensor(means), torch.tensor(cov)).numpy(),
        expected, rtol=1e-9)
    # float32 features are promoted to float64
    got32 = det.score_outputs(ModelOutputs(features=torch.tensor(query, dtype=torch.float32)))
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-5)


def test_mahalanobis_shrinkage_formula():
    x, y = _gaussians(seed=4)
    means = np.stack([x[y == c].mean(0) for c in range(3)])
    centred = x - means[y]
    cov = centred.T @ centred / len(x)
    shrunk = 0.7 * cov + 0.3 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    det = Mahalanobis(shrinkage=0.3).fit_outputs(
        ModelOutputs(features=torch.tensor(x), labels=torch.tensor(y)))
    np.testing.assert_allclose(det.covariance_.numpy(), shrunk, rtol=1e-10)


def test_mahalanobis_and_ddu_survive_singular_covariance():
    """Dead ReLU units (a constant-zero feature) and a class with fewer examples than
    dimensions make the covariances singular: fitting must still succeed."""
    x, y = _gaussians(n_per_class=4, dim=6, classes=2, seed=5)
    x[:, 2] = 0.0
    outputs = ModelOutputs(features=torch.tensor(x), labels=torch.tensor(y))
    maha = Mahalanobis().fit_outputs(outputs)  # the pseudo-inverse: the dead unit is dropped
    jittered = Mahalanobis(inverse="jitter").fit_outputs(outputs)
    ddu = DDU(reg=0.0).fit_outputs(outputs)
    assert maha.jitter_ == 0 and maha.rank_ == 5
    assert jittered.jitter_ > 0 and ddu.jitter_ > 0
    q = ModelOutputs(features=torch.randn(10, 6, dtype=torch.float64))
    for det in (maha, jittered, ddu):
        assert torch.isfinite(det.score_outputs(q)).all()


def test_ddu_matches_analytic_log_density():
    """Two classes with known Gaussians: the score is -log(N(f; mu_0, S_0) + N(f; mu_1, S_1))
    with the fitted (sample) parameters exactly, and close to the true parameters' value."""
    rng = np.random.default_rng(0)
    mu = [np.array([-2.0, 0.0]), np.array([2.0, 1.0])]
    cov = [np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[0.4, -0.1], [-0.1, 0.8]])]
    n = 20000
    x = np.concatenate([rng.multivariate_normal(mu[c], cov[c], n) for c in range(2)])
    y = np.repeat([0, 1], n)
    det = DDU(reg=0.0).fit_outputs(ModelOutputs(features=torch.tensor(x), labels=torch.tensor(y)))
    query = rng.normal(scale=2.0, size=(30, 2))
    got = det.score_outputs(ModelOutputs(features=torch.tensor(query))).numpy()

    fitted = [multivariate_normal(x[y == c].mean(0), np.cov(x[y == c].T)) for c in range(2)]
    exact = -logsumexp([f.logpdf(query) for f in fitted], axis=0)
    np.testing.assert_allclose(got, exact, rtol=1e-10)
    true = -logsumexp([multivariate_normal(mu[c], cov[c]).logpdf(query) for c in range(2)], 0)
    np.testing.assert_allclose(got, true, rtol=0.02)
    # the pure function agrees
    np.testing.assert_allclose(
        ddu_score(torch.tensor(query), det.means_, det.covariances_).numpy(), got, rtol=1e-12)


def test_ddu_jitter_search_follows_the_paper():
    x = torch.zeros(6, 3, dtype=torch.float64)  # all-equal features: zero covariance
    x[:, 0] = torch.arange(6.0)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    det = DDU(reg=0.0).fit_outputs(ModelOutputs(features=x, labels=y))
    assert det.jitter_ == torch.finfo(torch.float64).tiny  # the second value DDU tries
    assert DDU(reg=0.1).fit_outputs(ModelOutputs(features=x, labels=y)).jitter_ == 0.0


def test_knn_equals_brute_force_cdist():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(300, 6))
    query = rng.normal(size=(70, 6)) * rng.uniform(0.1, 5, size=(70, 1))
    nb = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    nq = query / np.linalg.norm(query, axis=1, keepdims=True)
    dist = np.sort(cdist(nq, nb), axis=1)
    for k in (1, 7, 300):
        got = knn_score(torch.tensor(query), torch.tensor(bank), k, chunk=16).numpy()
        np.testing.assert_allclose(got, dist[:, k - 1], rtol=1e-10, atol=1e-12)
    det = KNN(k=7).fit_outputs(ModelOutputs(features=torch.tensor(bank)))
    np.testing.assert_allclose(det.score_outputs(ModelOutputs(features=torch.tensor(query))),
                               dist[:, 6], rtol=1e-10)
    # duplicates of the bank are at distance exactly 0 for k=1
    assert knn_score(torch.tensor(bank[:5]), torch.tensor(bank), 1).abs().max() < 1e-7


def test_knn_bank_size_and_k_checks():
    feats = torch.randn(50, 4)
    det = KNN(k=3, bank_size=20).fit_outputs(ModelOutputs(features=feats))
    assert det.bank_.shape == (20, 4)
    with pytest.raises(ValueError, match="'k' parameter of KNN must be at most"):
        KNN(k=60).fit_outputs(ModelOutputs(features=feats))
    with pytest.raises(ValueError, match="'k' parameter of KNN must be an int >= 1"):
        KNN(k=0).fit_outputs(ModelOutputs(features=feats))


# --------------------------------------------------------------------------- ODIN
class SmoothNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x)


def test_odin_without_perturbation_at_t1_equals_msp():
    model = SmoothNet()
    x = torch.randn(64, D)
    odin = ODIN(model, temperature=1.0, epsilon=0.0).score(x)
    msp = MSP(model).score(x)
    torch.testing.assert_close(odin, msp, rtol=0, atol=0)
    torch.testing.assert_close(odin.argsort(), msp.argsort())
    torch.testing.assert_close(odin_score(model, x, temperature=1.0, epsilon=0.0), msp)


def test_odin_perturbation_raises_the_top_softmax():
    """A small step against the gradient of -log S_yhat increases S_yhat: scores go down."""
    model = SmoothNet()
    x = torch.randn(64, D)
    plain = odin_score(model, x, temperature=10.0, epsilon=0.0)
    stepped = odin_score(model, x, temperature=10.0, epsilon=1e-3)
    assert (stepped <= plain + 1e-12).all() and (stepped < plain).float().mean() > 0.9


def test_odin_tuning_uses_only_given_data():
    model = SmoothNet()
    x_in = torch.randn(100, D)
    det = ODIN(model, tune=True, epsilons=(0.0, 0.001, 0.01), tune_size=50)
    with pytest.raises(NotFittedError):
        det.score(x_in)
    det.fit(x_in)
    # in-distribution-only criterion: the largest step raises the mean MSP most; T is kept
    assert det.epsilon_ == 0.01 and det.temperature_ == 1000.0
    x_val_ood = 3 * torch.randn(100, D)
    det.fit(x_in, ood_loader=x_val_ood)
    assert det.temperature_ in det.temperatures and det.epsilon_ in det.epsilons
    with pytest.raises(ValueError, match="tune=False"):
        ODIN(model).fit(x_in, ood_loader=x_val_ood)


def test_mahalanobis_input_preprocessing_lowers_distances(toy):
    model, (x, y), x_test, _ = toy
    plain = Mahalanobis(model).fit(_loader(x, y))
    pre = Mahalanobis(model, epsilon=0.01).fit(_loader(x, y))
    assert pre.needs == {"input"} and plain.needs == {"features"}
    assert (pre.score(x_test) <= plain.score(x_test) + 1e-9).float().mean() > 0.95


# --------------------------------------------------------------------------- RaPP
class LinearAE(nn.Module):
    def __init__(self, components, mean):
        super().__init__()
        d, k = components.shape
        self.encoder = nn.Sequential(nn.Linear(d, k).double())
        self.decoder = nn.Linear(k, d).double()
        with torch.no_grad():
            self.encoder[0].weight.copy_(components.T)
            self.encoder[0].bias.copy_(-components.T @ mean)
            self.decoder.weight.copy_(components)
            self.decoder.bias.copy_(mean)


def test_rapp_on_pca_autoencoder_matches_closed_form():
    rng = np.random.default_rng(0)
    n, d, k = 500, 6, 2
    x = rng.normal(size=(n, d)) @ np.diag([5, 3, 1.5, 1, 0.5, 0.2]) @ np.linalg.qr(
        rng.normal(size=(d, d)))[0]
    m = x.mean(0)
    _, s, vt = np.linalg.svd(x - m, full_matrices=False)
    u_k, u_rest, s_rest = vt[:k].T, vt[k:].T, s[k:]
    query = rng.normal(scale=3.0, size=(25, d))
    proj = (query - m) @ u_rest  # (25, d-k)
    sap = ((query - m) - (query - m) @ u_k @ u_k.T) ** 2
    expected_sap, expected_nap = sap.sum(1), (proj**2 / s_rest**2).sum(1)

    ae = LinearAE(torch.tensor(u_k), torch.tensor(m))
    nap = RaPP(ae, epochs=0, rcond=1e-8).fit(torch.tensor(x))
    both = nap.scores(torch.tensor(query))
    np.testing.assert_allclose(both["sap"].numpy(), expected_sap, rtol=1e-8)
    np.testing.assert_allclose(both["nap"].numpy(), expected_nap, rtol=1e-6)
    assert nap.singular_values_.shape == (d - k,)  # the zero pathway differences dropped
    sap_det = RaPP(ae, mode="sap", epochs=0).fit(torch.tensor(x))
    np.testing.assert_allclose(sap_det.score(torch.tensor(query)).numpy(), expected_sap,
                               rtol=1e-8)


def test_rapp_rejects_a_classifier_and_bad_autoencoder():
    with pytest.raises(ValueError, match="pass model=None"):
        make_detector("rapp", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="'encoder' and 'decoder'"):
        RaPP(nn.Linear(2, 2)).fit(torch.randn(5, 2))


# --------------------------------------------------------------------------- combined
def test_conformal_p_values():
    ref = torch.arange(1.0, 100.0)  # 99 reference scores 1..99
    got = conformal_neg_log_p(torch.tensor([0.0, 50.0, 99.0, 120.0]), ref)
    assert got[0] == pytest.approx(0.0, abs=1e-12)  # p = (1 + 99) / 100
    assert got[1] == pytest.approx(-math.log(51 / 100))
    assert got[2] == pytest.approx(math.log(100 / 2))
    assert got[3] > math.log(100)  # extrapolated beyond the largest reference score
    assert (conformal_neg_log_p(torch.linspace(-5, 500, 200), ref).diff() >= 0).all()


def test_combined_shares_one_rapp_fit_and_fisher_sums(toy):
    model, (x, y), x_test, _ = toy
    rapp = {"hidden": (6, 3), "epochs": 5}
    det = Combined(model, components=("energy", ("rapp", rapp),
                                      ("rapp", {**rapp, "mode": "sap"})),
                   reduce="fisher").fit(_loader(x, y))
    labels = list(det.detectors_)
    assert labels == ["energy", "rapp(epochs=5,hidden=(6, 3))",
                      "rapp(epochs=5,hidden=(6, 3),mode=sap)"]
    assert det.detectors_[labels[1]].autoencoder_ is det.detectors_[labels[2]].autoencoder_
    outputs = extract_outputs(model, x_test, needs=("logits", "input"))
    parts = det.component_scores(outputs)
    torch.testing.assert_close(det.score_outputs(outputs), sum(parts.values()))
    det.reduce = "max"
    torch.testing.assert_close(det.score_outputs(outputs), torch.stack(list(parts.values()))
                               .amax(0))


def test_combined_rejects_bad_components(toy):
    with pytest.raises(ValueError, match="must list detectors"):
        Combined(components=("nope",)).fit(torch.zeros(4, D))
    with pytest.raises(ValueError, match="twice"):
        Combined(components=("knn", "knn"))._validate_params()


# --------------------------------------------------------------------------- features, errors
def test_extract_outputs_is_one_pass_for_backbones():
    model = nets.create("lenet5", 1, 3, input_size=8).eval()
    calls = {"features": 0, "forward": 0}
    features = model.features

    def counting_features(x):
        calls["features"] += 1
        return features(x)

    model.features = counting_features
    model.register_forward_pre_hook(lambda *a: calls.__setitem__("forward", calls["forward"] + 1))
    x = torch.rand(70, 1, 8, 8)
    out = extract_outputs(model, x, batch_size=32)
    assert calls == {"features": 3, "forward": 0}
    torch.testing.assert_close(out.logits, model.head(features(x)))


def test_layer_hook_gives_features_and_errors_name_the_model():
    model = NoFeatures().eval()
    x = torch.randn(10, D)
    with pytest.raises(ValueError, match="NoFeatures has no 'features' method.*layer="):
        KNN(model, k=2).fit(x)
    with pytest.raises(ValueError, match="must name a module of NoFeatures.*fc1"):
        KNN(model, k=2, layer="fc9").fit(x)
    out = extract_outputs(model, x, layer="fc1")
    torch.testing.assert_close(out.features, model.fc1(x))
    torch.testing.assert_close(out.logits, model(x))
    det = KNN(model, k=2, layer="act").fit(x)
    assert det.score(x).shape == (10,)
    # logit detectors never need features
    assert MSP(model).score(x).shape == (10,)
    # the default names itself and the component that needs features, and takes the layer
    with pytest.raises(ValueError, match=r"Combined \('combined', the default detector.*"
                       r"component 'featurenorm'.*no 'features' method.*layer="):
        make_detector("default", model)
    default = make_detector("default", model, layer="fc1")
    assert default._make_components()["featurenorm"].layer == "fc1"


def test_several_layers_give_their_spatially_averaged_outputs_concatenated():
    model = nets.create("resnet", 1, 3, input_size=8, depth=8, width=4).eval()
    x = torch.rand(9, 1, 8, 8)
    seen = {}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda m, a, out, name=name: seen.__setitem__(name, out)) for name in ("stages.1", "stem")]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    expected = torch.cat([seen["stages.1"].mean(dim=(2, 3)), seen["stem"].mean(dim=(2, 3))], 1)
    out = extract_outputs(model, x, layer=["stages.1", "stem"], batch_size=4)
    assert out.features.shape == (9, 8 + 4)  # (N, C_stages.1 + C_stem), in the order given
    torch.testing.assert_close(out.features, expected)
    torch.testing.assert_close(out.logits, logits)
    # the last stage, pooled, is exactly the backbone's own penultimate feature
    torch.testing.assert_close(extract_outputs(model, x, layer=("stages.2",)).features,
                               model.features(x).detach())
    # one name keeps the whole (flattened) map: 16 channels x 2 x 2
    assert extract_outputs(model, x, layer="stages.2").features.shape == (9, 64)
    det = DDU(model, layer=["stages.1", "stages.2"]).fit(_loader(x, torch.arange(9) % 3))
    assert det.means_.shape == (3, 8 + 16) and det.score(x).shape == (9,)


def test_a_grid_suffix_pools_a_layer_to_cells():
    model = nets.create("resnet", 1, 3, input_size=8, depth=8, width=4).eval()
    x = torch.rand(9, 1, 8, 8)
    seen = {}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda m, a, out, name=name: seen.__setitem__(name, out))
        for name in ("stages.0", "stages.2")]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    s0 = seen["stages.0"]  # (9, 4, 8, 8)
    # 2 x 2 cells by hand: mean of each 4 x 4 quadrant, channels first, cells row-major
    quadrants = s0.unflatten(2, (2, 4)).unflatten(4, (2, 4)).mean(dim=(3, 5))  # (9, 4, 2, 2)
    out = extract_outputs(model, x, layer=["stages.0@2", "stages.2"], batch_size=4)
    assert out.features.shape == (9, 4 * 4 + 16)
    torch.testing.assert_close(out.features[:, :16], quadrants.flatten(1))
    torch.testing.assert_close(out.features[:, 16:], seen["stages.2"].mean(dim=(2, 3)))
    # a grid on one name also pools; @1 in a list is the plain spatial average
    torch.testing.assert_close(extract_outputs(model, x, layer="stages.0@2").features,
                               quadrants.flatten(1))
    torch.testing.assert_close(extract_outputs(model, x, layer=["stages.2@1"]).features,
                               model.features(x).detach())
    # one module at two resolutions: both read from the same hooked output
    both = extract_outputs(model, x, layer=["stages.0@1", "stages.0@2"]).features
    torch.testing.assert_close(both, torch.cat([s0.mean(dim=(2, 3)), quadrants.flatten(1)], 1))
    with pytest.raises(ValueError, match=r"shape \(9, 3\); a pooling grid of 2"):
        extract_outputs(model, x, layer=["head@2"])


@pytest.mark.parametrize("layer, match", [
    ([], "non-empty list of module names"), (["stem", ""], "non-empty list"),
    (["stem@0"], "NAME@k with k an int >= 1"), ("stem@", "NAME@k"), ("stem@\u00b2", "NAME@k"),
    (3, "must be None, a module name"), (["stem", "stem"], "names a module twice"),
    (["stem", "nope"], "must name a module of ResNet"),
])
def test_bad_layer_lists_are_named(layer, match):
    model = nets.create("resnet", 1, 3, input_size=8, depth=8, width=4).eval()
    with pytest.raises(ValueError, match=match):
        KNN(model, k=2, layer=layer).fit(torch.rand(5, 1, 8, 8))


def test_bad_input_errors():
    model = ToyNet().eval()
    x = torch.randn(30, D)
    y = (x[:, 0] > 0).long()
    det = KNN(model, k=3).fit(_loader(x, y))
    with pytest.raises(ValueError, match="empty"):
        det.score(torch.zeros(0, D))
    with pytest.raises(TypeError, match="The 'x' argument of KNN.score must be a numpy array"):
        det.score("x.png")
    with pytest.raises(ValueError, match=r"needs \['features'\] but the outputs lack"):
        det.score_outputs(ModelOutputs(logits=torch.zeros(3, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        det.score_outputs(ModelOutputs(features=torch.full((2, D), float("nan"))))
    with pytest.raises(ValueError, match="without one"):
        MSP().score(x)
    fitted = Mahalanobis(model).fit(_loader(x, y))
    rapp = RaPP(hidden=(4, 2), epochs=1).fit(x)
    with pytest.raises(ValueError, match=r"fitted on inputs of shape \(8,\).*\(9,\)"):
        rapp.score(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="'temperature' parameter of Energy"):
        make_detector("energy", model, temperature=0).score(x)
    with pytest.raises(ValueError, match="Unknown parameter"):
        make_detector("knn", model, kk=3)
    with pytest.raises(ValueError, match="Unknown OOD detector"):
        make_detector("nope")
    with pytest.raises(ValueError, match="labels"):
        fitted.fit_outputs(ModelOutputs(features=torch.zeros(4, D)))
    with pytest.raises(ValueError, match="same number of rows"):
        ModelOutputs(logits=torch.zeros(3, 2), features=torch.zeros(4, 2))


def test_register_detector_extension_point():
    class Constant(OODDetector):
        """Scores every input 0 (for the test)."""

        name = "constant-test"
        reference = "none"

        def _score(self, outputs):
            return torch.zeros(len(outputs))

    try:
        register_detector(Constant)
        assert "constant-test" in available_detectors()
        assert make_detector("constant-test").score_outputs(
            ModelOutputs(logits=torch.zeros(3, 2))).tolist() == [0, 0, 0]
        with pytest.raises(ValueError, match="already registered"):
            register_detector(type("Other", (Constant,), {}))
    finally:
        DETECTORS.unregister("constant-test")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", CLASSIFIER_DETECTORS)
def test_detectors_run_on_cuda(name, toy):
    model, (x, y), x_test, ood_test = toy
    model = ToyNet().cuda().eval()
    det = _make(name, model)
    if "device" in type(det).param_names():
        det.device = "cuda"
    det.fit(_loader(x, y))
    s_in, s_out = det.score(x_test.cuda()), det.score(ood_test.cuda())
    assert torch.isfinite(s_in).all() and auroc(s_in, s_out) > 0.95


# --------------------------------------------------------------------------- epistemic scores
def test_mutual_information_matches_the_prediction_object_and_bounds():
    from uncertainty.ood import mutual_information_score
    from uncertainty.predictive.prediction import ClassificationPrediction

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(7, 40, 5, generator=g, dtype=torch.float64), -1)
    mi = mutual_information_score(probs)
    torch.testing.assert_close(mi, ClassificationPrediction.from_samples(probs)
                               .mutual_information)
    assert (mi >= 0).all() and (mi <= math.log(5) + 1e-12).all()
    same = probs[:1].expand(7, -1, -1)  # identical samples: no disagreement
    assert mutual_information_score(same).abs().max() < 1e-12


def test_mc_dropout_detector_repeats_with_its_seed_and_refuses_p0():
    from uncertainty.ood import MCDropoutMI

    net = DropoutToyNet().eval()
    x = torch.randn(50, D)
    a = MCDropoutMI(net, num_samples=10, seed=3).score(x)
    assert torch.equal(a, MCDropoutMI(net, num_samples=10, seed=3).score(x))
    assert not torch.equal(a, MCDropoutMI(net, num_samples=10, seed=4).score(x))
    net.dropout.p = 0.0  # every pass the same: all scores would be 0, so it is refused
    with pytest.raises(ValueError, match=r"'model'.*no dropout layer with rate p > 0"):
        MCDropoutMI(net, num_samples=10).score(x)
    with pytest.raises(ValueError, match=r"'model'.*ToyNet has no dropout layer"):
        MCDropoutMI(ToyNet(), num_samples=3).score(x)
    net.dropout.p = 0.5
    with pytest.raises(ValueError, match="'mode'"):
        MCDropoutMI(net, mode="half").score(x)


def test_ensemble_disagreement_is_the_members_mutual_information():
    from scipy.stats import entropy as sp_entropy

    from uncertainty.ood import EnsembleDisagreement, ensemble_disagreement_score

    ens = ToyEnsemble().eval()
    x = torch.randn(30, D)
    with torch.no_grad():
        logits = ens.member_logits(x)
    p = softmax(logits.double().numpy(), axis=-1)  # (M, N, C)
    expected = sp_entropy(p.mean(0), axis=-1) - sp_entropy(p, axis=-1).mean(0)
    np.testing.assert_allclose(EnsembleDisagreement(ens).score(x).numpy(), expected, atol=1e-10)
    torch.testing.assert_close(ensemble_disagreement_score(logits),
                               torch.as_tensor(expected))
    with pytest.raises(ValueError, match="member_logits"):
        EnsembleDisagreement(ToyNet()).score(x)


def test_detector_contract_is_enforced_when_a_class_is_defined():
    with pytest.raises(TypeError, match="Half declares fit_needs \\['features'\\] but implements "
                                        "neither _fit nor fit_outputs"):
        class Half(OODDetector):
            fit_needs = frozenset({"features"})

            def _score(self, outputs):
                return outputs.features.sum(1)

    class NoScore(OODDetector):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoScore()


# --------------------------------------------------------------------------- every input kind
@pytest.mark.parametrize("name", CLASSIFIER_DETECTORS)
def test_contract_arrays_in_arrays_out(name, toy):
    """numpy in -> numpy out; a pair, a TensorDataset and a DataLoader fit the same state."""
    model, (x, y), x_test, _ = toy
    ref = _make(name, model).fit(_loader(x, y)).score(x_test, batch_size=64)
    for data in ((x.numpy(), y.numpy()), TensorDataset(x, y),
                 DataLoader(TensorDataset(x, y), batch_size=64)):
        scores = _make(name, model).fit(data).score(x_test.double().numpy(), batch_size=64)
        assert isinstance(scores, np.ndarray) and scores.dtype == np.float64
        np.testing.assert_allclose(scores, ref.numpy(), rtol=1e-4, atol=1e-6)
    det = _make(name, model).fit(x.numpy(), y.numpy())
    assert isinstance(det.score(TensorDataset(x_test)), torch.Tensor)


@pytest.mark.parametrize("name", CLASSIFIER_DETECTORS)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_contract_non_finite_inputs_are_refused(name, value, toy):
    model, (x, y), x_test, _ = toy
    cls = type(_make(name, model)).__name__
    bad = x.clone()
    bad[7, 3] = value
    with pytest.raises(ValueError, match=rf"The 'x' argument of {cls}.fit must be finite \(no "
                       rf"NaN or inf\); found {value} at index \(7, 3\)"):
        _make(name, model).fit(bad, y)
    if _make(name, model).fit_needs:  # a fit-free detector does not read a loader at all
        with pytest.raises(ValueError, match=rf"'x' argument of {cls}.fit must be finite"):
            _make(name, model).fit(DataLoader(TensorDataset(bad, y), batch_size=64))
    det = _make(name, model).fit(x, y)
    bad_test = x_test.numpy().copy()
    bad_test[5, 0] = value
    with pytest.raises(ValueError, match=rf"The 'x' argument of {cls}.score must be finite \(no "
                       rf"NaN or inf\); found {value} at index \(5, 0\)"):
        det.score(bad_test)


def test_a_model_that_cannot_take_the_inputs_is_refused_by_name():
    """Arrays of the wrong width from Python: a ValueError naming both shapes, not torch's
    matrix-product error."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match=r"takes 8 input features.*shape \(5,\)"):
        make_detector("energy", model).score(np.zeros((3, 5), np.float32))
