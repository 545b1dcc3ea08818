"""Loading the data of an OOD run (:func:`load_ood_data`): the fit and test splits of the
in-distribution data and the OOD sets, from dataset specs or the user's own data, checked for
shape and emptiness before any forward pass (:func:`uncertainty.ood.run_ood`)."""

from __future__ import annotations

import torch

from dunno.data import ArrayDataset, DatasetInfo, is_user_data, load_dataset
from dunno.inputs import as_arrays, describe_kind
from dunno.models.checks import check_input_scale, input_magnitude

__all__ = ["load_ood_data"]


def _names(value, what: str) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    out = [v.strip() if isinstance(v, str) else v for v in value]
    out = [v for v in out if not (isinstance(v, str) and not v)]
    if not out:
        raise ValueError(f"The '{what}' argument names nothing.")
    return out


def _as_dataset(data, name: str, arg: str, dtype) -> ArrayDataset:
    """User data of any kind read by :mod:`dunno.inputs` as an ArrayDataset named ``name``."""
    if isinstance(data, ArrayDataset) and dtype is None:
        return data
    x, y = as_arrays(data, name=arg, owner="run_ood", dtype=dtype)
    value_range = None
    if x.is_floating_point():
        value_range = (float(x.min()), float(x.max()))
    kind = {4: "image", 3: "sequence"}.get(x.dim(), "vector")
    info = DatasetInfo(name, kind, tuple(x.shape[1:]), value_range=value_range,
                       description="user data given to run_ood")
    return ArrayDataset(x, y, info)


def _load_out_set(spec, test: ArrayDataset, test_scale: float, root, dtype=None
                  ) -> tuple[str, ArrayDataset]:
    name, spec = spec if isinstance(spec, tuple) else (None, spec)
    if isinstance(spec, ArrayDataset):
        ds, name = spec, name or spec.info.name
    elif isinstance(spec, str):
        split = "all" if is_user_data(spec) else "test"  # a user file is all OOD
        ds, name = load_dataset(spec, split, root, like=test), name or spec
    elif name is not None and describe_kind(spec) != "unsupported":
        ds = _as_dataset(spec, name, f"out_sets[{name!r}]", dtype)
    else:
        raise ValueError(
            "Each OOD set must be a dataset spec (str) or an ArrayDataset, or user data "
            "(numpy, tensor, Dataset, DataLoader) given by name as out_sets={name: data}. Got "
            f"{type(spec).__name__}."
        )
    if len(ds) == 0:
        raise ValueError(f"The OOD set {name!r} is empty: there is nothing to score.")
    shape, expected = tuple(ds.x.shape[1:]), tuple(test.x.shape[1:])
    if shape != expected:
        raise ValueError(
            f"The OOD set {name!r} has inputs of shape {shape}, but the model's "
            f"in-distribution data {test.info.name!r} has inputs of shape {expected}; an OOD set "
            "must have the model's input shape (resize it, or use a noise set, which matches "
            "the in-distribution shape)."
        )
    check_input_scale(ds.x, test_scale, what=f"The OOD set {name!r}'s inputs",
                      reference_what=f"the in-distribution test inputs ({test.info.name!r})",
                      owner="run_ood")
    return name, ds


def load_ood_data(in_data, out_sets, *, fit_split: str = "train",
                  fit_size: int | None = None, seed: int = 0, root=None, dtype=None
                  ) -> tuple[ArrayDataset, ArrayDataset, dict[str, ArrayDataset]]:
    """``(fit, test, oods)``: the fit split of ``in_data`` (a ``seed``-ed random subset of
    ``fit_size`` examples when given), its test split, and the OOD sets by name (specs are
    loaded with split ``test`` and the test split's shape; each must be non-empty and of the
    in-distribution input shape). ``in_data`` may be a spec or the user's ``(fit, test)``
    data, and ``out_sets`` a dict ``{name: spec or data}`` (see :func:`run_ood`); user data
    is cast to the floating ``dtype`` when given (the model's)."""
    if isinstance(in_data, str):
        fit = load_dataset(in_data, fit_split, root)
        test = load_dataset(in_data, "test", root)
    elif isinstance(in_data, tuple | list) and len(in_data) == 2:
        if fit_split != "train":
            raise ValueError(f"The 'fit_split' parameter of run_ood selects a split of a "
                             f"dataset spec; with in_data=(fit, test) it must stay 'train'. "
                             f"Got {fit_split!r} instead.")
        fit = _as_dataset(in_data[0], "in_data (fit)", "in_data[0]", dtype)
        test = _as_dataset(in_data[1], "in_data (test)", "in_data[1]", dtype)
        if fit.x.shape[1:] != test.x.shape[1:]:
            raise ValueError(f"The 'in_data' fit and test sets of run_ood must have the same "
                             f"input shape. Got {tuple(fit.x.shape[1:])} and "
                             f"{tuple(test.x.shape[1:])} instead.")
        check_input_scale(test.x, input_magnitude(fit.x), what="The 'in_data' test inputs",
                          reference_what="its fit inputs", owner="run_ood")
    else:
        raise ValueError("The 'in_data' argument of run_ood must be a dataset spec (str) or "
                         "the user's data as (fit, test), each a numpy array, tensor, (x, y) "
                         f"pair, Dataset or DataLoader. Got {type(in_data).__name__} instead.")
    if fit_size is not None and fit_size < len(fit):
        g = torch.Generator().manual_seed(seed)
        fit = fit.subset(torch.randperm(len(fit), generator=g)[:fit_size].sort().values)
    if isinstance(out_sets, dict):
        specs = [(str(name), spec) for name, spec in out_sets.items()]
        if not specs:
            raise ValueError("The 'out_sets' argument of run_ood is an empty dict: name at "
                             "least one OOD set.")
    else:
        specs = _names(out_sets, "out_sets")
    test_scale = input_magnitude(test.x)  # once, for every OOD set
    oods = dict(_load_out_set(spec, test, test_scale, root, dtype) for spec in specs)
    return fit, test, oods
