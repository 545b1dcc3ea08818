"""The OpenOOD v1.5 protocol on CIFAR-10: a ResNet-18 trained on CIFAR-10, every detector
against near-OOD (CIFAR-100) and far-OOD sets (SVHN, MNIST at 32x32 RGB, Gaussian noise),
AUROC per set and the mean per group, next to OpenOOD v1.5's published numbers.

Run through the table runner (or this file directly, with the same options)::

    python benchmarks/ood_table.py --in cifar10 --out runs/openood-cifar10 --device cuda
    python benchmarks/ood_table.py --in cifar10 --checkpoint runs/resnet18/model.pt \\
        --out runs/openood-cifar10 --device cuda
    python benchmarks/ood_table.py --in cifar10 --smoke --data-dir TINY --out /tmp/smoke

**Model.** ``--checkpoint FILE`` takes a trained classifier (a project checkpoint, a
TorchScript file or a ``torch.export`` program; it must take CIFAR-10 images ``(N, 3, 32, 32)``
in [0, 1]). Without it the recipe below trains ``resnet18-cifar`` into
``OUT/resnet18-cifar-cifar10-seed<seed>/`` (reused when its ``model.pt`` exists).

**Recipe** (:data:`RECIPE`, the common CIFAR ResNet-18 recipe, >= 94% test accuracy):
SGD with Nesterov momentum 0.9, lr 0.1, weight decay 5e-4, cosine schedule over 200 epochs
(per batch), batch 128, random 32x32 crops from the image zero-padded by 4 pixels and random
horizontal flips, per-channel normalisation by the training split's mean and std (inside the
network), 45 000 training images (5 000 held out for validation; the weights of the epoch
with the lowest validation loss are kept). OpenOOD v1.5 trains its ResNet-18 for 100 epochs
(``configs/pipelines/train/baseline.yml``: SGD, lr 0.1, momentum 0.9, weight decay 5e-4).

**Protocol.** Detectors are fitted on the ``train`` split and scored on the 10 000 CIFAR-10 test
images against the test splits of the OOD sets (noise: 10 000 images shaped like CIFAR-10). MNIST
is resized to 32x32 by bilinear interpolation and its grey channel repeated three times, as
OpenOOD feeds it (``Resize(32)``, ``convert("RGB")``). AUROC (%) per set; ``near`` is the mean
over :data:`NEAR`, ``far`` the mean over the far sets run.

**Published numbers** (:data:`OPENOOD_V15_CIFAR10`): OpenOOD v1.5 (Zhang et al. 2023,
"OpenOOD v1.5: Enhanced Benchmark for Out-of-Distribution Detection"), CIFAR-10, ResNet-18
trained with cross-entropy, post-hoc detectors, near-OOD and far-OOD AUROC (%), mean ± std
over three training runs, as in the results table of the OpenOOD repository
(``results/cifar10.csv``, rows ``CrossEntropy``; in-distribution accuracy 95.06 ± 0.30), for
the nine detectors both have (not ASH: which of our three variants OpenOOD's is was not
established). The groups differ: OpenOOD's near-OOD mean is over CIFAR-100 and TinyImageNet,
its far-OOD mean over MNIST, SVHN, Textures and Places365; ours over CIFAR-100, and over SVHN,
MNIST and Gaussian noise. The detectors' hyper-parameters are our defaults, OpenOOD's settings:
``odin`` T = 1000 and a step of 0.0014 in pixel units (OpenOOD's ``odin.yml`` steps by
0.0014 / std in normalised units, the same pixel step); ``knn`` k = 50 on unit-length
penultimate features (``knn.yml``); ``mahalanobis`` class means and a shared covariance of the
penultimate features, no input pre-processing (OpenOOD's MDS); ``react`` and ``dice`` p = 90;
``scale`` p = 85. Two differences remain: OpenOOD estimates ReAct's threshold on its validation
split (ours: the training split) and re-tunes SCALE's percentile on OOD validation data (ours
stays at 85).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.checkpoints import atomic_write_text, load_model  # noqa: E402
from dunno.classify import ClassifierConfig, train_classifier  # noqa: E402
from dunno.data import ArrayDataset, DatasetInfo, load_dataset, resize_images  # noqa: E402
from dunno.models import load_any_model  # noqa: E402
from dunno.reporting import markdown_table, write_json  # noqa: E402
from evaluation.benchmarks.ood import write_ood_report  # noqa: E402
from uncertainty.ood import OODTable, run_ood  # noqa: E402

__all__ = ["FAR", "NEAR", "OPENOOD_V15_CIFAR10", "RECIPE", "SMOKE", "grouped_rows", "main",
           "mnist_32_rgb", "run_openood_cifar10"]

#: Our detector -> (OpenOOD's name, near AUROC, its std, far AUROC, its std), in %: OpenOOD
#: v1.5, CIFAR-10, ResNet-18 (cross-entropy, 100 epochs), results/cifar10.csv of the OpenOOD
#: repository (Jingkang50/OpenOOD).
OPENOOD_V15_CIFAR10: dict[str, tuple[str, float, float, float, float]] = {
    "msp": ("MSP", 88.03, 0.25, 90.73, 0.43),
    "maxlogit": ("MLS", 87.52, 0.47, 91.10, 0.89),
    "energy": ("EBO", 87.58, 0.46, 91.21, 0.92),
    "odin": ("ODIN", 82.87, 1.85, 87.96, 0.61),
    "mahalanobis": ("MDS", 84.20, 2.40, 89.72, 1.36),
    "knn": ("KNN", 90.64, 0.20, 92.96, 0.14),
    "react": ("ReAct", 87.11, 0.61, 90.42, 1.41),
    "dice": ("DICE", 78.34, 0.79, 84.23, 1.89),
    "scale": ("SCALE", 82.55, 0.36, 86.39, 1.86),
}
#: OpenOOD's in-distribution test accuracy of those models (%).
OPENOOD_ACCURACY = 95.06

#: Near-OOD and far-OOD sets; ``mnist`` means MNIST at 32x32 RGB (:func:`mnist_32_rgb`).
NEAR: tuple[str, ...] = ("cifar100",)
FAR: tuple[str, ...] = ("svhn", "mnist", "gaussian-noise")

#: The training recipe (``ClassifierConfig`` fields) when no ``--checkpoint`` is given.
RECIPE: dict[str, Any] = {"backbone": "resnet18-cifar", "data": "cifar10", "epochs": 200,
                          "batch_size": 128, "lr": 0.1, "optimizer": "sgd",
                          "weight_decay": 5e-4, "schedule": "cosine"}
#: ``--smoke``: one short epoch, the detectors of the comparison but ODIN (whose own forward
#: and backward passes would double the time; its tests are in tests/uncertainty), k = 2.
SMOKE: dict[str, Any] = {"epochs": 1, "batch_size": 8, "lr": 0.01,
                         "detectors": ",".join(d for d in OPENOOD_V15_CIFAR10 if d != "odin"),
                         "detector_params": {"knn": {"k": 2}}}


def mnist_32_rgb(root=None) -> ArrayDataset:
    """MNIST's 10 000 test images as CIFAR-shaped inputs ``(N, 3, 32, 32)`` in [0, 1]:
    bilinear resize 28 -> 32 and the grey channel repeated (:func:`dunno.data.resize_images`)."""
    test = load_dataset("mnist", "test", root)
    x = resize_images(test.x, 32, channels=3)  # (N, 3, 32, 32)
    info = DatasetInfo("mnist-32x32-rgb", "image", (3, 32, 32), 10, (0.0, 1.0),
                       "MNIST test images resized to 32x32, grey repeated as RGB")
    return ArrayDataset(x, test.y, info)


def _out_sets(names, root) -> dict[str, Any]:
    return {name: mnist_32_rgb(root) if name == "mnist" else name for name in names}


def grouped_rows(table: OODTable, near=NEAR, far=FAR) -> list[dict[str, Any]]:
    """One row per detector: AUROC (%) per set, ``near`` / ``far`` means over the sets of each
    group that ran, and OpenOOD v1.5's near / far AUROC where it has the detector."""
    auroc = {(r["detector"], r["ood_set"]): 100 * r["auroc"] for r in table.rows}
    near = [s for s in near if s in table.out_sets]
    far = [s for s in far if s in table.out_sets]
    rows = []
    for det in table.detectors:
        row: dict[str, Any] = {"detector": det}
        for group, sets in (("near", near), ("far", far)):
            row.update({s: auroc[det, s] for s in sets})
            row[f"{group} mean"] = sum(auroc[det, s] for s in sets) / len(sets) if sets else None
            published = OPENOOD_V15_CIFAR10.get(det)
            value, std = (published[1:3] if group == "near" else published[3:5]) if published \
                else (None, None)
            row[f"OpenOOD {group}"] = None if value is None else f"{value:.2f} ± {std:.2f}"
        rows.append(row)
    return rows


def _model(checkpoint, out: Path, seed: int, device: str, root, smoke: bool, quiet: bool):
    if checkpoint is not None:
        return load_any_model(checkpoint, device=device), {"checkpoint": str(checkpoint)}
    run = out / f"resnet18-cifar-cifar10-seed{seed}"
    if (run / "model.pt").exists():
        return load_model(run / "model.pt", device=device), {"reused": str(run / "model.pt")}
    overrides = {k: SMOKE[k] for k in ("epochs", "batch_size", "lr")} if smoke else {}
    config = ClassifierConfig(**{**RECIPE, **overrides, "seed": seed, "device": device})
    result = train_classifier(config, out=run, root=root, progress=not quiet)
    return result.model, result.metrics


def run_openood_cifar10(out: str | Path = "runs/openood-cifar10", *, checkpoint=None,
                        near=NEAR, far=FAR, detectors: str = "all", seed: int = 0,
                        device: str = "cpu", root=None, batch_size: int = 512,
                        smoke: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train (or load) the CIFAR-10 model, run the detectors on the near and far sets, and
    write ``out/ood/`` (:func:`~evaluation.benchmarks.ood.write_ood_report`; not with
    ``smoke``),
    ``out/openood-cifar10-seed<seed>.md`` and ``.json``; returns the report."""
    out = Path(out)
    t0 = time.perf_counter()
    model, training = _model(checkpoint, out, seed, device, root, smoke, quiet)
    params = SMOKE["detector_params"] if smoke else None
    detectors = SMOKE["detectors"] if smoke and detectors == "all" else detectors
    table = run_ood(model, "cifar10", _out_sets([*near, *far], root), detectors, root=root,
                    device=device, batch_size=batch_size, detector_params=params, seed=seed)
    if not smoke:  # the ROC figures take longer than the tiny run itself
        write_ood_report(table, out / "ood", histograms=False)
    rows = grouped_rows(table, near, far)
    report = {"seed": seed, "training": training, "accuracy": table.accuracy,
              "near": list(near), "far": list(far), "rows": rows, "table": table.to_dict(),
              "openood_v15": {k: list(v) for k, v in OPENOOD_V15_CIFAR10.items()},
              "minutes": (time.perf_counter() - t0) / 60, "smoke": smoke}
    text = _markdown(report)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(text, out / f"openood-cifar10-seed{seed}.md")
    write_json(report, out / f"openood-cifar10-seed{seed}.json")
    if not quiet:
        print(text)
    return report


def _markdown(report: dict[str, Any]) -> str:
    acc = report["accuracy"]
    return "\n".join([
        f"# OpenOOD v1.5 protocol, CIFAR-10 (seed {report['seed']}, {report['minutes']:.1f} min"
        + (", smoke run: tiny data, meaningless numbers" if report["smoke"] else "") + ")", "",
        f"In-distribution test accuracy: {100 * acc:.2f}% (OpenOOD v1.5's ResNet-18: "
        f"{OPENOOD_ACCURACY}%).", "",
        f"AUROC (%); near = mean over {', '.join(report['near'])}; far = mean over "
        f"{', '.join(report['far'])}. OpenOOD columns: its v1.5 results for the same detector "
        "(near: CIFAR-100 + TinyImageNet; far: MNIST, SVHN, Textures, Places365).", "",
        markdown_table(report["rows"], digits=2), ""])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of this protocol (shared with ``ood_table.py --in cifar10``)."""
    parser.add_argument("--in", dest="in_data", default="cifar10", choices=["cifar10"])
    parser.add_argument("--out", default="runs/openood-cifar10")
    parser.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="a trained CIFAR-10 classifier (None: train the recipe)")
    parser.add_argument("--near", default=",".join(NEAR), help="near-OOD sets")
    parser.add_argument("--far", default=",".join(FAR),
                        help="far-OOD sets (mnist: MNIST at 32x32 RGB)")
    parser.add_argument("--detectors", default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--smoke", action="store_true",
                        help="one short epoch, the compared detectors but ODIN: a check that it "
                        "runs (tiny data)")
    parser.add_argument("--quiet", action="store_true")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python benchmarks/openood_cifar.py --out runs/openood-cifar10 --device cuda``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_openood_cifar10(
        args.out, checkpoint=args.checkpoint, near=_split(args.near), far=_split(args.far),
        detectors=args.detectors, seed=args.seed, device=args.device, root=args.data_dir,
        batch_size=args.batch_size, smoke=args.smoke, quiet=args.quiet)


def _split(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


if __name__ == "__main__":
    main()
