"""Score a GAN's samples without Inception weights: the library behind ``dunno gan eval``.

Image models are scored with a classifier we trained ourselves (``dunno train classifier
--backbone lenet5 --data mnist``): its ``features(x)`` (84-d for LeNet-5) and softmax
outputs. Reported, for generated images and, as references, for the same number of training
images and (where given) other models' samples:

* **cFID** -- the Fréchet distance between Gaussians fitted to classifier features of the
  test images and of the candidate images (:func:`evaluation.metrics.frechet_distance`). It is
  *classifier-based*: the numbers are not comparable with Inception FID. The training-set row
  is the floor (what real images achieve against the test set at this sample size).
* **classifier score** -- exp E KL(p(y|x) || p(y)) of the classifier's predictions (the
  Inception-score analogue; 10 is the maximum for MNIST).
* **precision / recall** -- k-NN manifolds (Kynkäänniemi et al. 2019, ``k = 3``) in the
  classifier's feature space, the test features being the real set.
* InfoGAN: **code accuracy** -- the accuracy of the best one-to-one mapping from the
  categorical code to the classifier's predicted digit (Hungarian assignment; Chen et al.
  report about 95% on MNIST, i.e. 5% error).

2-D models on ``ring-of-gaussians`` are scored by modes covered and the share of
high-quality samples (within 3 standard deviations of a mode; VEEGAN convention,
:func:`evaluation.metrics.mode_coverage`) on 2500 samples.

Example::

    from generative import evaluate_gan
    result = evaluate_gan("runs/dcgan/model.pt", classifier="runs/lenet5-mnist/model.pt")
    print(result.report["rows"])
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dunno.checkpoints import load_checkpoint, load_model
from dunno.data import load_dataset, parse_spec
from dunno.devices import resolve_device
from dunno.errors import CheckpointError, DataError
from dunno.models import check_model_data
from dunno.progress import Progress, reports_progress
from dunno.validation import check_int
from evaluation.metrics import (
    best_mapping_accuracy,
    classifier_score,
    feature_statistics,
    frechet_distance_from_statistics,
    precision_recall,
)

from ._base import AdversarialModel
from .infogan import InfoGAN
from .training import RING_SAMPLES, is_ring, ring_metrics

__all__ = ["CFID_NOTE", "GANEvaluation", "classifier_outputs", "code_accuracy", "evaluate_gan",
           "load_gan"]

CFID_NOTE = ("cFID = Fréchet distance on the features of our own classifier "
             "(classifier-based); not comparable with Inception FID.")


@dataclass
class GANEvaluation:
    """What :func:`evaluate_gan` measured: the JSON-ready ``report`` (``model``, ``data``,
    ``num_samples``; ``rows`` -- one per image source: cFID, classifier score, precision,
    recall, n -- ``k``, ``note``, ``classifier``, ``code_accuracy`` / ``code_mapping`` for
    InfoGAN; or the ring metrics) and the generated ``samples`` it scored (CPU)."""

    report: dict[str, Any]
    samples: torch.Tensor


def load_gan(path: str | Path, device: str | torch.device = "cpu") -> AdversarialModel:
    """Load a checkpoint written by :func:`~generative.adversarial.training.train_gan` (never
    executes code); raises :class:`~dunno.errors.CheckpointError` for any other kind of model."""
    model = load_model(path, device=resolve_device(device))
    if not isinstance(model, AdversarialModel):
        raise CheckpointError(f"{str(path)!r} holds a {type(model).__name__}, not a GAN "
                              "(generative/gan, generative/dcgan or generative/infogan).")
    return model


@torch.no_grad()
def classifier_outputs(classifier: torch.nn.Module, images: torch.Tensor, *,
                       batch_size: int = 500, desc: str = "features"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``features (N, F)`` (``classifier.features``) and softmax probabilities ``(N, C)``
    (of ``classifier(x)``), float64 on the CPU, for images ``(N, C, H, W)`` in [0, 1]. The
    pass reports as ``desc`` where the caller asked (:mod:`dunno.progress`)."""
    if not hasattr(classifier, "features"):
        raise ValueError(f"The classifier ({type(classifier).__name__}) has no features(x); "
                         "use a backbone from dunno.nets (e.g. a lenet5 checkpoint).")
    classifier.eval()
    device = next(classifier.parameters()).device
    feats, probs = [], []
    bar = Progress(total=len(images), desc=desc, unit="img", leave=False)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device, torch.float32)
        feats.append(classifier.features(x).double().cpu())
        probs.append(torch.softmax(classifier(x).double(), dim=1).cpu())
        bar.update(len(x))
    bar.close()
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def _sample_model(model, n: int, seed: int, name: str) -> torch.Tensor:
    if "generator" in inspect.signature(model.sample).parameters:
        images = model.sample(n, generator=torch.Generator().manual_seed(seed))
    else:  # a model whose sample() takes no generator: seed the global one
        torch.manual_seed(seed)
        images = model.sample(n)
    images = images.detach().float().cpu()
    if images.dim() != 4 or not torch.isfinite(images).all() or (
            images.min() < 0 or images.max() > 1):
        raise ValueError(f"{name} must sample images (N, C, H, W) with values in [0, 1]; got "
                         f"shape {tuple(images.shape)}.")
    return images


def code_accuracy(model: InfoGAN, classifier: torch.nn.Module, num_samples: int = 10000, *,
                  generator: torch.Generator | None = None, seed: int = 0) -> dict[str, Any]:
    r"""How well InfoGAN's categorical code matches the classes a classifier sees.

    Generates ``num_samples // K`` images for each of the ``K`` code values (noise and
    continuous codes drawn from their priors), predicts their classes with ``classifier``
    (argmax of its logits) and fills the contingency table :math:`n_{ab}` = images of code
    :math:`a` predicted as class :math:`b`. The Hungarian algorithm finds the one-to-one
    mapping :math:`\pi` from codes to classes maximising :math:`\sum_a n_{a\pi(a)}`
    (:func:`evaluation.metrics.best_mapping_accuracy`); the accuracy is that sum over the
    number of images. Two codes drawing the same digit can map to one class only, so a
    merged pair costs about :math:`1/K` of the accuracy. Chen et al. (2016) report about 5%
    error (95% accuracy) on MNIST.

    Args:
        model: a trained :class:`InfoGAN` (sampled in eval mode).
        classifier: ``x (N, C, H, W) in [0, 1] -> logits (N, classes)`` with ``features(x)``
            (e.g. a LeNet-5 checkpoint loaded with :func:`dunno.checkpoints.load_model`).
        num_samples: images in all (at least ``K``).
        generator, seed: the draw of noise and continuous codes (``generator`` wins).

    Returns:
        ``{"code_accuracy": float in [0, 1], "code_mapping": {code: class}}``.
    """
    from scipy.optimize import linear_sum_assignment

    if not isinstance(model, InfoGAN):
        raise TypeError(f"code_accuracy needs an InfoGAN as 'model'; got "
                        f"{type(model).__name__}.")
    num_samples = check_int(num_samples, "num_samples", "code_accuracy", low=model.categorical)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    per_code = num_samples // model.categorical
    codes = torch.arange(model.categorical).repeat_interleave(per_code)  # (N,)
    cont = torch.rand(len(codes), model.continuous, generator=g) * 2 - 1  # (N, L)
    images = model.sample_codes(codes, cont, generator=g).cpu()  # (N, C, H, W)
    _, probs = classifier_outputs(classifier, images, desc="features codes")
    predicted = probs.argmax(axis=1)  # (N,)
    table = np.zeros((model.categorical, probs.shape[1]), dtype=np.int64)  # (K, classes)
    np.add.at(table, (codes.numpy(), predicted), 1)
    r, c = linear_sum_assignment(table, maximize=True)
    return {"code_accuracy": best_mapping_accuracy(codes.numpy(), predicted),
            "code_mapping": {int(a): int(b) for a, b in zip(r, c, strict=True)}}


def _evaluate_ring(model: AdversarialModel, data: str, n: int, seed: int,
                   report: dict[str, Any]) -> GANEvaluation:
    if not is_ring(data):
        raise ValueError(f"2-D models are scored on 'ring-of-gaussians' only; got {data!r}.")
    samples = model.sample(n, generator=torch.Generator().manual_seed(seed)).cpu()
    report.update(ring_metrics(samples))
    return GANEvaluation(report, samples)


def _dataset_family(spec: str) -> str:
    """``"mnist"`` for ``mnist``, ``mnist-binary`` and ``mnist:rotate=90``: the images a
    classifier of that data knows."""
    base = parse_spec(spec)[0] if isinstance(spec, str) and spec.strip() else str(spec)
    return base.removesuffix("-binary")


def _check_same_data(classifier_data, data: str) -> None:
    """Refuse a classifier recorded as trained on other images than ``data``: its features
    and classes would make the cFID, the classifier score and the code accuracy measure
    another dataset's notion of a digit (a Fashion-MNIST classifier for an MNIST GAN)."""
    if not isinstance(classifier_data, str) or not classifier_data:
        return
    if _dataset_family(classifier_data) != _dataset_family(data):
        raise DataError(
            f"The classifier was trained on {classifier_data!r} but the samples are scored "
            f"against {data!r}: its features and classes belong to other images, so cFID, "
            f"classifier score and code accuracy would not describe {data!r}. Use a "
            f"classifier trained on {data!r} (dunno train classifier --data "
            f"{_dataset_family(data)})."
        )


@reports_progress
def evaluate_gan(
    checkpoint: str | Path | AdversarialModel,
    *,
    classifier: str | Path | torch.nn.Module | None = None,
    data: str | None = None,
    num_samples: int | None = None,
    k: int = 3,
    compare: dict[str, str | Path] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    root=None,
    progress: bool | None = None,
) -> GANEvaluation:
    """Score a GAN's samples (see the module docstring for every metric).

    Parameters
    ----------
    checkpoint : path-like or AdversarialModel
        A ``train_gan`` checkpoint (or the model itself).
    classifier : path-like or nn.Module
        A classifier checkpoint with ``features(x)`` (e.g. ``runs/lenet5-mnist/model.pt``);
        needed for image models.
    data : str, optional
        The real dataset (default: the one the checkpoint was trained on, else ``mnist``).
    num_samples : int, optional
        Generated images (and test / training images) per set, default 10000 (the test split
        is used whole when it is smaller); 2500 points for a 2-D model.
    k : int
        Neighbourhood size of precision / recall.
    compare : dict, optional
        ``{name: checkpoint}`` of other image models whose ``sample(n)`` gives [0, 1] images
        (e.g. a VAE), scored the same way.
    progress : bool, optional
        Report the feature passes and each scored source on stderr (:mod:`dunno.progress`);
        ``None``: as the enclosing call asked (off by default).

    Returns
    -------
    GANEvaluation
        The ``report`` and the generated ``samples``.
    """
    device = resolve_device(device)
    meta: dict[str, Any] = {}
    if isinstance(checkpoint, AdversarialModel):
        model = checkpoint.to(device)
        name = type(model).__name__
    else:
        meta = load_checkpoint(checkpoint).meta
        model = load_gan(checkpoint, device)
        name = f"{type(model).__name__} ({checkpoint})"
    data = data or meta.get("trained_on") or ("ring-of-gaussians" if model.data_shape == (2,)
                                              else "mnist")
    if num_samples is None:
        num_samples = RING_SAMPLES if model.data_shape == (2,) else 10000
    check_int(num_samples, "num_samples", "evaluate_gan", low=2)
    report: dict[str, Any] = {"model": name, "data": data, "num_samples": num_samples}
    if model.data_shape == (2,):
        return _evaluate_ring(model, data, num_samples, seed, report)
    if len(model.data_shape) != 3:
        raise ValueError(f"evaluate_gan scores image models or 2-D models; this one makes "
                         f"data of shape {model.data_shape}.")
    if classifier is None:
        raise ValueError("evaluate_gan needs a 'classifier' checkpoint with features(x) for "
                         "image models (e.g. runs/lenet5-mnist/model.pt from `dunno train "
                         "classifier --backbone lenet5 --data mnist`).")
    classifier_data = None
    if not isinstance(classifier, torch.nn.Module):
        classifier_data = load_checkpoint(classifier).meta.get("trained_on")
        classifier = load_model(classifier, device=device)
    else:
        info = getattr(classifier, "dunno_info", None)
        classifier_data = info.get("trained_on") if isinstance(info, dict) else None
    _check_same_data(classifier_data, data)
    classifier = classifier.to(device).eval()

    test = load_dataset(data, "test", root)
    if tuple(test.info.shape) != model.data_shape:
        raise DataError(f"The model makes {model.data_shape} images but '{data}' holds "
                        f"{tuple(test.info.shape)} images.")
    check_model_data(classifier, test.x, num_classes=test.info.num_classes, data_name=data,
                     owner="evaluate_gan")
    n = min(num_samples, len(test))
    g = torch.Generator().manual_seed(seed)
    test_x = test.x[torch.randperm(len(test), generator=g)[:n].sort().values]
    train = load_dataset(data, "train", root)
    train_x = train.x[torch.randperm(len(train), generator=g)[:n].sort().values]
    t0 = time.perf_counter()
    sources = Progress(total=2 + len(compare or {}), desc="gan eval (sources scored)",
                       unit="source")
    test_feats, test_probs = classifier_outputs(classifier, test_x, desc="features test")
    ref_stats = feature_statistics(test_feats)

    def score(images: torch.Tensor, source: str) -> dict[str, Any]:
        feats, probs = classifier_outputs(classifier, images, desc=f"features {source}")
        pr = precision_recall(test_feats, feats, k=k)
        sources.set_postfix({"last": source})
        sources.update(1)
        return {"source": source, "cFID": frechet_distance_from_statistics(
                    *ref_stats, *feature_statistics(feats)),
                "classifier_score": classifier_score(probs), "precision": pr.precision,
                "recall": pr.recall, "n": len(images)}

    generated = _sample_model(model, n, seed + 1, name)
    rows = [score(generated, f"{type(model).__name__} samples")]
    for other_name, path in (compare or {}).items():
        other = load_model(path, device=device)
        rows.append(score(_sample_model(other, n, seed + 1, other_name),
                          f"{other_name} samples"))
    floor = score(train_x, "training images (floor)")
    floor["classifier_score_test"] = classifier_score(test_probs)
    rows.append(floor)
    sources.close()
    report.update({"rows": rows, "k": k, "note": CFID_NOTE,
                   "classifier": type(classifier).__name__})
    if isinstance(model, InfoGAN):
        report.update(code_accuracy(model, classifier, n, generator=g))
    report["seconds"] = time.perf_counter() - t0
    return GANEvaluation(report, generated)
