"""The UCI regression benchmark (Hernández-Lobato & Adams 2015; Gal & Ghahramani 2016) for
the predictive-uncertainty regressors of :mod:`uncertainty.predictive`.

The library behind ``dunno uci``::

    from uncertainty.predictive import run_uci
    table = run_uci("mc-dropout", "all")            # a UCITable: rows, per-split values
    print(table.to_text())

**Protocol.** The fixed splits of :func:`dunno.data.load_dataset` (``uci/<name>:k=<split>``:
20 splits, 5 for protein; 90% train / 10% test), one hidden ReLU layer of 50 units (100 for
protein, ``n_hidden.txt``), inputs and targets standardised with the training rows' mean
and standard deviation. Every method is fitted in standardised units; its
:class:`~uncertainty.predictive.RegressionPrediction` is mapped back to original units
(``mean * y_std + y_mean``, variances ``* y_std**2``, log-densities ``- log y_std``) and
scored on the test rows with :mod:`evaluation.metrics`: RMSE of the predictive mean, and the
test log-likelihood per point (the exact mixture density when the method predicts a
mixture -- MC samples, ensemble members, MDN components, posterior draws -- as in Gal's
``logsumexp`` estimate; otherwise the Gaussian), the 95% coverage of the Gaussian interval
and the CRPS (:meth:`RegressionPrediction.crps`: the mixture's closed form, in the target's
units, when the prediction has at most :data:`CRPS_MAX_COMPONENTS` components -- ensembles,
MDNs, the BNN's draws, 100 heteroscedastic MC samples; ``nan`` for MC-Dropout's 1000
samples, whose :math:`O(N T^2)` pairwise term is not cheap: ``--param num_samples=200``
gives it one). Each is reported as mean ± standard error over splits (sample standard
deviation / sqrt(n_splits)), next to the published numbers.

**Verdict** (column ``vs_<anchor>``) on the log-likelihood: with ``d = LL - LL_published``
and ``se = sqrt(se_ours**2 + se_published**2)`` (the standard error of the difference),
``better`` if ``d > 2 se``, ``within`` if ``|d| <= 2 se``, ``worse`` if ``d < -2 se``.
MC-Dropout is compared with Gal's repository results, deep ensembles with Lakshminarayanan et
al. (2017, Table 1); the other methods (heteroscedastic, mdn, bnn) with both, for context.

**Budgets** (:func:`default_params`; ``quick=True`` shrinks all of them for smoke tests):

* ``mc-dropout`` -- Gal's grid search over ``dropout_rates.txt`` x ``tau_values.txt`` on
  the last 20% of each training set (``tau`` converted to standardised units per split:
  ``tau * y_std**2``, also in the weight decay, where Gal's code keeps original units: a
  decay ``1 / y_std**2`` times Gal's, both below 4e-5 of the loss at ``l = 1e-2``; see
  :mod:`uncertainty.predictive.mc_dropout`), scored with 100 MC samples, then a refit on
  the whole training set with the selected pair; dropout on inputs and hidden layer, weight
  decay ``l**2 (1 - p) / (2 N tau)`` with ``l = 1e-2``, Adam 1e-3, batch 128; test LL from
  T = 1000 MC samples (Gal: 10 000). Training length: Gal trains ``40 x epochx`` epochs;
  here every network gets about 10 000 optimiser steps -- ``epochs = clip(ceil(10000 /
  batches_per_epoch), 40, 4000)`` (yacht 4000 ... protein 40) -- which fits the CPU budget
  and gives the small sets the long training they need. Grid members that differ only in
  ``tau`` share one network (``share_tau``, see :class:`MCDropoutRegressor`). Closer to
  the published runs (Gal's 10x / 100x epochs), about 4x the time:
  ``--param epochs=4000`` for concrete and energy, ``1000`` for kin8nm, ``400`` for naval /
  power, ``200`` for protein, the default for boston / wine / yacht (one ``--dataset`` per
  call): 7 of 9 within two standard errors of Gal's test log-likelihoods (naval and protein
  stay below; 66 CPU minutes in all).
* ``ensemble`` -- M = 5 members, Gaussian NLL with mean and softplus variance heads, Adam
  1e-2, 40 epochs, batch 100, FGSM adversarial training (epsilon = 1% of each feature's
  range), vectorised with ``torch.func.vmap``.
* ``heteroscedastic`` -- mean and log-variance outputs, Gaussian NLL, dropout 0.05 with
  100 MC samples, Adam 1e-3 (1e-2 diverged on some protein splits), batch 100, about
  10 000 steps: ``epochs = clip(ceil(10000 / batches_per_epoch), 40, 400)``.
* ``mdn`` -- K = 5 components, same optimiser and budget as ``heteroscedastic``.
* ``bnn`` -- mean-field Gaussian VI (:class:`BayesianMLPRegressor`'s defaults:
  TraceMeanField_ELBO, local reparameterisation, ``N(0, 1/fan_in)`` weight priors, guide
  scales starting at 1e-3, learned noise starting at 0.5), ClippedAdam 1e-2 decaying to 1e-3,
  5 000 SVI steps of batch 100 per split (epochs = ceil(5000 / batches)), 200 posterior
  draws. (The earlier recipe -- flat ``N(0, 1)`` priors, guide scales 0.1, no local
  reparameterisation, constant learning rate, 2 000 steps -- was worse than MC-Dropout by
  more than two standard errors on all nine sets.)

All split-wise trainings of a dataset run as one stacked network (``fit_many``; the Pyro BNN
as ``S`` independent models under a ``models`` plate in one SVI run).

Caveat: wine-quality targets are integers (and protein's are heavily rounded). A mixture
density network can put narrow components on single values, so its test log-likelihood there
(positive on wine) measures that discreteness rather than calibration; compare RMSE and
coverage instead.

:func:`run_uci` returns a :class:`UCITable` and writes nothing; ``dunno uci --out DIR`` writes
``uci_<method>.csv``, ``.json`` (per-split values too) and ``.md`` from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dunno.data import load_dataset
from dunno.data.files import data_dir
from dunno.data.uci import UCI_SETS, canonical, uci_hyperparameters
from dunno.progress import Progress, reporting, write_line
from dunno.tables import Column, Table, render_table
from evaluation.metrics import (
    gaussian_interval,
    gaussian_mixture_nll,
    gaussian_nll,
    interval_coverage,
    rmse,
)
from uncertainty.predictive.prediction import RegressionPrediction
from uncertainty.predictive.registry import REGRESSORS, make_regressor

__all__ = [
    "ANCHORS",
    "BNN_STEPS",
    "CRPS_MAX_COMPONENTS",
    "DATASETS",
    "MC_DROPOUT_STEPS",
    "PUBLISHED",
    "SINGLE_NET_STEPS",
    "UCITable",
    "default_params",
    "run_uci",
    "verdict",
]

#: Display names, in the order of the published tables.
DATASETS = {
    "bostonHousing": "Boston",
    "concrete": "Concrete",
    "energy": "Energy",
    "kin8nm": "Kin8nm",
    "naval-propulsion-plant": "Naval",
    "power-plant": "Power",
    "protein-tertiary-structure": "Protein",
    "wine-quality-red": "Wine",
    "yacht": "Yacht",
}

#: Published anchors: ``{anchor: {dataset: ((rmse, se), (test_ll, se))}}``. MC-Dropout: Gal's
#: DropoutUncertaintyExps results (mean ± standard error); ensemble: Lakshminarayanan et al.
#: (2017), Table 1 (NLL shown as -LL).
PUBLISHED: dict[str, dict[str, tuple[tuple[float, float], tuple[float, float]]]] = {
    "mc-dropout": {
        "bostonHousing": ((2.90, 0.18), (-2.40, 0.04)),
        "concrete": ((4.82, 0.16), (-2.93, 0.02)),
        "energy": ((0.54, 0.06), (-1.21, 0.01)),
        "kin8nm": ((0.08, 0.00), (1.14, 0.01)),
        "naval-propulsion-plant": ((0.00, 0.00), (4.45, 0.00)),
        "power-plant": ((4.01, 0.04), (-2.80, 0.01)),
        "protein-tertiary-structure": ((4.27, 0.02), (-2.87, 0.00)),
        "wine-quality-red": ((0.62, 0.01), (-0.93, 0.01)),
        "yacht": ((0.67, 0.05), (-1.25, 0.01)),
    },
    "ensemble": {
        "bostonHousing": ((3.28, 1.00), (-2.41, 0.25)),
        "concrete": ((6.03, 0.58), (-3.06, 0.18)),
        "energy": ((2.09, 0.29), (-1.38, 0.22)),
        "kin8nm": ((0.09, 0.00), (1.20, 0.02)),
        "naval-propulsion-plant": ((0.00, 0.00), (5.63, 0.05)),
        "power-plant": ((4.11, 0.17), (-2.79, 0.04)),
        "protein-tertiary-structure": ((4.71, 0.06), (-2.83, 0.02)),
        "wine-quality-red": ((0.64, 0.04), (-0.94, 0.12)),
        "yacht": ((1.58, 0.48), (-1.18, 0.21)),
    },
}

#: Which published anchors each method is compared with.
ANCHORS = {
    "mc-dropout": ("mc-dropout",),
    "ensemble": ("ensemble",),
    "heteroscedastic": ("mc-dropout", "ensemble"),
    "mdn": ("mc-dropout", "ensemble"),
    "bnn": ("mc-dropout", "ensemble"),
}

#: the UCI table reports the CRPS of mixtures with at most this many components
CRPS_MAX_COMPONENTS = 256
MC_DROPOUT_STEPS = 10_000
SINGLE_NET_STEPS = 10_000
BNN_STEPS = 5_000


def verdict(ll: float, se: float, published_ll: float, published_se: float) -> str:
    """``better`` / ``within`` / ``worse``: the difference of the log-likelihoods against two
    standard errors of the difference (``nan`` standard errors count as 0)."""
    se_ours = 0.0 if not math.isfinite(se) else se
    spread = 2.0 * math.sqrt(se_ours**2 + published_se**2)
    diff = ll - published_ll
    if diff > spread:
        return "better"
    if diff < -spread:
        return "worse"
    return "within"


def _epochs_for_steps(steps: int, n_train: int, batch_size: int, low: int, high: int) -> int:
    batches = math.ceil(n_train / batch_size)
    return int(min(high, max(low, math.ceil(steps / batches))))


def default_params(method: str, dataset: str, n_train: int, *, root=None, quick: bool = False
                   ) -> dict[str, Any]:
    """The benchmark's hyper-parameters for ``method`` on ``dataset`` (``n_train`` training
    rows); see the module docstring. ``tau`` of MC-Dropout is in original units here (the
    runner converts it per split)."""
    name = canonical(dataset)
    hidden = uci_hyperparameters(name, root)["n_hidden"]
    folder = data_dir(root) / "uci" / name
    if method == "mc-dropout":
        rates = [float(v) for v in (folder / "dropout_rates.txt").read_text().split()]
        taus = [float(v) for v in (folder / "tau_values.txt").read_text().split()]
        epochs = _epochs_for_steps(MC_DROPOUT_STEPS, n_train, 128, 40, 4000)
        params = {"hidden": hidden, "dropout": rates, "tau": taus, "epochs": epochs,
                  "batch_size": 128, "lr": 1e-3, "num_samples": 1000, "val_samples": 100}
        if quick:
            params.update(dropout=rates[:2], tau=taus[:2], epochs=3, num_samples=20,
                          val_samples=5)
        return params
    if method == "ensemble":
        params = {"hidden": hidden, "num_members": 5, "epochs": 40, "batch_size": 100,
                  "lr": 1e-2, "adversarial": True}
        if quick:
            params.update(num_members=2, epochs=2)
        return params
    if method == "heteroscedastic":
        epochs = _epochs_for_steps(SINGLE_NET_STEPS, n_train, 100, 40, 400)
        params = {"hidden": hidden, "dropout": 0.05, "epochs": epochs, "batch_size": 100,
                  "lr": 1e-3, "num_samples": 100}
        if quick:
            params.update(epochs=2, num_samples=10)
        return params
    if method == "mdn":
        epochs = _epochs_for_steps(SINGLE_NET_STEPS, n_train, 100, 40, 400)
        params = {"hidden": hidden, "num_components": 5, "epochs": epochs, "batch_size": 100,
                  "lr": 1e-3}
        if quick:
            params.update(epochs=2)
        return params
    if method == "bnn":
        epochs = _epochs_for_steps(BNN_STEPS, n_train, 100, 1, 4000)
        params = {"hidden": hidden, "epochs": epochs, "batch_size": 100, "lr": 1e-2,
                  "num_samples": 200}
        if quick:
            params.update(epochs=1, num_samples=10)
        return params
    raise ValueError(f"Unknown regression method {method!r}. Available: {', '.join(REGRESSORS)}.")


@dataclass
class UCITable:
    """What :func:`run_uci` measured: one row per dataset (dicts with the keys of
    :attr:`columns`), per-split values in ``splits`` and the parameters used."""

    method: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    splits: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    anchors: tuple[str, ...] = ()
    minutes: float = 0.0

    @property
    def columns(self) -> list[str]:
        cols = ["dataset", "n_splits", "rmse", "rmse_se", "test_ll", "test_ll_se", "cov95",
                "crps", "crps_se", "minutes"]
        for anchor in self.anchors:
            cols += [f"{anchor}_rmse", f"{anchor}_ll", f"{anchor}_ll_se", f"vs_{anchor}"]
        return cols

    def summary(self) -> dict[str, int]:
        """Number of datasets with each verdict, per anchor (``"<anchor>:<verdict>"``)."""
        counts: dict[str, int] = {}
        for row in self.rows:
            for anchor in self.anchors:
                key = f"{anchor}:{row[f'vs_{anchor}']}"
                counts[key] = counts.get(key, 0) + 1
        return counts

    def report_table(self) -> Table:
        """The table of every rendering (:mod:`dunno.tables`): RMSE and test LL as mean ±
        standard error (original units, three decimals, the published numbers alike), the
        95% interval coverage in percent, the CRPS (``nan`` where not computed) and the verdict
        against each anchor."""
        columns = [Column("dataset", "dataset"), Column("n_splits", "splits"),
                   Column("rmse", "RMSE", digits=3, se="rmse_se"),
                   Column("test_ll", "test LL", "nats", 3, se="test_ll_se"),
                   Column("cov95", "95% coverage", "%", 2, 100.0),
                   Column("crps", "CRPS", digits=3, se="crps_se")]
        rows = []
        for row in self.rows:
            shown = dict(row)
            for anchor in self.anchors:
                (r, r_se), (ll, ll_se) = PUBLISHED[anchor][row["folder"]]
                shown.update({f"{anchor}_rmse": r, f"{anchor}_rmse_se": r_se,
                              f"{anchor}_ll": ll, f"{anchor}_ll_se": ll_se})
            rows.append(shown)
        for anchor in self.anchors:
            columns += [Column(f"{anchor}_rmse", f"{anchor} RMSE", digits=3,
                               se=f"{anchor}_rmse_se"),
                        Column(f"{anchor}_ll", f"{anchor} LL", "nats", 3, se=f"{anchor}_ll_se"),
                        Column(f"vs_{anchor}", f"vs {anchor}")]
        columns.append(Column("minutes", "minutes", digits=1))
        return Table(f"uci_{self.method}", columns, rows, index=("dataset",))

    def verdicts(self) -> str:
        """One line: the verdict counts and the total minutes."""
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.summary().items()))
        return (f"Verdicts on the test LL (within = inside 2 standard errors of the "
                f"difference): {counts or 'none'}. Total {self.minutes:.1f} min.")

    def to_text(self) -> str:
        return render_table(self.report_table(), "table")

    def to_markdown(self) -> str:
        return (f"### UCI regression: {self.method}\n\n"
                f"{render_table(self.report_table(), 'md')}\n\n{self.verdicts()}\n")

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "anchors": list(self.anchors), "rows": self.rows,
                "splits": self.splits, "params": self.params, "minutes": self.minutes,
                "summary": self.summary()}


def _scores(pred: RegressionPrediction, y: torch.Tensor
            ) -> tuple[float, float, float, float]:
    """RMSE, test LL per point, 95% coverage and CRPS (``nan`` for a mixture of more than
    :data:`CRPS_MAX_COMPONENTS` components) in original units."""
    y_np = y.double().numpy()
    if pred.is_mixture and y.shape[1] == 1:
        nll = gaussian_mixture_nll(pred.component_weights.numpy(),
                                   pred.component_means[..., 0].numpy(),
                                   pred.component_vars[..., 0].numpy(), y_np[:, 0])
    else:
        nll = gaussian_nll(pred.mean.numpy(), pred.variance.numpy(), y_np)
    lower, upper = gaussian_interval(pred.mean.numpy(), pred.variance.numpy(), 0.95)
    components = pred.component_weights.shape[1] if pred.is_mixture else 1
    crps = (float(pred.crps(y).mean()) if components <= CRPS_MAX_COMPONENTS
            else float("nan"))
    return (rmse(pred.mean.numpy(), y_np), -nll, interval_coverage(lower, upper, y_np), crps)


def _split_list(splits, n_splits: int) -> list[int]:
    if splits is None:
        return list(range(n_splits))
    if isinstance(splits, int) and not isinstance(splits, bool):
        if splits < 1:
            raise ValueError(f"The 'splits' argument must be >= 1. Got {splits} instead.")
        return list(range(min(splits, n_splits)))
    chosen = sorted({int(k) for k in splits})
    bad = [k for k in chosen if not 0 <= k < n_splits]
    if bad or not chosen:
        raise ValueError(f"Split indices must lie in [0, {n_splits}). Got {list(splits)}.")
    return chosen


def _dataset_names(datasets) -> list[str]:
    if datasets == "all" or datasets is None:
        return list(DATASETS)
    if isinstance(datasets, str):
        datasets = [d for d in datasets.split(",") if d]
    names = [canonical(d) for d in datasets]
    return list(dict.fromkeys(names))


def run_uci(method: str, datasets: str | Sequence[str] = "all", *, splits=None, root=None,
            seed: int = 0, quick: bool = False,
            params: dict[str, Any] | None = None, progress: bool | None = None,
            on_epoch_end: Callable[[str, int, dict[str, float]], None] | None = None
            ) -> UCITable:
    """Run ``method`` (a :data:`uncertainty.predictive.REGRESSORS` name) on UCI datasets.

    Parameters
    ----------
    method : str
        "mc-dropout", "ensemble", "heteroscedastic", "mdn" or "bnn".
    datasets : "all", a name/alias, a comma-separated string or a sequence of names.
    splits : None (all), an int ``n`` (the first ``n``) or a sequence of split indices.
    root : data directory (default ``$DUNNO_DATA``, else ``~/.cache/dunno``).
    seed : int
        Seed of every fit.
    quick : bool
        Tiny budgets (smoke tests; the numbers mean nothing).
    params : dict, optional
        Overrides of :func:`default_params` for every dataset (not ``seed``: use the
        ``seed`` argument).
    progress : bool, optional
        Report on stderr (:mod:`dunno.progress`): the epochs of each dataset's training run
        (all its splits train together), the predictions split by split, and one line per
        dataset with its scores. ``None``: as the enclosing call asked (off by default).
    on_epoch_end : callable, optional
        ``on_epoch_end(dataset, epoch, record)`` after every epoch of each dataset's
        training run (the record of :func:`dunno.training.fit`: ``loss``, ``lr``, ...), e.g.
        to write a history file as the benchmark runs.

    Returns
    -------
    UCITable
        One row per dataset, the per-split values and the parameters used.
    """
    if method not in REGRESSORS:
        raise ValueError(
            f"Unknown regression method {method!r}. Available: {', '.join(REGRESSORS)}."
        )
    if params and "seed" in params:
        raise ValueError(
            "The 'params' argument of run_uci cannot set 'seed' (it would be overridden); "
            f"pass seed={params['seed']!r} (dunno uci --seed) instead."
        )
    with reporting(progress, owner="run_uci"):
        return _run_uci(method, _dataset_names(datasets), splits, root, seed, quick, params,
                        on_epoch_end)


def _run_uci(method, names, splits, root, seed, quick, params, on_epoch_end) -> UCITable:
    anchors = ANCHORS[method]
    table = UCITable(method, anchors=anchors)
    t_start = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        n_splits = UCI_SETS[name][2]
        ks = _split_list(splits, n_splits)
        trains = [load_dataset(f"uci/{name}", "train", root, k=k) for k in ks]
        tests = [load_dataset(f"uci/{name}", "test", root, k=k) for k in ks]
        base = default_params(method, name, len(trains[0]), root=root, quick=quick)
        base.update(params or {})
        base["seed"] = seed
        table.params[name] = dict(base)
        data = [(tr.x, tr.y) for tr in trains]
        per_split = None  # every Regressor trains all splits in one run (fit_many)
        if method == "mc-dropout":
            taus = base["tau"] if isinstance(base["tau"], list | tuple) else [base["tau"]]
            per_split = [{"tau": [t * float(tr.y_std) ** 2 for t in taus]} for tr in trains]
        hook = None if on_epoch_end is None else (
            lambda epoch, record, name=name: on_epoch_end(name, epoch, record))
        fitted = make_regressor(method, **base).fit_many(data, per_split, on_epoch_end=hook)
        values: dict[str, list[float]] = {"rmse": [], "test_ll": [], "cov95": [], "crps": []}
        predicting = Progress(fitted, desc=f"uci {method} {name}: predict", unit="split",
                              leave=False)  # the dataset's line below ends it
        for est, tr, te in zip(predicting, trains, tests, strict=True):
            pred = est.predict(te.x).scaled(tr.y_mean.double(), tr.y_std.double())
            for key, value in zip(values, _scores(pred, te.y_original), strict=True):
                values[key].append(value)
        predicting.close()
        minutes = (time.perf_counter() - t0) / 60.0
        row: dict[str, Any] = {"dataset": DATASETS[name], "folder": name, "n_splits": len(ks)}
        for key in ("rmse", "test_ll", "crps"):
            arr = np.asarray(values[key])
            row[key] = float(arr.mean())
            row[f"{key}_se"] = (float(arr.std(ddof=1) / math.sqrt(len(arr)))
                                if len(arr) > 1 else float("nan"))
        row["cov95"] = float(np.mean(values["cov95"]))
        row["minutes"] = minutes
        for anchor in anchors:
            (r_pub, _), (ll_pub, ll_pub_se) = PUBLISHED[anchor][name]
            row[f"{anchor}_rmse"], row[f"{anchor}_ll"] = r_pub, ll_pub
            row[f"{anchor}_ll_se"] = ll_pub_se
            row[f"vs_{anchor}"] = verdict(row["test_ll"], row["test_ll_se"], ll_pub, ll_pub_se)
        table.rows.append(row)
        table.splits[name] = values
        verdicts = " ".join(f"vs {a}: {row[f'vs_{a}']}" for a in anchors)
        write_line(f"[uci {method}] {DATASETS[name]:<9} RMSE {row['rmse']:.3f} ± "
                   f"{row['rmse_se']:.3f}  LL {row['test_ll']:.3f} ± {row['test_ll_se']:.3f}  "
                   f"{verdicts}  ({minutes:.1f} min)")
    table.minutes = (time.perf_counter() - t_start) / 60.0
    return table

