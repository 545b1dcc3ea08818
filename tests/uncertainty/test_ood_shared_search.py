"""kNN searches shared within one OOD run (uncertainty.ood.shared_search) and RaPP's NAP
statistics computed on first use: the same scores with and without them, and nothing reused
across other data."""

from __future__ import annotations

import pytest
import torch

from dunno import nets
from dunno.data import load_dataset
from uncertainty.ood import run_ood
from uncertainty.ood.combined import Combined
from uncertainty.ood.knn import KNN, knn_score, normalize_features
from uncertainty.ood.outputs import ModelOutputs, extract_outputs
from uncertainty.ood.rapp import RaPP
from uncertainty.ood.shared_search import SharedSearches, active_searches

pytestmark = pytest.mark.one_thread


def _clusters(n: int, seed: int, dim: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, dim, generator=g, dtype=torch.float64) * 3
    return centres[torch.randint(0, 4, (n,), generator=g)] + torch.randn(
        n, dim, generator=g, dtype=torch.float64)


def _kth(features, bank_features, k):
    """The k-th neighbour's distance by the detector's own search (no cache)."""
    return knn_score(features, bank_features, k)


def test_shared_answers_equal_own_searches_for_whole_and_subset_banks():
    root, queries = _clusters(400, 0), _clusters(150, 1)
    rows = torch.randperm(400, generator=torch.Generator().manual_seed(2))[:320].sort().values
    cache = SharedSearches()
    with cache.active():
        assert active_searches() is cache
        cache.share_queries(queries)
        whole = cache.register_bank(root, None, 7)
        part = root[rows]
        cache.note_subset(part, root, rows)
        sub = cache.register_bank(part, None, 5)
        assert whole[0] is root and whole[1] is None
        assert sub[0] is root and torch.equal(sub[1], rows)
        bank_whole, bank_sub = normalize_features(root), normalize_features(root[rows])
        i_whole = cache.kth_neighbour(queries, *whole, bank_whole, 7)
        i_sub = cache.kth_neighbour(queries, *sub, bank_sub, 5)
        assert cache.searches == 1 and cache.reused == 2  # one search served both
    assert active_searches() is None
    q = normalize_features(queries)
    torch.testing.assert_close((q - bank_whole[i_whole]).norm(dim=1), _kth(queries, root, 7),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close((q - bank_sub[i_sub]).norm(dim=1), _kth(queries, root[rows], 5),
                               rtol=0, atol=1e-12)


def test_rows_with_too_few_candidates_in_the_subset_are_searched_again():
    root, queries = _clusters(300, 3), _clusters(40, 4)
    # the subset: the rows farthest from every query, so that the whole bank's top
    # candidates hold none of them
    sims = normalize_features(queries) @ normalize_features(root).T
    rows = sims.max(dim=0).values.argsort()[:60].sort().values
    cache = SharedSearches()
    with cache.active():
        cache.share_queries(queries)
        cache.register_bank(root, None, 3)
        sub = cache.register_bank(root, rows, 3)
        bank = normalize_features(root[rows])
        index = cache.kth_neighbour(queries, *sub, bank, 3)
        assert cache.redone > 0
    got = (normalize_features(queries) - bank[index]).norm(dim=1)
    torch.testing.assert_close(got, _kth(queries, root[rows], 3), rtol=0, atol=1e-12)


def test_nothing_is_reused_for_other_or_changed_tensors():
    root, queries = _clusters(200, 5), _clusters(30, 6)
    bank = normalize_features(root)
    cache = SharedSearches()
    with cache.active():
        cache.register_bank(root, None, 4)
        origin = cache.register_bank(root, None, 6)
        # queries never declared shared: the caller searches on its own
        assert cache.kth_neighbour(queries, *origin, bank, 4) is None
        cache.share_queries(queries)
        assert cache.kth_neighbour(queries, *origin, bank, 4) is not None
        # equal values in another tensor are other data: not reused
        assert cache.kth_neighbour(queries.clone(), *origin, bank, 4) is None
        # a bank made from other training features is not registered
        other = root.clone()
        assert cache.kth_neighbour(queries, other, None, bank, 4) is None
        searches = cache.searches
        queries.add_(1.0)  # changed in place: its entry no longer matches
        assert cache.kth_neighbour(queries, *origin, bank, 4) is None
        root.mul_(2.0)
        cache.share_queries(queries)
        assert cache.kth_neighbour(queries, *origin, bank, 4) is None
        assert cache.searches == searches
    assert cache._results == {} and cache._banks == {}  # emptied when the block ends


def test_a_single_bank_is_not_shared():
    root, queries = _clusters(100, 7), _clusters(10, 8)
    cache = SharedSearches()
    with cache.active():
        cache.share_queries(queries)
        origin = cache.register_bank(root, None, 3)
        assert cache.kth_neighbour(queries, *origin, normalize_features(root), 3) is None


def _outputs(n, seed):
    return ModelOutputs(features=_clusters(n, seed).float(),
                        logits=torch.randn(n, 4, generator=torch.Generator().manual_seed(seed)))


def test_knn_and_combined_score_the_same_inside_and_outside_a_block():
    fit, test = _outputs(500, 9), _outputs(120, 10)
    params = {"components": ("gen", ("knn", {"k": 10})), "holdout": 0.3}
    own_knn = KNN(k=10).fit_outputs(fit).score_outputs(test)
    own_comb = Combined(**params).fit_outputs(fit).score_outputs(test)
    cache = SharedSearches()
    cache.share_queries(test.features)
    with cache.active():
        knn, comb = KNN(k=10).fit_outputs(fit), Combined(**params).fit_outputs(fit)
        s_knn, s_comb = knn.score_outputs(test), comb.score_outputs(test)
        assert cache.searches == 1 and cache.reused == 2
    torch.testing.assert_close(s_knn, own_knn, rtol=0, atol=1e-12)
    torch.testing.assert_close(s_comb, own_comb, rtol=0, atol=1e-12)
    # fitted inside the block, scored outside: the detectors search on their own
    torch.testing.assert_close(knn.score_outputs(test), own_knn, rtol=0, atol=1e-12)


def test_run_ood_shares_the_knn_search_and_matches_own_passes():
    torch.manual_seed(0)
    model = nets.create("lenet5", 1, 5, input_size=8).eval()
    params = {"knn": {"k": 5},
              "combined": {"components": ("gen", ("knn", {"k": 5}), ("rapp", {"mode": "sap",
                                                                              "epochs": 1}))}}
    table = run_ood(model, "digits:classes=0-4", "digits:classes=5-9,gaussian-noise",
                    "knn,combined", detector_params=params, batch_size=100)
    assert table.timings["shared_searches"]["searches"] == 3  # test + 2 OOD sets
    assert table.timings["shared_searches"]["reused"] == 6
    fit = load_dataset("digits:classes=0-4", "train")
    test = load_dataset("digits:classes=0-4", "test")
    knn = KNN(model, k=5).fit(fit)
    comb = Combined(model, **params["combined"]).fit(fit)
    torch.testing.assert_close(knn.score(test.x), table.scores["knn"]["in"], rtol=0, atol=1e-12)
    torch.testing.assert_close(comb.score(test.x), table.scores["combined"]["in"], rtol=0,
                               atol=1e-12)


def test_rapp_sap_defers_the_nap_statistics_with_the_same_values():
    x = torch.rand(300, 12, generator=torch.Generator().manual_seed(11))
    sap = RaPP(mode="sap", hidden=(6, 3), epochs=2).fit(x)
    assert sap._nap is None  # a SAP fit never reads them
    nap = RaPP(hidden=(6, 3), epochs=2).fit(x)
    assert nap._nap is not None
    for name in ("diff_mean_", "components_", "singular_values_"):
        assert torch.equal(getattr(sap, name), getattr(nap, name))
    assert torch.equal(sap.set_params(mode="nap").score(x), nap.score(x))
    outputs = extract_outputs(None, x, needs=("input",))
    refit = RaPP(mode="sap", hidden=(6, 3), epochs=2).fit_outputs(outputs)
    assert refit._nap is None and torch.equal(refit.score(x), RaPP(
        mode="sap", hidden=(6, 3), epochs=2).fit(x).score(x))


def test_a_bank_subset_of_a_combined_subset_is_mapped_to_the_root_rows():
    fit, test = _outputs(400, 12), _outputs(50, 13)
    params = {"components": (("knn", {"k": 4, "bank_size": 150}),), "holdout": 0.25}
    own_knn = KNN(k=6).fit_outputs(fit).score_outputs(test)
    own_comb = Combined(**params).fit_outputs(fit).score_outputs(test)
    cache = SharedSearches()
    cache.share_queries(test.features)
    with cache.active():
        knn, comb = KNN(k=6).fit_outputs(fit), Combined(**params).fit_outputs(fit)
        origin = comb.detectors_["knn(bank_size=150,k=4)"]._bank_origin
        assert origin[0] is fit.features and len(origin[1]) == 150
        s_knn, s_comb = knn.score_outputs(test), comb.score_outputs(test)
        assert cache.searches == 1
    torch.testing.assert_close(s_knn, own_knn, rtol=0, atol=1e-12)
    torch.testing.assert_close(s_comb, own_comb, rtol=0, atol=1e-12)
