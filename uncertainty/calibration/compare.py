"""Post-hoc calibration compared: fit several calibrators on held-out data, evaluate each on
the test set next to the uncalibrated model.

::

    from dunno.checkpoints import load_model
    from uncertainty.calibration import run_calibration
    result = run_calibration(load_model("runs/lenet5/model.pt"), "mnist", methods="all")
    print(result.table())

**The calibration set** is a seeded random subset (``calibration_size`` examples, default: all)
of the ``val`` split: the part of the official training data that
:func:`dunno.classify.train_classifier` keeps out of the weight updates (5 000 images for
MNIST / Fashion-MNIST, 180 for ``digits``). Calibrating on the images a network was fitted to
would see its over-confident training-set logits and learn the wrong map, so ``train`` is
only used when asked for explicitly (``calibration_split="train"``, e.g. for a model trained
elsewhere on other data). The model runs once over the calibration set and once over the
``test`` split; every method is then fitted on the cached logits.

**Metrics** (test set, :mod:`evaluation.metrics`): accuracy, ECE (15 equal-width bins,
top label), adaptive ECE (15 equal-mass bins), MCE, NLL (nats, from the calibrated logits)
and the multiclass Brier score, for the uncalibrated model and for each method.

Nothing is written or printed here: ``dunno calibrate`` writes the JSON / CSV, the
reliability diagrams and the fitted calibrators
(:func:`evaluation.benchmarks.calibration.write_calibration_report`).

Anchor: Guo et al. (2017), Table 1 (ECE, 15 bins): CIFAR-10 LeNet-5 3.02% -> 0.93%,
CIFAR-100 ResNet-110 16.53% -> 1.26% with temperature scaling.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dunno.data import load_dataset, make_loader
from dunno.devices import resolve_device
from dunno.models import check_model_data
from dunno.progress import Progress, reports_progress
from dunno.tables import Column, Table, metric_column, render_table
from dunno.training import predict_logits
from dunno.validation import check_choice, check_int
from evaluation.metrics import (
    calibration_metrics,
    expected_calibration_error,
    nll_from_logits,
)
from uncertainty.calibration._base import Calibrator
from uncertainty.calibration.registry import (
    CALIBRATORS,
    available_calibrators,
    make_calibrator,
)

__all__ = ["CALIBRATION_SPLITS", "COLUMNS", "CalibrationResult", "run_calibration"]

#: The columns of :meth:`CalibrationResult.rows` (and of ``calibration.csv``).
COLUMNS = ("method", "accuracy", "ece", "adaptive_ece", "mce", "nll", "brier")
#: The parts of the training data a calibration set may come from.
CALIBRATION_SPLITS = ("val", "train", "train-full")


@dataclass
class CalibrationResult:
    """What :func:`run_calibration` measured.

    ``before`` holds the uncalibrated model's test metrics, ``after[method]`` each method's;
    both are dicts with the keys of :data:`COLUMNS` (minus ``method``) and more
    (``ece_l2``, ``classwise_ece``, ``overconfidence``, ``underconfidence``, ``n``).
    ``calibrators`` holds the fitted calibrators by method, ``test_logits`` ``(N, C)`` float64
    and ``test_labels`` ``(N,)`` the uncalibrated test logits they were evaluated on (for
    reliability diagrams; not in :meth:`to_dict`).
    """

    data: str
    num_classes: int
    calibration_split: str
    calibration_size: int
    test_size: int
    seed: int
    before: dict[str, float]
    after: dict[str, dict[str, float]]
    calibration_nll: dict[str, float]
    fitted: dict[str, dict[str, Any]]
    fit_seconds: dict[str, float]
    calibrators: dict[str, Calibrator] = field(repr=False)
    test_logits: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)

    def rows(self) -> list[dict[str, Any]]:
        """One row per method (the uncalibrated model first) with the :data:`COLUMNS`."""
        rows = [{"method": "uncalibrated", **{k: self.before[k] for k in COLUMNS[1:]}}]
        for method, metrics in self.after.items():
            rows.append({"method": method, **{k: metrics[k] for k in COLUMNS[1:]}})
        return rows

    def report_table(self) -> Table:
        """The before/after table of every rendering (:mod:`dunno.tables`): accuracy, ECE,
        adaptive ECE and MCE in percent, NLL in nats, Brier score."""
        return Table("calibration", [Column("method", "method"),
                                     *(metric_column(k) for k in COLUMNS[1:])],
                     self.rows(), index=("method",))

    def table(self) -> str:
        """The before/after table as aligned text (rates in percent)."""
        return render_table(self.report_table(), "table")

    def best(self, metric: str = "ece") -> str:
        """The method with the best test ``metric`` of :data:`COLUMNS`: the highest
        ``accuracy``, the lowest of the others (``"uncalibrated"`` if none beats it)."""
        if metric not in COLUMNS[1:]:
            raise ValueError(f"The 'metric' argument of best must be one of {COLUMNS[1:]}. "
                             f"Got {metric!r} instead.")
        sign = -1.0 if metric == "accuracy" else 1.0
        return min(self.rows(), key=lambda r: sign * r[metric])["method"]

    def to_dict(self) -> dict[str, Any]:
        """Everything except the calibrator objects, JSON-ready."""
        return {
            "data": self.data,
            "num_classes": self.num_classes,
            "calibration_split": self.calibration_split,
            "calibration_size": self.calibration_size,
            "test_size": self.test_size,
            "seed": self.seed,
            "before": self.before,
            "after": self.after,
            "calibration_nll": self.calibration_nll,
            "fitted": self.fitted,
            "fit_seconds": self.fit_seconds,
            "best": {m: self.best(m) for m in ("ece", "adaptive_ece", "nll", "brier")},
        }

    def summary(self) -> str:
        """What was fitted on what, the before/after table and the fitted temperature, as
        text."""
        lines = [f"calibration on '{self.data}': {self.calibration_size} "
                 f"'{self.calibration_split}' examples (seed {self.seed}) to fit, "
                 f"{self.test_size} 'test' examples to evaluate", self.table()]
        if "temperature" in self.fitted:
            lines.append(f"fitted temperature T = {self.fitted['temperature']['temperature_']:.4f}")
        return "\n".join(lines)


def _methods(methods: str | Sequence[str], num_classes: int) -> list[str]:
    if isinstance(methods, str):
        methods = available_calibrators(num_classes) if methods == "all" else methods.split(",")
    methods = [m.strip() for m in methods]
    if not methods:
        raise ValueError("The 'methods' argument names no calibration method.")
    for m in methods:
        if m not in CALIBRATORS:
            raise ValueError(
                f"Unknown calibration method {m!r} in 'methods'. Available: "
                f"{', '.join(CALIBRATORS)} or 'all'."
            )
        if CALIBRATORS[m].binary_only and num_classes != 2:
            raise ValueError(
                f"Method {m!r} is for binary classifiers; the data has {num_classes} classes."
            )
    return list(dict.fromkeys(methods))


def _test_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Test metrics from (calibrated) logits ``(N, C)``: probabilities are their softmax."""
    probs = torch.softmax(logits.double(), dim=1)  # (N, C)
    metrics = calibration_metrics(probs, labels)
    metrics["adaptive_ece"] = expected_calibration_error(probs, labels, binning="equal_mass")
    metrics["nll"] = nll_from_logits(logits.double(), labels)
    return metrics


def _scalars(calibrator: Calibrator) -> dict[str, Any]:
    """The fitted scalar attributes (e.g. ``temperature_``), for the JSON report."""
    return {k: v for k, v in calibrator.state_dict().items()
            if isinstance(v, bool | int | float)}


@reports_progress
def run_calibration(
    model: nn.Module,
    data_spec: str,
    methods: str | Sequence[str] = ("temperature",),
    *,
    calibration_size: int | None = None,
    calibration_split: str = "val",
    seed: int = 0,
    root=None,
    device: str | torch.device = "cpu",
    batch_size: int = 1000,
    method_params: dict[str, dict[str, Any]] | None = None,
    progress: bool | None = None,
) -> CalibrationResult:
    """Fit each calibration method on held-out data and compare them on the test split.

    Parameters
    ----------
    model : nn.Module
        A classifier mapping a batch of ``data_spec`` inputs to logits ``(N, C)``. It is moved
        to ``device`` and run in eval mode; its weights are not changed.
    data_spec : str
        A dataset spec for :func:`dunno.data.load_dataset` (``"digits"``, ``"mnist"``, ...).
    methods : str or sequence of str
        Registry names (:data:`uncertainty.calibration.CALIBRATORS`), a comma-separated
        string, or ``"all"`` (every method defined for the number of classes).
    calibration_size : int, optional
        Size of the seeded random calibration subset of ``calibration_split``; ``None``
        (default) uses all of it. Larger than the split raises ValueError.
    calibration_split : {"val", "train", "train-full"}
        Which part of the training data to calibrate on (see the module docstring).
    seed : int
        Seed of the calibration subset.
    root : path-like, optional
        Data directory (default ``$DUNNO_DATA``, else ``~/.cache/dunno``).
    device : str or torch.device
        ``auto | cpu | cuda[:i] | mps``.
    batch_size : int
        Batch size of the two forward passes.
    method_params : dict, optional
        Hyper-parameters per method, e.g. ``{"matrix": {"off_diagonal_reg": 0.01}}``.
    progress : bool, optional
        Report the two forward passes and the fitting of the calibrators on stderr
        (:mod:`dunno.progress`); ``None``: as the enclosing call asked (off by default).

    Returns
    -------
    CalibrationResult
    """
    check_choice(calibration_split, "calibration_split", "run_calibration", CALIBRATION_SPLITS)
    check_int(calibration_size, "calibration_size", "run_calibration", low=1, allow_none=True)
    method_params = dict(method_params or {})
    device = resolve_device(device)
    model = model.to(device)

    pool = load_dataset(data_spec, calibration_split, root)
    test = load_dataset(data_spec, "test", root)
    num_classes = pool.info.num_classes
    if num_classes is None:
        raise ValueError(f"'{data_spec}' is not a labelled classification dataset.")
    for split in (pool, test):  # the model fits the data: shapes, classes (before any work)
        check_model_data(model, split.x, num_classes=num_classes, labels=split.y,
                         data_name=data_spec, owner="run_calibration")
    names = _methods(methods, num_classes)
    unknown = sorted(set(method_params) - set(names))
    if unknown:
        raise ValueError(f"'method_params' names methods that are not run: {unknown}.")
    if calibration_size is not None:
        if calibration_size > len(pool):
            raise ValueError(
                f"calibration_size={calibration_size} is larger than the "
                f"'{calibration_split}' split of '{data_spec}' ({len(pool)} examples); pass "
                f"calibration_size <= {len(pool)} or None (all of it)."
            )
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(pool), generator=generator)[:calibration_size]
        pool = pool.subset(index.sort().values)

    t0 = time.perf_counter()
    cal_logits, cal_labels = predict_logits(model, make_loader(pool, batch_size), device=device,
                                            desc=f"logits {data_spec} ({calibration_split})")
    test_logits, test_labels = predict_logits(model, make_loader(test, batch_size),
                                              device=device, desc=f"logits {data_spec} (test)")
    forward_seconds = time.perf_counter() - t0
    if cal_logits.shape[1] != num_classes:
        raise ValueError(
            f"The model outputs {cal_logits.shape[1]} logits but '{data_spec}' has "
            f"{num_classes} classes."
        )
    cal_logits, test_logits = cal_logits.double(), test_logits.double()  # (N, C) each

    before = _test_metrics(test_logits, test_labels)
    calibration_nll = {"uncalibrated": nll_from_logits(cal_logits, cal_labels)}
    after, fitted, seconds, calibrators = {}, {}, {"forward_passes": forward_seconds}, {}
    methods_bar = Progress(names, desc="calibrators (fit, evaluate)", unit="method")
    for name in methods_bar:
        methods_bar.set_postfix({"method": name})
        calibrator = make_calibrator(name, **method_params.get(name, {}))
        t0 = time.perf_counter()
        calibrator.fit(cal_logits, cal_labels)
        seconds[name] = time.perf_counter() - t0
        calibrators[name] = calibrator
        after[name] = _test_metrics(calibrator.transform(test_logits), test_labels)
        calibration_nll[name] = nll_from_logits(calibrator.transform(cal_logits), cal_labels)
        fitted[name] = {"params": calibrator.get_params(), **_scalars(calibrator)}

    result = CalibrationResult(
        data=data_spec, num_classes=num_classes, calibration_split=calibration_split,
        calibration_size=len(pool), test_size=len(test), seed=seed, before=before,
        after=after, calibration_nll=calibration_nll, fitted=fitted, fit_seconds=seconds,
        calibrators=calibrators, test_logits=test_logits, test_labels=test_labels,
    )
    return result
