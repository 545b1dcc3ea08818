"""Choosing a detector from in-distribution data alone (uncertainty.ood.selection) and the
``default`` alias."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from dunno import nets
from dunno.data import load_dataset
from dunno.data.outliers import make_outliers
from evaluation.metrics.ood import auroc, auroc_standard_error
from uncertainty.ood import Combined, OODDetector, make_detector, register_detector, run_ood
from uncertainty.ood.outputs import ModelOutputs
from uncertainty.ood.registry import DEFAULT_DETECTOR, DETECTORS
from uncertainty.ood.selection import (
    candidate_label,
    component_candidates,
    label_free,
    merge_selections,
    rank_candidates,
    score_candidates,
    select_detector,
)
from uncertainty.ood.suite import resolve_detectors

IN = "digits:classes=0-4"

pytestmark = pytest.mark.one_thread


class _MeanShift(OODDetector):
    """|mean intensity - its fitted mean|: blind to pixel permutations (same histogram)."""

    name = "test-mean-shift"
    needs = frozenset({"input"})
    fit_needs = frozenset({"input"})
    uses_model = False
    _state_names = ("mean_",)

    def _fit(self, outputs: ModelOutputs) -> None:
        self.mean_ = outputs.inputs.flatten(1).mean(1).mean()

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return (outputs.inputs.flatten(1).mean(1) - self.mean_).abs()


class _Roughness(OODDetector):
    """Total variation of the image: sees permuted pixels and pixel noise."""

    name = "test-roughness"
    needs = frozenset({"input"})
    uses_model = False

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        x = outputs.inputs
        return ((x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
                + (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1))


@pytest.fixture
def fake_detectors():
    for cls in (_MeanShift, _Roughness):
        register_detector(cls)
    try:
        yield
    finally:
        for cls in (_MeanShift, _Roughness):
            DETECTORS.unregister(cls.name)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(IN, "train"), load_dataset(IN, "val")


def _row(candidate, worst, mean, size=1):
    return {"candidate": candidate, "worst": worst, "mean": mean, "size": size}


def test_rank_by_worst_case_then_mean_within_the_tie():
    rows = [_row("a", 0.90, 0.99), _row("b", 0.95, 0.96), _row("c", 0.9495, 0.98),
            _row("d", 0.9495, 0.98, size=2), _row("e", 0.80, 1.0)]
    ranked, tie = rank_candidates(rows, tie=0.001)
    assert [r["candidate"] for r in ranked] == ["c", "d", "b", "a", "e"]  # c, d, b tie: by mean
    assert tie == 0.001
    assert [r["candidate"] for r in rank_candidates(rows, tie=0.0)[0]][:2] == ["b", "c"]
    with pytest.raises(ValueError, match="'tie' parameter of rank_candidates"):
        rank_candidates(rows, tie=-1)


def test_the_default_tie_is_one_standard_error_of_the_best_worst_case():
    rows = [{**_row("a", 0.75, 0.80), "auroc": {"k": 0.75, "j": 0.85}},
            {**_row("b", 0.747, 0.90), "auroc": {"k": 0.747, "j": 1.0}},
            {**_row("c", 0.74, 0.99), "auroc": {"k": 0.74, "j": 1.0}}]
    sizes = {"k": (5000, 5000), "j": (10, 10)}
    ranked, tie = rank_candidates(rows, sizes=sizes)
    assert tie == auroc_standard_error(0.75, 5000, 5000)  # at a's worst kind, k
    assert 0.0048 < tie < 0.0049  # so b ties with a and wins on the mean; c does not tie
    assert [r["candidate"] for r in ranked] == ["b", "a", "c"]
    with pytest.raises(ValueError, match="needs 'sizes'"):
        rank_candidates(rows)


def test_label_free_reranks_the_candidates_that_need_no_labels():
    from uncertainty.ood.selection import Selection

    def row(components, worst, mean):
        return {"candidate": "+".join(c if isinstance(c, str) else c[0] for c in components),
                "components": components, "reduce": "max", "size": len(components),
                "auroc": {"k": worst, "j": mean}, "worst": worst, "mean": mean}

    rows = [row(("mahalanobis", "knn"), 0.80, 0.90), row(("knn", "odin"), 0.747, 0.91),
            row(("odin", ("rapp", {"mode": "sap"})), 0.75, 0.85),
            row(("ddu",), 0.70, 0.95), row(("energy",), 0.60, 0.70)]
    sizes = {"k": (5000, 5000), "j": (10, 10)}
    selection = Selection(["k", "j"], rank_candidates(rows, sizes=sizes)[0], 0.0, sizes)
    assert selection.selected["candidate"] == "mahalanobis+knn"
    free = label_free(selection)
    # Mahalanobis and DDU learn per-class statistics; of the rest, the tie at 0.75 - 0.0049
    # holds knn+odin, which wins on the mean
    assert [r["candidate"] for r in free.rows] == ["knn+odin", "odin+rapp", "energy"]
    assert free.detector_params() == {"components": ("knn", "odin"), "reduce": "max"}
    only_labelled = Selection(["k", "j"], rows[:1], 0.0, sizes)
    with pytest.raises(ValueError, match="no candidate that needs no labels"):
        label_free(only_labelled)


def test_score_candidates_picks_the_detector_that_sees_every_kind():
    rng = np.random.default_rng(0)
    n = 400
    inside = {"sees-all": rng.normal(0, 1, n), "blind-to-b": rng.normal(0, 1, n)}
    outside = {"a": {"sees-all": rng.normal(6, 1, n), "blind-to-b": rng.normal(6, 1, n)},
               "b": {"sees-all": rng.normal(6, 1, n), "blind-to-b": rng.normal(0, 1, n)}}
    singles = score_candidates(inside, outside, max_size=1)
    assert [r["candidate"] for r in singles.rows] == ["sees-all", "blind-to-b"]
    assert singles.detector_params() == {"components": ("sees-all",), "reduce": "fisher"}
    sel = score_candidates(inside, outside, max_size=2)
    assert "sees-all" in sel.selected["candidate"] and sel.rows[-1]["candidate"] == "blind-to-b"
    assert len(sel.rows) == 4  # two singles, one pair under each of fisher and max
    labels = {r["candidate"] for r in sel.rows}
    assert labels == {"sees-all", "blind-to-b", "fisher(sees-all, blind-to-b)",
                      "max(sees-all, blind-to-b)"}
    blind = next(r for r in sel.rows if r["candidate"] == "blind-to-b")
    assert blind["auroc"]["a"] > 0.99 and abs(blind["auroc"]["b"] - 0.5) < 0.06
    assert blind["worst"] == blind["auroc"]["b"]
    assert blind["mean"] == pytest.approx((blind["auroc"]["a"] + blind["auroc"]["b"]) / 2)
    fisher = next(r for r in sel.rows if r["candidate"].startswith("fisher"))
    s_in = inside["sees-all"] + inside["blind-to-b"]
    s_b = outside["b"]["sees-all"] + outside["b"]["blind-to-b"]
    assert fisher["auroc"]["b"] == pytest.approx(float((s_b[:, None] > s_in[None]).mean()))
    assert "| 1 | sees-all |" in singles.to_markdown()


def test_merged_selection_takes_the_worst_case_over_both_models():
    def selection(scores):
        inside = {"x": np.zeros(2), "y": np.zeros(2)}
        outside = {"k": {d: np.array(v) for d, v in scores.items()}}
        return score_candidates(inside, outside, max_size=1)

    # x is best on the first model, y on the second; y's worst case over both is better
    first = selection({"x": [1.0, 1.0], "y": [1.0, -1.0]})  # AUROC x 1.0, y 0.5
    second = selection({"x": [-1.0, -1.0], "y": [1.0, 1.0]})  # x 0.0, y 1.0
    assert first.selected["candidate"] == "x" and second.selected["candidate"] == "y"
    merged = merge_selections({"one": first, "two": second})
    assert merged.kinds == ["one/k", "two/k"]
    assert merged.selected["candidate"] == "y"
    assert merged.selected["auroc"] == {"one/k": 0.5, "two/k": 1.0}
    assert merged.selected["worst"] == 0.5 and merged.selected["mean"] == 0.75


def test_select_detector_end_to_end_picks_the_detector_not_blind_to_a_kind(fake_detectors,
                                                                             digits):
    fit, held = digits
    comps = ["test-mean-shift", "test-roughness"]
    sel = select_detector(None, fit, held.x, kinds=("permute", "noise"), components=comps,
                          max_size=1)
    assert sel.selected["candidate"] == "test-roughness"
    blind = next(r for r in sel.rows if r["candidate"] == "test-mean-shift")
    assert blind["auroc"]["permute"] == 0.5  # a permutation keeps the mean: identical scores
    assert sel.selected["auroc"]["permute"] > 0.99
    assert sel.info["n_heldout"] == len(held) and sel.info["n_reference"] == round(0.2 * len(fit))
    # every candidate's numbers are those of the Combined detector it names
    pair = select_detector(None, fit, held.x, kinds=("noise",), components=comps, max_size=2)
    row = next(r for r in pair.rows if r["candidate"] == candidate_label(tuple(comps), "max"))
    det = Combined(components=tuple(comps), reduce="max").fit_outputs(ModelOutputs(inputs=fit.x))
    noise = make_outliers(held.x, ["noise"], seed=0)["noise"]
    s_in = det.score_outputs(ModelOutputs(inputs=held.x))
    s_out = det.score_outputs(ModelOutputs(inputs=noise))
    assert row["auroc"]["noise"] == auroc(s_in, s_out)


def test_select_detector_takes_in_distribution_data_only():
    params = inspect.signature(select_detector).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["model", "fit", "heldout"]
    rest = {n: p.default for n, p in params.items() if n not in positional}
    assert all(p.kind is p.KEYWORD_ONLY for n, p in params.items() if n in rest)
    # every other argument is a setting (a number, a name, a tuple of names), never data
    assert all(v is None or isinstance(v, int | float | str | tuple) for v in rest.values())


def test_select_detector_refuses_a_heldout_split_that_overlaps_the_fit_split(fake_detectors,
                                                                              digits):
    fit, _ = digits
    with pytest.raises(ValueError, match="'heldout' argument of select_detector shares 5"):
        select_detector(None, fit, fit.x[:5], components=["test-roughness"])
    with pytest.raises(ValueError, match="must be images"):
        select_detector(None, fit, fit.x[:5, 0], components=["test-roughness"])


def test_component_candidates_follow_the_registry():
    torch.manual_seed(0)
    model = nets.create("lenet5", 1, 5, input_size=8).eval()
    comps = component_candidates(model)
    names = [c if isinstance(c, str) else c[0] for c in comps]
    assert DEFAULT_DETECTOR not in names
    assert "mc-dropout" not in names and "likelihood" not in names
    assert ("rapp", {"mode": "sap"}) in comps and comps.index("rapp") < comps.index(
        ("rapp", {"mode": "sap"}))
    unlabelled = component_candidates(model, labels=False)
    assert "mahalanobis" in names and "mahalanobis" not in unlabelled


def test_default_alias_resolves_to_the_recommended_detector():
    assert DEFAULT_DETECTOR == "combined"
    assert resolve_detectors("default") == ["combined"]
    assert resolve_detectors("energy, default") == ["energy", "combined"]
    assert isinstance(make_detector("default"), Combined)
    with pytest.raises(ValueError, match="'default' \\(combined\\) or 'all'"):
        resolve_detectors("nope")

    class Default(_Roughness):
        name = "default"

    with pytest.raises(ValueError, match="name 'default' of Default is taken"):
        register_detector(Default)


def test_run_ood_with_the_default_detector():
    torch.manual_seed(0)
    model = nets.create("lenet5", 1, 5, input_size=8).eval()
    table = run_ood(model, IN, "gaussian-noise", "default",
                    detector_params={"combined": {"components": ("msp", "knn")}})
    assert table.detectors == ["combined"]
    assert table.params["combined"]["components"] == ["msp", "knn"]


def test_default_parameters_go_to_the_default_detector():
    from uncertainty.ood.suite import build_detectors

    dets = build_detectors(["combined"], None, detector_params={"default": {"reduce": "fisher"}})
    assert dets["combined"].reduce == "fisher"
    with pytest.raises(ValueError, match="both 'default' and 'combined'"):
        build_detectors(["combined"], None, detector_params={"default": {}, "combined": {}})
