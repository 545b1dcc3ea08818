"""The OOD anchor table: LeNet-5 on MNIST and on Fashion-MNIST, every detector, next to the
numbers measured with pytorch-ood 0.4 around the same LeNet-5 recipe.

::

    python benchmarks/ood_table.py --out runs/ood-benchmark            # ~7 min CPU
    python benchmarks/ood_table.py --out runs/ood-benchmark --timing   # + naive timing
    python benchmarks/ood_table.py --out runs/ood-benchmark --no-lenet --ddu-resnet
    python benchmarks/ood_table.py --in cifar10 --out runs/openood-cifar10 --device cuda

``--in cifar10`` runs the OpenOOD v1.5 protocol instead (``benchmarks/openood_cifar.py``:
a CIFAR-10 ResNet-18, near = CIFAR-100, far = SVHN, MNIST, noise, next to OpenOOD's numbers).

**Recipe** (the anchors'): LeNet-5 (conv 6/16, fc 120/84/10, ReLU, 84-d penultimate
features) trained 5 epochs with Adam (lr 1e-3, constant), batch 128, no augmentation, seeded
(:class:`dunno.classify.ClassifierConfig` with ``schedule="constant", augment=False``); the
weights of the epoch with the lowest validation loss are kept. Detectors are fitted on the
55 000-image ``train`` split and evaluated on the 10 000 ``test`` images against
Fashion-MNIST / MNIST, Gaussian noise, the rendered ``letters`` (near-OOD characters,
:mod:`dunno.data.letters`) and two shifts (rotation by 90 degrees, inversion). ``--detectors
all`` (the default) runs every registered classifier detector that applies, so detectors added
to the registry join the table by themselves; ``default`` (``combined``, its components chosen
by ``benchmarks/select_default.py`` from in-distribution data alone, none of these OOD sets)
is among them and is summarised against target (4). Checkpoints already in ``out`` are
reused (``select_default.py`` with the same ``--out`` shares them). ``--timing`` also times
the MNIST run against every detector with its own passes (``benchmarks/bench_ood_shared.py``).

**Targets** (issue 10): (1) per anchor row, our best detector >= the row's best peer;
(2) one detector with AUROC >= 99% on all four rows; (3) DDU on a spectrally normalised
ResNet, Fashion-MNIST -> MNIST >= 99% (``--ddu-resnet``: a ResNet-8 per seed of
``--resnet-seeds``, options :data:`DDU_RESNET`, trained for ``--resnet-epochs`` epochs on the
CPU; DDU on the penultimate features and on pooled outputs of the last two stages,
:data:`DDU_FEATURES`); (4) the default detector >= 99% on every OOD set of both anchors,
near-OOD letters included.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.checkpoints import load_model  # noqa: E402
from dunno.classify import ClassifierConfig, train_classifier  # noqa: E402
from dunno.reporting import markdown_table, write_json  # noqa: E402
from evaluation.benchmarks.ood import write_ood_report  # noqa: E402
from uncertainty.ood import OODTable, run_ood  # noqa: E402
from uncertainty.ood.outputs import LayerSpec  # noqa: E402
from uncertainty.ood.registry import DEFAULT_DETECTOR  # noqa: E402

__all__ = ["ANCHORS", "PEERS", "SETTINGS", "anchor_rows", "default_summary", "main",
           "run_anchor_table", "train_lenet"]

#: The peer detectors of the anchor table, in its column order.
PEERS = ("MSP", "MaxLogit", "Energy", "ODIN", "Mahalanobis", "kNN (k=50)", "ViM",
         "class-wise GMM")

#: AUROC (%) measured with pytorch-ood 0.4 around the same LeNet-5 recipe (issue 10).
ANCHORS: dict[tuple[str, str], tuple[float, ...]] = {
    ("mnist", "fashion-mnist"): (98.97, 99.73, 99.74, 99.74, 84.35, 98.69, 88.56, 92.02),
    ("mnist", "gaussian-noise"): (99.83, 100.0, 100.0, 100.0, 77.55, 95.68, 69.90, 82.83),
    ("fashion-mnist", "mnist"): (76.07, 84.54, 84.97, 84.35, 99.34, 98.45, 99.36, 99.61),
    ("fashion-mnist", "gaussian-noise"): (92.72, 98.54, 98.98, 99.64, 80.25, 99.34, 87.20, 90.92),
}

#: In-distribution set -> OOD sets evaluated.
SETTINGS: dict[str, tuple[str, ...]] = {
    "mnist": ("fashion-mnist", "gaussian-noise", "letters", "mnist:rotate=90", "mnist:invert"),
    "fashion-mnist": ("mnist", "gaussian-noise", "letters", "fashion-mnist:rotate=90",
                      "fashion-mnist:invert"),
}

#: Target (4): the default detector's AUROC (%) on every OOD set of both anchors.
DEFAULT_TARGET = 99.0


def _run(model, in_data: str, out_sets, detectors, out: Path, *, quiet: bool, **kwargs
         ) -> OODTable:
    """:func:`uncertainty.ood.run_ood`, its files written to ``out``."""
    table = run_ood(model, in_data, list(out_sets), detectors, **kwargs)
    write_ood_report(table, out)
    if not quiet:
        print(table.summary())
    return table


def _compare_shared_vs_naive(*args, **kwargs) -> dict[str, Any]:
    """:func:`compare_shared_vs_naive` of ``bench_ood_shared.py`` next to this file."""
    path = Path(__file__).resolve().parent / "bench_ood_shared.py"
    spec = importlib.util.spec_from_file_location("bench_ood_shared", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compare_shared_vs_naive(*args, **kwargs)


def train_lenet(data: str, out: Path, *, seed: int = 0, device: str = "cpu", root=None,
                quiet: bool = True):
    """The anchor recipe on ``data`` (reusing ``out/model.pt``); returns ``(model, metrics)``."""
    ckpt = out / "model.pt"
    if ckpt.exists():
        return load_model(ckpt, device=device), {"reused": str(ckpt)}
    config = ClassifierConfig(backbone="lenet5", data=data, epochs=5, batch_size=128, lr=1e-3,
                              schedule="constant", augment=False, seed=seed, device=device)
    result = train_classifier(config, out=out, root=root, progress=not quiet)
    return result.model, result.metrics


def anchor_rows(tables: dict[str, OODTable]) -> list[dict[str, Any]]:
    """One row per anchor row: the peers' best, ours per detector, our best, target (1)."""
    rows = []
    for (in_data, out_set), peers in ANCHORS.items():
        if in_data not in tables:
            continue
        table = tables[in_data]
        ours = {r["detector"]: 100 * r["auroc"] for r in table.rows if r["ood_set"] == out_set}
        best_peer = max(peers)
        best = max(ours, key=ours.get)
        rows.append({
            "in -> out": f"{in_data} -> {out_set}",
            "peer best": f"{best_peer:.2f} ({PEERS[peers.index(best_peer)]})",
            **{name: ours[name] for name in table.detectors},
            "our best": f"{ours[best]:.2f} ({best})",
            "target 1": "met" if round(ours[best], 2) >= best_peer else "missed",
        })
    return rows


def default_summary(tables: dict[str, OODTable]) -> dict[str, Any]:
    """Every detector's worst AUROC (%) over each table's OOD sets and over all of them, and
    whether the default (:data:`~uncertainty.ood.registry.DEFAULT_DETECTOR`) reaches
    :data:`DEFAULT_TARGET` on every set."""
    worst: dict[str, dict[str, float]] = {}
    for in_data, table in tables.items():
        for row in table.rows:
            cell = worst.setdefault(row["detector"], {})
            cell[in_data] = min(cell.get(in_data, 100.0), 100 * row["auroc"])
    rows = [{"detector": d, **{k: v.get(k) for k in tables}, "worst": min(v.values())}
            for d, v in worst.items() if len(v) == len(tables)]
    default = next((r for r in rows if r["detector"] == DEFAULT_DETECTOR), None)
    below = [] if default is None else [
        {"in": i, "out": r["ood_set"], "auroc": 100 * r["auroc"]}
        for i, t in tables.items() for r in t.rows
        if r["detector"] == DEFAULT_DETECTOR and 100 * r["auroc"] < DEFAULT_TARGET]
    return {"rows": sorted(rows, key=lambda r: -r["worst"]), "default": DEFAULT_DETECTOR,
            "params": next((t.params.get(DEFAULT_DETECTOR) for t in tables.values()), None),
            "target": None if default is None else ("met" if not below else "missed"),
            "below_target": below}


def run_anchor_table(
    out: str | Path = "runs/ood-benchmark",
    *,
    seed: int = 0,
    detectors: str = "all",
    device: str = "cpu",
    root=None,
    timing: bool = False,
    ddu_resnet: bool = False,
    resnet_epochs: int = 12,
    resnet_seeds: tuple[int, ...] = (0, 1),
    lenet: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train (or reuse) both LeNet-5 models, run every detector, compare with the anchors.

    Writes ``out/<in-data>-seed<seed>/`` (the
    :func:`~evaluation.benchmarks.ood.write_ood_report` files), ``out/benchmark-seed<seed>.md``
    and ``.json`` (``benchmark-resnet-seed<seed>.*`` with ``lenet=False``); returns what it
    wrote.
    """
    out = Path(out)
    if detectors.strip() != "all":  # the default detector always runs (target 4)
        detectors = f"{detectors},default"
    t_start = time.perf_counter()
    tables: dict[str, OODTable] = {}
    training: dict[str, Any] = {}
    for in_data, out_sets in SETTINGS.items() if lenet else ():
        t0 = time.perf_counter()
        model, metrics = train_lenet(in_data, out / f"lenet5-{in_data}-seed{seed}", seed=seed,
                                     device=device, root=root)
        training[in_data] = {**metrics, "seconds": time.perf_counter() - t0}
        tables[in_data] = _run(model, in_data, out_sets, detectors, out / f"{in_data}-seed{seed}",
                               quiet=quiet, root=root, device=device)
    report: dict[str, Any] = {"seed": seed, "training": training,
                              "tables": {k: t.to_dict() for k, t in tables.items()}}
    if lenet:
        report["anchor_rows"] = anchor_rows(tables)
        both = [d for d in tables["mnist"].detectors if d in tables["fashion-mnist"].detectors]
        four = {d: [100 * r["auroc"] for (i, o) in ANCHORS for t in (tables[i],)
                    for r in t.rows if r["detector"] == d and r["ood_set"] == o] for d in both}
        report["min_over_anchor_rows"] = {d: min(v) for d, v in four.items()}
        report["target_2"] = [d for d, v in four.items() if min(v) >= 99.0]
        report["default_summary"] = default_summary(tables)
    if timing and lenet:
        model = load_model(out / f"lenet5-mnist-seed{seed}" / "model.pt", device=device)
        t = _compare_shared_vs_naive(model, "mnist", list(SETTINGS["mnist"]), detectors,
                                    root=root, device=device, warmup=300)  # as the script
        report["timing"] = {k: v for k, v in t.items() if k != "table"}
    if ddu_resnet:
        report["ddu_resnet"] = _ddu_resnet(out, seeds=resnet_seeds, epochs=resnet_epochs,
                                           device=device, root=root, quiet=quiet)
    report["minutes"] = (time.perf_counter() - t_start) / 60
    text = _markdown(report, tables)
    stem = f"benchmark-seed{seed}" if lenet else f"benchmark-resnet-seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text)
    write_json(report, out / f"{stem}.json")
    if not quiet:
        print(text)
    return report


#: The backbone of target 3: ResNet-8 with soft spectral normalisation (c = 3) of every
#: convolution and batch norm and leaky ReLUs (DDU's inductive biases, DUE's bounded batch norm).
DDU_RESNET = {"depth": 8, "spectral_norm": True, "spectral_bn": True, "leaky_relu": True,
              "sn_coeff": 3.0}

#: Where DDU reads its features: the penultimate layer (the paper's choice), the spatially
#: averaged outputs of the last two stages, concatenated, and the same with the middle stage
#: pooled to 2 x 2 cells instead of 1 (its four quadrant averages).
DDU_FEATURES: dict[str, LayerSpec] = {
    "penultimate": None, "stages.1+stages.2": ("stages.1", "stages.2"),
    "stages.1@2+stages.2": ("stages.1@2", "stages.2")}


def _ddu_resnet(out: Path, *, seeds, epochs: int, device: str, root, quiet: bool,
                fit_size: int | None = None, out_sets=None):
    """Train (or reuse) the spectrally normalised ResNet-8 per seed (Adam 1e-3, cosine, batch
    128, random crops) and score Fashion-MNIST against its OOD sets (``out_sets``, default
    those of :data:`SETTINGS`; the summary needs ``mnist``) with DDU, Mahalanobis and kNN on
    each feature choice of :data:`DDU_FEATURES` (fitted on the whole ``train`` split, or a
    seeded ``fit_size`` subset)."""
    out_sets = SETTINGS["fashion-mnist"] if out_sets is None else tuple(out_sets)
    runs = []
    for seed in seeds:
        ckpt = out / f"resnet8-sn-sbn-fashion-mnist-e{epochs}-seed{seed}" / "model.pt"
        t0 = time.perf_counter()
        if ckpt.exists():
            model, metrics = load_model(ckpt, device=device), {"reused": str(ckpt)}
        else:
            config = ClassifierConfig(
                backbone="resnet", data="fashion-mnist", epochs=epochs, batch_size=128, lr=1e-3,
                schedule="cosine", seed=seed, device=device, options=dict(DDU_RESNET))
            result = train_classifier(config, out=ckpt.parent, root=root)
            model, metrics = result.model, result.metrics
        run: dict[str, Any] = {"seed": seed, "training": metrics,
                               "train_seconds": time.perf_counter() - t0, "tables": {}}
        for label, layer in DDU_FEATURES.items():
            table = _run(model, "fashion-mnist", out_sets, "ddu,mahalanobis,knn",
                         out / f"resnet8-sn-sbn-e{epochs}-seed{seed}-{label}", quiet=quiet,
                         root=root, device=device, layer=layer, fit_size=fit_size)
            run["tables"][label] = table.to_dict()
            run["accuracy"] = table.accuracy
        runs.append(run)
    summary = []
    for label in DDU_FEATURES:
        values = [100 * r["auroc"] for run in runs for r in run["tables"][label]["rows"]
                  if r["detector"] == "ddu" and r["ood_set"] == "mnist"]
        summary.append({"features": label, "per seed": ", ".join(f"{v:.2f}" for v in values),
                        "mean": sum(values) / len(values), "min": min(values)})
    return {"epochs": epochs, "options": DDU_RESNET, "runs": runs, "summary": summary}


def _markdown(report: dict[str, Any], tables: dict[str, OODTable]) -> str:
    parts = [f"# OOD anchor table (seed {report['seed']}, {report['minutes']:.1f} min)", ""]
    for in_data, table in tables.items():
        acc = 100 * table.accuracy
        parts += [f"## in-distribution {in_data} (LeNet-5, test accuracy {acc:.2f}%)", "",
                  "AUROC (%):", "", table.to_markdown("auroc"), "",
                  "All metrics (%):", "", table.to_markdown(), ""]
    if "anchor_rows" in report:
        parts += ["## Against the pytorch-ood anchors (AUROC %)", "",
                  markdown_table(report["anchor_rows"], digits=2), "",
                  "Minimum AUROC over the four anchor rows: "
                  + ", ".join(f"{d} {v:.2f}" for d, v in report["min_over_anchor_rows"].items()),
                  "", f"Target 2 (>= 99 on all four rows): {report['target_2'] or 'none'}", ""]
    if "default_summary" in report:
        summary = report["default_summary"]
        params = summary["params"] or {}
        below = ", ".join(f"{b['in']} -> {b['out']} {b['auroc']:.2f}"
                          for b in summary["below_target"]) or "none"
        parts += ["## Worst AUROC (%) over every OOD set", "",
                  markdown_table(summary["rows"], digits=2), "",
                  f"Default detector: `{summary['default']}` (components "
                  f"{params.get('components')}, reduce {params.get('reduce')!r}); target 4 "
                  f"(>= {DEFAULT_TARGET:g} on every set of both anchors): "
                  f"{summary['target'] or 'not run'}; below it: {below}", ""]
    if "timing" in report:
        t = report["timing"]
        parts += ["## Shared passes vs every detector with its own passes (MNIST)", "",
                  f"shared: {t['shared_seconds']:.1f} s (forward passes "
                  f"{t['shared_forward_seconds']:.1f} s); naive: {t['naive_seconds']:.1f} s; "
                  f"speed-up {t['speedup']:.2f}x; largest score difference "
                  f"{t['max_abs_score_difference']:.2g}", ""]
    if "ddu_resnet" in report:
        r = report["ddu_resnet"]
        parts += [f"## DDU on a spectrally normalised ResNet-8 (Fashion-MNIST, {r['epochs']} "
                  f"epochs, options {r['options']})", "",
                  "DDU AUROC (%), Fashion-MNIST -> MNIST, per seed:", "",
                  markdown_table(r["summary"], digits=2), ""]
        for run in r["runs"]:
            for label, table in run["tables"].items():
                rows = [{k: v for k, v in row.items() if k not in ("n_in", "n_out")}
                        for row in table["rows"]]
                parts += [f"### seed {run['seed']}, features {label} (test accuracy "
                          f"{100 * run['accuracy']:.2f}%)", "", markdown_table(rows, digits=4), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python benchmarks/ood_table.py --out runs/ood-benchmark``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if _openood_in_data(argv) == "cifar10":  # the OpenOOD v1.5 protocol: openood_cifar.py
        return _load_sibling("openood_cifar").main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ood-benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--timing", action="store_true",
                        help="also time every detector with its own passes (MNIST)")
    parser.add_argument("--ddu-resnet", action="store_true",
                        help="also train spectrally normalised ResNet-8s on Fashion-MNIST")
    parser.add_argument("--resnet-epochs", type=int, default=12)
    parser.add_argument("--resnet-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--no-lenet", action="store_true",
                        help="skip the LeNet-5 tables (e.g. with --ddu-resnet alone)")
    args = parser.parse_args(argv)
    return run_anchor_table(args.out, seed=args.seed, detectors=args.detectors,
                            device=args.device, root=args.data_dir, timing=args.timing,
                            ddu_resnet=args.ddu_resnet, resnet_epochs=args.resnet_epochs,
                            resnet_seeds=tuple(args.resnet_seeds),
                            lenet=not args.no_lenet)



# --------------------------------------------------------------------------- OpenOOD CIFAR-10
def _openood_in_data(argv: list[str]) -> str | None:
    """The value of ``--in`` in ``argv`` (``--in cifar10`` runs ``openood_cifar.py``)."""
    for i, arg in enumerate(argv):
        if arg == "--in" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--in="):
            return arg.partition("=")[2]
    return None


def _load_sibling(name: str):
    """The module ``benchmarks/<name>.py`` next to this file, loaded by path."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
