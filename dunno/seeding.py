"""Reproducible sampling: one way to take ``seed=`` / ``generator=`` for every sampler.

Every method that draws random numbers when it is *used* (not trained) -- MC-Dropout's
stochastic passes, the heteroscedastic classifier's logit noise, every generative model's
``sample(n, ...)`` -- takes the keyword arguments ``seed: int | None`` and
``generator: torch.Generator | None``, read here:

* neither: torch's global generator, as before (a fresh draw each call);
* ``seed=s``: the same result for the same ``s`` (and the global generator is untouched);
* ``generator=g``: draws come from ``g``, so a seeded ``g`` reproduces a whole sequence of
  calls, and successive calls differ;
* both: a ValueError.

:func:`make_generator` gives the ``torch.Generator`` for samplers that pass one to
``torch.randn`` and friends; :func:`sampling_rng` is the context for samplers that cannot (the
dropout layers use the global generator): it forks torch's global state, seeds it, and
restores it on exit. :func:`seed_everything` seeds every generator before a training run.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from dunno.validation import check_seed, owner_name

__all__ = ["make_generator", "sampling_rng", "seed_everything"]

_MAX_SEED = 2**62


def _check(seed, generator, owner) -> None:
    if seed is not None and generator is not None:
        raise ValueError(f"Pass either 'seed' or 'generator' to {owner_name(owner)}, not both. "
                         f"Got seed={seed!r} and a generator.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"The 'generator' argument of {owner_name(owner)} must be a "
                         f"torch.Generator. Got {type(generator).__name__} instead.")
    if seed is not None:
        check_seed(seed, owner)


def make_generator(seed: int | None = None, generator: torch.Generator | None = None, *,
                   owner: object, device: str | torch.device = "cpu"
                   ) -> torch.Generator | None:
    """The generator a sampler draws from: ``generator`` itself, a new one on ``device``
    seeded with ``seed``, or ``None`` (torch's global generator) when neither is given."""
    _check(seed, generator, owner)
    if seed is not None:
        return torch.Generator(device=device).manual_seed(int(seed))
    return generator


@contextlib.contextmanager
def sampling_rng(seed: int | None = None, generator: torch.Generator | None = None, *,
                 owner: object, devices: Iterable[torch.device | str | None] = ()
                 ) -> Iterator[None]:
    """Run the body on torch's global generators seeded from ``seed`` (or from a number drawn
    from ``generator``), restoring their state afterwards; a no-op when both are ``None``.

    ``devices``: the devices the body draws on (CUDA devices among them are forked too).
    """
    _check(seed, generator, owner)
    if seed is None and generator is None:
        yield
        return
    if seed is None:
        seed = int(torch.randint(0, _MAX_SEED, (1,), generator=generator,
                                 device=generator.device))
    cuda = sorted({torch.device(d).index or 0 for d in devices
                   if d is not None and torch.device(d).type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        yield


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's, torch's (CPU and CUDA) and Pyro's random generators."""
    check_seed(seed, "seed_everything")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        import pyro

        pyro.set_rng_seed(seed)
    except ImportError:  # pragma: no cover - pyro is a hard dependency
        pass
