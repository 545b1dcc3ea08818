"""Speed of the OOD suite's shared passes: :func:`uncertainty.ood.run_ood` (one forward pass
per dataset, every detector fitted and scored from the cached outputs) against a naive loop in
which every detector makes its own passes (``fit(data)`` then ``score(x)`` per set), on the
same model, data and detectors in the same run.

    python benchmarks/bench_ood_shared.py --checkpoint runs/lenet5-mnist/model.pt --in mnist \\
        --out fashion-mnist,gaussian-noise,mnist:rotate=90,mnist:invert

Both compute the same scores (checked: the largest absolute difference is printed). The
ratio is naive time / shared time (> 1: the shared passes are faster); what remains of the
shared run is the detectors' own passes (ODIN, Mahalanobis with input pre-processing, RaPP)
and their fitting.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.devices import resolve_device  # noqa: E402
from dunno.reporting import format_table, write_json  # noqa: E402
from uncertainty.ood import run_ood  # noqa: E402
from uncertainty.ood.outputs import LayerSpec  # noqa: E402
from uncertainty.ood.suite import DensityInputs, build_detectors, load_ood_data  # noqa: E402

__all__ = ["compare_shared_vs_naive", "main"]


def compare_shared_vs_naive(
    model: nn.Module | None,
    in_data: str,
    out_sets,
    detectors="all",
    *,
    density: nn.Module | None = None,
    density_inputs: DensityInputs | None = None,
    background: nn.Module | None = None,
    root=None,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    fit_split: str = "train",
    fit_size: int | None = None,
    detector_params: dict[str, dict[str, Any]] | None = None,
    layer: LayerSpec = None,
    seed: int = 0,
    warmup: int = 0,
) -> dict[str, Any]:
    """Wall time of :func:`uncertainty.ood.run_ood` against every detector with its own passes
    (arguments as for ``run_ood``).

    ``warmup > 0`` first runs ``run_ood`` untimed on the first ``warmup`` examples of each set
    (fit, test and OOD), so that one-time costs of the process (the first ``torch.func.vmap``
    of GradNorm, kernel set-up) fall on neither timed run instead of on the shared run, which
    is timed first.

    Returns
    -------
    dict
        ``shared_seconds``, ``naive_seconds``, ``speedup`` (naive / shared, wall time), the
        same in process CPU time (``shared_cpu_seconds``, ``naive_cpu_seconds``,
        ``cpu_speedup``), ``shared_searches`` (the run's shared kNN searches),
        ``naive_per_detector`` and ``shared_per_detector`` (seconds; shared: fit + score from
        the cached outputs), ``naive_cpu_per_detector``, ``shared_forward_seconds``,
        ``max_abs_score_difference``, and the
        :class:`~uncertainty.ood.OODTable` of the shared run (``table``).
    """
    if warmup > 0:
        fit, test, oods = load_ood_data(in_data, out_sets, fit_split=fit_split,
                                        fit_size=fit_size, seed=seed, root=root)
        run_ood(model, ((fit.x[:warmup], fit.y[:warmup]), (test.x[:warmup], test.y[:warmup])),
                {name: ds.x[:warmup] for name, ds in oods.items()}, detectors, density=density,
                density_inputs=density_inputs,
                background=background, device=device, batch_size=batch_size,
                detector_params=detector_params, layer=layer, seed=seed)
    cpu_start = time.process_time()
    table = run_ood(model, in_data, out_sets, detectors, density=density,
                    density_inputs=density_inputs, background=background, root=root,
                    device=device, batch_size=batch_size, fit_split=fit_split,
                    fit_size=fit_size, detector_params=detector_params, layer=layer, seed=seed)
    shared = table.timings["total"]
    shared_cpu = time.process_time() - cpu_start
    device = resolve_device(device)
    if model is not None:
        model = model.to(device).eval()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    fit, test, oods = load_ood_data(in_data, out_sets, fit_split=fit_split, fit_size=fit_size,
                                    seed=seed, root=root)
    dets = build_detectors(table.detectors, model, device=device,
                           detector_params=detector_params, layer=layer, density=density,
                           background=background, num_dims=math.prod(test.x.shape[1:]))
    per_det, per_det_cpu, worst = {}, {}, 0.0
    for name, det in dets.items():
        t0, c0 = time.perf_counter(), time.process_time()

        def prepared(ds, split, det=det):
            if det.uses_density and density_inputs is not None:
                return density_inputs(ds, split)
            return ds

        det.fit(prepared(fit, fit_split), batch_size=batch_size)
        s_in = det.score(prepared(test, "test").x, batch_size=batch_size).cpu()
        worst = max(worst, float((s_in - table.scores[name]["in"]).abs().max()))
        for set_name, ds in oods.items():
            s = det.score(prepared(ds, "test").x, batch_size=batch_size).cpu()
            worst = max(worst, float((s - table.scores[name][set_name]).abs().max()))
        per_det[name] = time.perf_counter() - t0
        per_det_cpu[name] = time.process_time() - c0
    naive = time.perf_counter() - t_start
    naive_cpu = time.process_time() - cpu_start
    return {
        "shared_seconds": shared,
        "naive_seconds": naive,
        "speedup": naive / shared if shared > 0 else float("nan"),
        "shared_cpu_seconds": shared_cpu,
        "naive_cpu_seconds": naive_cpu,
        "cpu_speedup": naive_cpu / shared_cpu if shared_cpu > 0 else float("nan"),
        "shared_searches": table.timings.get("shared_searches"),
        "naive_per_detector": per_det,
        "naive_cpu_per_detector": per_det_cpu,
        "shared_per_detector": {n: table.timings["fit"][n] + table.timings["score"][n]
                                for n in table.detectors},
        "shared_forward_seconds": table.timings["shared_forward_total"],
        "max_abs_score_difference": worst,
        "table": table,
    }


def _loadavg() -> str | None:
    """The 1/5/15-minute load averages (``/proc/loadavg``), or None where there is none."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python benchmarks/bench_ood_shared.py --checkpoint CKPT --in mnist --out SETS``."""
    from dunno.checkpoints import load_model
    from evaluation.benchmarks.ood import density_inputs_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a classifier checkpoint")
    parser.add_argument("--density", default=None, help="a density-model checkpoint")
    parser.add_argument("--background", default=None,
                        help="a background checkpoint for likelihood-ratio")
    parser.add_argument("--in", dest="in_data", required=True, help="in-distribution data")
    parser.add_argument("--out", dest="out_sets", required=True, help="OOD sets, comma-separated")
    parser.add_argument("--detectors", default="all", help="comma-separated, or all")
    parser.add_argument("--fit-size", type=int, default=None, help="seeded fit subset")
    parser.add_argument("--batch-size", type=int, default=512, help="batch size")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | ...")
    parser.add_argument("--data-dir", default=None, help="data directory")
    parser.add_argument("--json", default=None, help="also write the timings here")
    parser.add_argument("--warmup", type=int, default=300,
                        help="examples per set of an untimed run first (0: none)")
    args = parser.parse_args(argv)
    if args.checkpoint is None and args.density is None:
        parser.error("pass --checkpoint, --density, or both")
    model = None if args.checkpoint is None else load_model(args.checkpoint, device=args.device)
    density = None if args.density is None else load_model(args.density, device=args.device)
    background = None if args.background is None else load_model(args.background,
                                                                 device=args.device)
    load_start = _loadavg()
    timing = compare_shared_vs_naive(
        model, args.in_data, args.out_sets, args.detectors, density=density,
        density_inputs=density_inputs_for(density), background=background,
        root=args.data_dir, device=args.device, batch_size=args.batch_size,
        fit_size=args.fit_size, warmup=args.warmup)
    rows = [{"detector": n, "shared (fit + score) s": timing["shared_per_detector"][n],
             "own passes s": timing["naive_per_detector"][n],
             "own passes CPU s": timing["naive_cpu_per_detector"][n]}
            for n in timing["naive_per_detector"]]
    print(format_table(rows, digits=3))
    timing["load_average"] = {"start": load_start, "end": _loadavg()}
    timing["torch_threads"] = torch.get_num_threads()
    print(f"\nshared passes: {timing['shared_seconds']:.1f}s wall, "
          f"{timing['shared_cpu_seconds']:.1f}s CPU (forward passes "
          f"{timing['shared_forward_seconds']:.1f}s); every detector with its own passes: "
          f"{timing['naive_seconds']:.1f}s wall, {timing['naive_cpu_seconds']:.1f}s CPU; ratio "
          f"{timing['speedup']:.2f}x wall, {timing['cpu_speedup']:.2f}x CPU; largest score "
          f"difference {timing['max_abs_score_difference']:.2g}; shared kNN searches "
          f"{timing['shared_searches']}; torch threads {timing['torch_threads']}; load average "
          f"{timing['load_average']['start']} -> {timing['load_average']['end']}")
    report = {k: v for k, v in timing.items() if k != "table"}
    if args.json:
        write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
