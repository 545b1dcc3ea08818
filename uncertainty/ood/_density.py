r"""What the density-based detectors share: a density model instead of a classifier.

A density-based detector scores an input by its log-likelihood :math:`\log p(x)` (nats) under
a model of the in-distribution data -- anything with ``log_prob(x) -> (N,)``: NADE, PixelCNN,
PixelRNN (exact), a VAE (an importance-sampled bound). This package never imports the models
themselves; the caller joins the two (:func:`uncertainty.ood.run_ood` takes the model and
its ``density_inputs``; ``dunno ood --density`` builds both from a checkpoint).

Nalisnick et al. ("Do Deep Generative Models Know What They Don't Know?", ICLR 2019) showed
that the plain likelihood fails in practice: a model of Fashion-MNIST gives MNIST digits a
*higher* likelihood than its own test images, because the likelihood is dominated by how
simple an image is (large uniform backgrounds), not by its semantics. The likelihood ratio
(Ren et al. 2019), the input-complexity correction (Serrà et al. 2020) and the typicality test
(Nalisnick et al. 2019b) remove that confound in different ways.

``transform`` maps the inputs as given to what the density model scores (e.g. grey images in
[0, 1] to the 0/1 pixels of a binary model, or to integers 0..255 for an 8-bit one), one batch
at a time; the OOD suite instead maps whole datasets once, per split
(``run_ood(..., density_inputs=...)``, built by
:func:`evaluation.benchmarks.ood.density_inputs_for` on the command line).
Detectors that share one density model and one transform share one pass through it:
``ModelOutputs.log_prob`` (:func:`~uncertainty.ood.outputs.extract_outputs` with
``density=``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from dunno.validation import check_int
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import (
    ModelOutputs,
    check_density,
    density_log_prob,
    extract_outputs,
)

__all__ = ["DensityDetector", "pixel_levels"]


def pixel_levels(density: Any, levels: int | None, owner: str) -> int:
    """The number of values a pixel takes in the density model's input space.

    ``levels`` when given (an int >= 2), else from the model's ``pixels`` attribute
    (``"binary"``: 2, ``"8bit"``: 256); a ValueError naming ``owner`` otherwise.
    """
    if levels is not None:
        return check_int(levels, "levels", owner, low=2, allow_none=True)
    pixels = getattr(density, "pixels", None)
    if pixels == "binary":
        return 2
    if pixels == "8bit":
        return 256
    raise ValueError(
        f"{owner} needs the number of pixel values of the density model's inputs: pass "
        f"levels=<int> (2 for binary pixels, 256 for 8-bit), or use a model with a 'pixels' "
        f"attribute ('binary' or '8bit'). {type(density).__name__} has pixels={pixels!r}."
    )


class DensityDetector(OODDetector):
    """Base class of the detectors that score through a density model.

    Parameters
    ----------
    density : object with ``log_prob(x) -> (N,)``
        The in-distribution density model (nats). Needed by :meth:`fit` and :meth:`score`;
        :meth:`fit_outputs` / :meth:`score_outputs` read ``ModelOutputs.log_prob`` instead
        (computed with the same model and ``transform``).
    transform : callable, optional
        ``x -> x'`` mapping inputs to the density model's input space (identity by default).
    """

    uses_model: ClassVar[bool] = False
    uses_density: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"log_prob"})
    _wrapped_args: ClassVar[tuple[str, ...]] = ("density",)

    def __init__(self, density: Any = None, *, transform=None) -> None:
        super().__init__(None)
        self.density = density
        self.transform = transform

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.density is not None:
            check_density(self.density)
        if self.transform is not None and not callable(self.transform):
            raise ValueError(
                f"The 'transform' parameter of {type(self).__name__} must be None or a callable "
                f"x -> x'. Got {type(self.transform).__name__} instead."
            )

    def _extract(self, data, needs: frozenset[str], batch_size: int) -> ModelOutputs:
        if "log_prob" in needs:
            if self.density is None:
                raise ValueError(
                    f"{type(self).__name__} scores through a density model, but none was given. "
                    f"Pass it as {type(self).__name__}(density, ...), or call the *_outputs "
                    "methods with precomputed ModelOutputs(log_prob=...)."
                )
            check_density(self.density)
        return extract_outputs(
            None, data, needs=needs, batch_size=batch_size, keep_inputs="input" in needs,
            density=self.density, density_transform=self.transform,
        )

    def _log_prob_of(self, model: Any, inputs: torch.Tensor, batch_size: int = 512
                     ) -> torch.Tensor:
        """``(N,)`` float64 log-densities of raw ``inputs`` under ``model`` (after
        ``transform``), in batches, in eval mode."""
        was = model.training if isinstance(model, nn.Module) else False
        if isinstance(model, nn.Module):
            model.eval()
        try:
            parts = [density_log_prob(model, inputs[i:i + batch_size], self.transform)
                     for i in range(0, len(inputs), batch_size)]
        finally:
            if isinstance(model, nn.Module):
                model.train(was)
        return torch.cat(parts)
