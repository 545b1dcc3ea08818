"""Wrap a trained classifier (any ``nn.Module`` mapping inputs to logits) with a calibrator.

>>> from uncertainty.calibration import CalibratedClassifier
>>> clf = CalibratedClassifier(model, method="temperature").fit(x_val, y_val)  # or a loader
>>> probs = clf.predict_proba(x_test)              # (N, C), calibrated; numpy for numpy
>>> clf.calibrator_.temperature_                               # the fitted T
>>> clf.save("calibrator.pt"); CalibratedClassifier.load("calibrator.pt", model)

Every method reads its data through :mod:`dunno.inputs` (numpy arrays, tensors, ``(x, y)``
pairs, Datasets, DataLoaders; numpy in, numpy out). ``fit`` runs the model once over the
calibration data and caches the logits
(``calibration_logits_``), so fitting (and :meth:`CalibratedClassifier.refit` with other
methods) never repeats a forward pass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dunno.devices import resolve_device
from dunno.errors import check_is_fitted
from dunno.estimator import Estimator
from dunno.inputs import as_loader, model_dtype, output_like
from dunno.models import check_input_dtype, check_model_data
from dunno.validation import check_int
from uncertainty.calibration._base import Calibrator
from uncertainty.calibration.fingerprint import check_same_model, model_fingerprint
from uncertainty.calibration.registry import load_calibrator, make_calibrator, save_calibrator

__all__ = ["CalibratedClassifier"]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


class CalibratedClassifier(Estimator):
    """A classifier with a post-hoc calibration map on its logits.

    Parameters
    ----------
    model : nn.Module
        Maps a batch ``x`` to logits ``(N, C)``. It is not trained or modified; it is run in
        eval mode (and put back in its previous mode afterwards).
    method : str or Calibrator
        A registry name (``"temperature"``, ``"vector"``, ``"matrix"``, ``"histogram"``,
        ``"isotonic"``, ``"platt"``, ``"beta"``) or an unfitted calibrator instance.
    params : dict, optional
        Hyper-parameters for the calibrator named by ``method``.
    device : str or torch.device, optional
        Where the model runs (``auto``, ``cpu``, ``cuda[:i]``, ``mps``); default: the device
        the model's parameters are on.
    batch_size : int
        Batch size of :meth:`predict_proba` and friends on tensors.

    Attributes
    ----------
    calibrator_ : Calibrator
        The fitted calibrator.
    calibration_logits_ : Tensor, shape (N, C)
        The model's logits on the calibration set (CPU), computed once by :meth:`fit`.
    calibration_labels_ : Tensor, shape (N,)
    model_fingerprint_ : str
        :func:`~uncertainty.calibration.fingerprint.model_fingerprint` of ``model`` at fit
        time, also saved with the calibrator: loading the calibrator for another model, or
        predicting after the model (or its weights) changed, raises ValueError naming both.
    """

    _wrapped_args = ("model",)
    _state_names = ("calibrator_",)

    def __init__(self, model: nn.Module, method: str | Calibrator = "temperature", *,
                 params: dict[str, Any] | None = None, device: str | torch.device | None = None,
                 batch_size: int = 1000):
        self.model = model
        self.method = method
        self.params = params
        self.device = device
        self.batch_size = batch_size

    # ------------------------------------------------------------------ helpers
    def _validate_params(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ValueError(
                "The 'model' parameter of CalibratedClassifier must be a torch.nn.Module. "
                f"Got {type(self.model).__name__} instead."
            )
        check_int(self.batch_size, "batch_size", self, low=1)
        if isinstance(self.method, Calibrator) and self.params:
            raise ValueError(
                "Pass 'params' only with a method name; a Calibrator instance already holds "
                "its hyper-parameters."
            )

    def _device(self) -> torch.device:
        if self.device is None:
            return _model_device(self.model)
        return resolve_device(self.device)

    def _new_calibrator(self, method: str | Calibrator, params: dict[str, Any] | None):
        if isinstance(method, Calibrator):
            return method
        return make_calibrator(method, **(params or {}))

    # ------------------------------------------------------------------ fitting
    def fit(self, x, y=None, *, check_input: bool = True) -> CalibratedClassifier:
        """Run the model once over held-out ``x`` (with labels ``y``) and fit the calibrator.

        ``x`` is any kind read by :mod:`dunno.inputs`: arrays with ``y`` (``fit(x_val,
        y_val)``), an ``(x, y)`` pair, a labelled Dataset or a DataLoader of ``(x, y)``
        batches. It must hold held-out data (not the training set): a calibration or
        validation split. NaN / inf inputs are refused.
        """
        self._validate_params()
        batches = self._batches(x, y, "fit", require_labels=True)
        logits, labels = self._forward(batches)
        return self.fit_logits(logits, labels, check_input=check_input)

    def fit_logits(self, logits, labels, *, check_input: bool = True) -> CalibratedClassifier:
        """Fit the calibrator on precomputed ``logits (N, C)`` and ``labels (N,)``."""
        self._validate_params()
        calibrator = self._new_calibrator(self.method, self.params)
        calibrator.fit(logits, labels, check_input=check_input)
        calibrator.model_fingerprint_ = model_fingerprint(self.model)
        self.calibration_logits_ = torch.as_tensor(logits).detach().cpu()
        self.calibration_labels_ = torch.as_tensor(labels).detach().cpu()
        self.calibrator_ = calibrator
        return self

    def refit(self, method: str | Calibrator, *, params: dict[str, Any] | None = None,
              check_input: bool = True) -> CalibratedClassifier:
        """Switch to another calibration ``method`` and fit it on the cached logits."""
        check_is_fitted(self, ["calibration_logits_", "calibration_labels_"], "fit")
        self.method, self.params = method, params
        return self.fit_logits(self.calibration_logits_, self.calibration_labels_,
                               check_input=check_input)

    # ------------------------------------------------------------------ prediction
    def _check_model(self) -> None:
        """Refuse a model other than the one the calibrator was fitted for."""
        calibrator = getattr(self, "calibrator_", None)
        check_same_model(getattr(calibrator, "model_fingerprint_", None), self.model,
                         "the calibrator")

    def _batches(self, x, y, method: str, *, require_labels: bool = False):
        return as_loader(x, labels=y, batch_size=self.batch_size,
                         owner=f"CalibratedClassifier.{method}", dtype=model_dtype(self.model),
                         require_labels=require_labels)

    @torch.no_grad()
    def _forward(self, batches) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(N, C)`` (on the model's device) and labels (CPU, or None) of batches."""
        device = self._device()
        was_training = self.model.training
        self.model.eval()
        out, labels = [], []
        try:
            for i, (xb, yb) in enumerate(batches):
                try:
                    out.append(self.model(xb.to(device)))
                except RuntimeError:  # inputs the model cannot take: refused by name
                    if i == 0:
                        check_input_dtype(self.model, xb, "CalibratedClassifier")
                        check_model_data(self.model, xb[:2].to(device),
                                         owner="CalibratedClassifier")
                    raise
                if yb is not None:
                    labels.append(yb.cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(out), (torch.cat(labels) if labels else None)

    def logits(self, x) -> torch.Tensor:
        """The model's uncalibrated logits ``(N, C)`` for inputs ``x`` (any kind read by
        :mod:`dunno.inputs`), on the model's device; numpy for numpy ``x``."""
        self._validate_params()
        self._check_model()
        return output_like(self._forward(self._batches(x, None, "logits"))[0], x)

    def _out_device(self, x) -> torch.device:
        return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")

    def predict_logits(self, x) -> torch.Tensor:
        """Calibrated logits ``(N, C)`` (log-probabilities for the binning methods), on the
        device of a tensor ``x`` (CPU otherwise); numpy for numpy ``x``."""
        self.check_fitted()
        self._validate_params()
        self._check_model()
        z = self._forward(self._batches(x, None, "predict_logits"))[0]
        out = self.calibrator_.transform(z, check_input=False).to(self._out_device(x))
        return output_like(out, x)

    def predict_proba(self, x) -> torch.Tensor:
        """Calibrated probabilities ``(N, C)``, rows summing to 1, on the device of a tensor
        ``x`` (CPU otherwise); numpy for numpy ``x`` (any kind read by :mod:`dunno.inputs`)."""
        self.check_fitted()
        self._validate_params()
        self._check_model()
        z = self._forward(self._batches(x, None, "predict_proba"))[0]
        out = self.calibrator_.predict_proba(z, check_input=False).to(self._out_device(x))
        return output_like(out, x)

    def predict(self, x) -> torch.Tensor:
        """Predicted classes ``(N,)`` (argmax of the calibrated probabilities); numpy for
        numpy ``x``."""
        self.check_fitted()
        self._validate_params()
        self._check_model()
        z = self._forward(self._batches(x, None, "predict"))[0]
        probs = self.calibrator_.predict_proba(z, check_input=False)
        return output_like(probs.argmax(dim=1).to(self._out_device(x)), x)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted calibrator (not the model: that has its own checkpoint)."""
        self.check_fitted()
        return save_calibrator(self.calibrator_, path)

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module, *,
             device: str | torch.device | None = None,
             batch_size: int = 1000) -> CalibratedClassifier:
        """A fitted :class:`CalibratedClassifier` from a file written by :meth:`save` and the
        model it was fitted for (e.g. ``dunno.checkpoints.load_model(ckpt)``); another model
        raises ValueError naming both fingerprints."""
        calibrator = load_calibrator(path)
        check_same_model(getattr(calibrator, "model_fingerprint_", None), model,
                         f"the calibrator {str(path)!r}")
        out = cls(model, calibrator, device=device, batch_size=batch_size)
        out._validate_params()
        out.calibrator_ = calibrator
        return out

    def __repr__(self) -> str:
        method = self.method if isinstance(self.method, str) else repr(self.method)
        return f"CalibratedClassifier({type(self.model).__name__}, method={method!r})"
