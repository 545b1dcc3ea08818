"""Train a GAN on the ring of 8 Gaussians and a DCGAN on MNIST, and score their samples.

    python examples/train_gan.py                     # ring GAN + DCGAN, 10-minute MNIST budget
    python examples/train_gan.py --minutes 3
    python examples/train_gan.py --smoke             # seconds: ring GAN + a tiny DCGAN on digits

1. An MLP GAN (non-saturating loss) on the ring of 8 Gaussians (std 0.02, radius 2): modes
   covered and the share of high-quality samples (within 3 std of a mode, VEEGAN's
   convention) on 2500 samples, with a scatter plot per epoch.
2. A DCGAN on MNIST for a time budget, with a sample grid per epoch, then -- when a LeNet-5
   MNIST checkpoint exists (``dunno train classifier --backbone lenet5 --data mnist --out
   runs/lenet5-mnist``) -- its classifier-based FID (cFID; not comparable with Inception FID)
   against the test set next to the train-vs-test floor, classifier score and precision /
   recall. Needs the MNIST files under ``$DUNNO_DATA``; ``--smoke`` uses scikit-learn's
   bundled 8x8 digits and an untrained classifier instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.reporting import format_table  # noqa: E402
from generative import CFID_NOTE, GANConfig, evaluate_gan, load_gan, train_gan  # noqa: E402
from generative.adversarial.training import training_data  # noqa: E402
from generative.plots import EpochSamplePlots, sample_plot  # noqa: E402


def _train_with_plots(model_name: str, data: str, out: Path, grid: int = 64, **kwargs):
    """train_gan, with a sample grid (2-D: a scatter plot over the data) after every epoch
    in out/samples/ and the final samples in out/samples.png."""
    title = f"{model_name} on {data}"
    config = GANConfig(model=model_name, data=data, **{
        k: kwargs[k] for k in ("train_size", "seed") if k in kwargs})
    train = training_data(config)
    points = train.x[:2000] if tuple(train.info.shape) == (2,) else None
    plots = EpochSamplePlots(out / "samples", grid, config.seed, title, points)
    model, history = train_gan(model_name, data, out=out, on_epoch_end=plots, **kwargs)
    sample_plot(plots.fixed_samples(model), title=f"{title}: samples", data=points,
                path=out / "samples.png")
    return model, history


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="DCGAN training budget")
    parser.add_argument("--ring-epochs", type=int, default=40)
    parser.add_argument("--classifier", default="runs/lenet5-mnist/model.pt")
    parser.add_argument("--out", default="runs/example-gan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="seconds on a CPU")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results: dict[str, float] = {}

    # 1. the ring of 8 Gaussians
    _, ring = _train_with_plots("gan", "ring-of-gaussians", out / "ring",
                                epochs=10 if args.smoke else args.ring_epochs,
                                batch_size=100, seed=args.seed)
    m = ring.metrics
    print(f"GAN on the ring of 8 Gaussians: {m['epochs']} epochs in {m['train_minutes']:.2f} "
          f"min; modes covered {m['modes_covered']}/8, high-quality samples "
          f"{m['high_quality']:.1%} (2500 samples, within 3 std of a mode)")
    print(f"  plots: {out / 'ring' / 'samples.png'}, {out / 'ring' / 'samples'}/epoch_*.png")
    results.update(ring_modes_covered=m["modes_covered"], ring_high_quality=m["high_quality"])

    # 2. DCGAN on images
    if args.smoke:
        data, options = "digits", {"latent_dim": 16, "width": 8}
        budget = dict(epochs=1, train_size=256, grid=16)
    else:
        data, options = "mnist", {}
        budget = dict(epochs=100, max_minutes=args.minutes)
    _, dcgan = _train_with_plots("dcgan", data, out / "dcgan", seed=args.seed,
                                 options=options, **budget)
    m = dcgan.metrics
    print(f"DCGAN on {data}: {m['epochs']} epochs, {m['steps']} steps in "
          f"{m['train_minutes']:.1f} min; samples: {out / 'dcgan' / 'samples.png'}")
    results.update(dcgan_steps=m["steps"], dcgan_minutes=m["train_minutes"])

    # 3. sample quality with our own classifier's features
    model = load_gan(dcgan.checkpoint)  # generator + discriminator, rebuilt from the file
    if args.smoke:
        from dunno import nets

        classifier = nets.create("lenet5", 1, 10, input_size=8).eval()
        report = evaluate_gan(model, classifier=classifier, data=data, num_samples=100).report
    elif Path(args.classifier).is_file():
        report = evaluate_gan(model, classifier=args.classifier, data=data).report
    else:
        print(f"no classifier at {args.classifier}: skipping cFID (train one with `dunno train "
              "classifier --backbone lenet5 --data mnist --out runs/lenet5-mnist`)")
        return results
    print(format_table(report["rows"], ["source", "cFID", "classifier_score", "precision",
                                        "recall", "n"]))
    print(CFID_NOTE)
    generated, floor = report["rows"][0], report["rows"][-1]
    results.update(cfid=generated["cFID"], cfid_floor=floor["cFID"],
                   classifier_score=generated["classifier_score"],
                   precision=generated["precision"], recall=generated["recall"])
    return results


if __name__ == "__main__":
    main()
