"""The estimator base: parameters from the signature, set_params, repr, NotFittedError; and
every calibrator, detector and regressor follows it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dunno.errors import NotFittedError
from dunno.estimator import Estimator
from uncertainty.calibration import CALIBRATORS, CalibratedClassifier
from uncertainty.ood import DETECTORS
from uncertainty.predictive import (
    REGRESSORS,
    DeepEnsemble,
    HeteroscedasticClassifier,
    MCDropout,
    Regressor,
)


class Toy(Estimator):
    _wrapped_args = ("model",)
    _state_names = ("coef_",)

    def __init__(self, model=None, alpha=1.0, *, tags=(), weights=None):
        self.model = model
        self.alpha = alpha
        self.tags = tags
        self.weights = weights

    def _validate_params(self):
        if not self.alpha > 0:
            raise ValueError(f"The 'alpha' parameter of Toy must be > 0. Got {self.alpha!r} "
                             "instead.")

    def fit(self):
        self._validate_params()
        self.coef_ = 2 * self.alpha
        return self


def test_params_come_from_the_signature_without_the_wrapped_object():
    assert Toy.param_names() == ["alpha", "tags", "weights"]
    toy = Toy("a model", 2.0, tags=("x",))
    assert toy.get_params() == {"alpha": 2.0, "tags": ("x",), "weights": None}
    clone = Toy(toy.model, **toy.get_params())
    assert clone.get_params() == toy.get_params()


def test_set_params_refuses_unknown_names():
    toy = Toy()
    assert toy.set_params(alpha=3.0, tags=("y",)) is toy
    assert (toy.alpha, toy.tags) == (3.0, ("y",))
    with pytest.raises(ValueError, match=r"Invalid parameter\(s\) \['beta', 'model'\] for Toy\. "
                                         r"Valid parameters are: \['alpha', 'tags', 'weights'\]"):
        toy.set_params(beta=1, model=None)


def test_repr_shows_the_non_default_parameters():
    assert repr(Toy()) == "Toy()"
    assert repr(Toy("m", 2.0, tags=("x",))) == "Toy(alpha=2.0, tags=('x',))"
    assert repr(Toy(alpha=1.0, tags=())) == "Toy()"
    # arrays and tensors are never "equal to the default" and never break repr
    assert repr(Toy(weights=torch.zeros(2))) == "Toy(weights=tensor([0., 0.]))"
    assert "weights=array" in repr(Toy(weights=np.zeros(2)))


def test_validate_params_and_check_fitted():
    with pytest.raises(NotFittedError, match="This Toy instance is not fitted yet. Call 'fit'"):
        Toy().check_fitted()
    with pytest.raises(ValueError, match="'alpha' parameter of Toy"):
        Toy(alpha=0).fit()
    Toy().fit().check_fitted()
    Estimator().check_fitted()  # learns nothing: always usable


def test_var_args_are_refused():
    class Bad(Estimator):
        def __init__(self, *layers):
            self.layers = layers

    with pytest.raises(TypeError, match=r"takes \*layers"):
        Bad.param_names()


ESTIMATORS = [
    *CALIBRATORS.values(), *DETECTORS.values(), *REGRESSORS.values(),
    MCDropout, DeepEnsemble, HeteroscedasticClassifier, CalibratedClassifier,
]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_method_is_an_estimator(cls):
    assert issubclass(cls, Estimator)
    # every hyper-parameter is stored under its own name by __init__ alone
    wrapped = {name: None for name in cls._wrapped_args}
    if cls in (MCDropout, CalibratedClassifier):
        wrapped = {"model": torch.nn.Dropout()}
    if cls is DeepEnsemble:
        est = cls(None)
    else:
        est = cls(**wrapped)
    params = est.get_params()
    assert list(params) == cls.param_names()
    again = cls(**wrapped, **params)
    assert again.get_params().keys() == params.keys()
    assert repr(again).startswith(f"{cls.__name__}(")


@pytest.mark.parametrize("cls", list(REGRESSORS.values()), ids=lambda c: c.__name__)
def test_every_regressor_derives_from_the_regressor_base(cls):
    assert issubclass(cls, Regressor)
    with pytest.raises(NotFittedError, match=cls.__name__):
        cls().predict(torch.zeros(2, 3))
