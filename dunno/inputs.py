"""One conversion of the user's data for the whole toolkit: arrays in, arrays out.

Every public ``fit`` / ``score`` / ``transform`` / ``predict_proba`` / ``predict`` /
``log_prob`` reads its data through :func:`as_loader` (batches) or :func:`as_arrays` (the
whole set as tensors), and returns its result through :func:`output_like`. The accepted kinds:

=========================  =================================================================
``data``                   read as
=========================  =================================================================
numpy array ``(N, ...)``   ``x``; labels from ``labels=`` (optional)
torch tensor ``(N, ...)``  ``x``; labels from ``labels=`` (optional)
``(x, y)`` pair            ``x`` and labels ``y`` (each numpy or tensor; ``y`` may be None)
``(x,)``                   ``x`` alone
``Dataset``                its items ``(x_i, y_i)``, ``(x_i,)`` or ``x_i``;
                           :class:`~dunno.data.ArrayDataset` and ``TensorDataset`` are read
                           as arrays (an unlabelled ArrayDataset has no labels)
``DataLoader`` / iterable  its batches ``(x, y)``, ``(x,)`` or ``x``, as they come (its own
                           batch size and order); also a list of ``(x, y)`` tuples
=========================  =================================================================

Anything else (a list of numbers, a dict, a string) is a :class:`TypeError` naming the
argument and its owner. Conversions:

* **dtypes** are kept (``torch.from_numpy`` shares memory with the array) unless ``dtype=``
  names a floating dtype, which floating inputs (and floating labels) are cast to; the
  estimators that run a network pass the network's dtype, so float64 numpy reaches a float32
  model as float32;
* **finite**: real-valued (floating) inputs and labels must hold no NaN or inf (a
  :class:`ValueError` naming the argument, the owner, the value and its index); in-memory data
  is checked once, loaders batch by batch as they are read;
* **empty** data and **mismatched** ``x`` / ``y`` lengths are ValueErrors;
* **numpy in, numpy out**: :func:`output_like` turns a result (tensor, or tuple / list / dict
  of tensors) into numpy exactly when the input was numpy (:func:`is_numpy_input`: a numpy
  array, or a pair whose ``x`` is one); every other input kind gets tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from dunno.validation import check_int, owner_name
from dunno.validation.tensors import check_finite_tensor

__all__ = [
    "Batches",
    "apply_batched",
    "as_arrays",
    "as_loader",
    "describe_kind",
    "is_numpy_input",
    "model_dtype",
    "output_like",
]

_KINDS = "a numpy array, a torch tensor, an (x, y) pair, a Dataset or a DataLoader"


def _where(name: str, owner: object) -> str:
    return f"The {name!r} argument" + ("" if owner is None else f" of {owner_name(owner)}")


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray | torch.Tensor)


def _is_pair(value: Any) -> bool:
    """A tuple / list ``(x,)`` or ``(x, y)`` whose ``x`` is an array (``y``: array, list or
    None)."""
    return (
        isinstance(value, tuple | list)
        and len(value) in (1, 2)
        and _is_array(value[0])
        and (len(value) == 1 or value[1] is None or _is_array(value[1])
             or isinstance(value[1], list | tuple))
    )


def describe_kind(data: Any) -> str:
    """A short name of the kind of ``data`` (``"numpy"``, ``"tensor"``, ``"pair"``,
    ``"ArrayDataset"``, ``"TensorDataset"``, ``"Dataset"``, ``"DataLoader"``, ``"iterable"``);
    ``"unsupported"`` for anything :func:`as_loader` refuses."""
    if isinstance(data, np.ndarray):
        return "numpy"
    if isinstance(data, torch.Tensor):
        return "tensor"
    if _is_pair(data):
        return "pair"
    if isinstance(data, TensorDataset):
        return "TensorDataset"
    if _is_array_dataset(data):
        return "ArrayDataset"
    if isinstance(data, Dataset):
        return "Dataset"
    if isinstance(data, DataLoader):
        return "DataLoader"
    if _is_batch_iterable(data):
        return "iterable"
    return "unsupported"


def is_numpy_input(source: Any) -> bool:
    """Whether ``source`` was given as numpy: a numpy array, or a pair whose ``x`` is one."""
    if isinstance(source, np.ndarray):
        return True
    return _is_pair(source) and isinstance(source[0], np.ndarray)


def output_like(result: Any, source: Any) -> Any:
    """``result`` as numpy when ``source`` was numpy input (:func:`is_numpy_input`), else as
    it is. Tensors are detached and moved to the CPU (bfloat16 becomes float32); tuples,
    lists and dicts are converted element by element; other values are returned unchanged."""
    if not is_numpy_input(source):
        return result
    return _to_numpy(result)


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_to_numpy(v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(_to_numpy(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    return value


def model_dtype(model: Any) -> torch.dtype | None:
    """The floating dtype of ``model``'s first floating parameter or buffer (the ``dtype=``
    that an entry point running the model passes), or ``None`` (no floating tensors, or not
    an ``nn.Module``)."""
    if not isinstance(model, torch.nn.Module):
        return None
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


# ---------------------------------------------------------------------- conversion of arrays
def _tensor(value: Any, name: str, owner: object, dtype: torch.dtype | None) -> torch.Tensor:
    """A numpy array or tensor as a CPU-or-device tensor (numpy shares memory when it can)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ValueError(
                f"{_where(name, owner)} must hold real numbers (bool, int or float). Got a "
                f"numpy array of dtype {value.dtype} instead."
            )
        if value.dtype.kind == "u" and value.dtype != np.uint8:
            value = value.astype(np.int64)  # torch has no general uint16/32/64 arithmetic
        if not value.flags.writeable or any(s < 0 for s in value.strides):
            value = np.array(value)  # torch.from_numpy needs writable, positive strides
        t = torch.from_numpy(value)
    elif isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_complex():
            raise ValueError(
                f"{_where(name, owner)} must hold real numbers. Got a tensor of dtype "
                f"{t.dtype} instead."
            )
    else:
        raise TypeError(f"{_where(name, owner)} must be {_KINDS}. Got {type(value).__name__} "
                        "instead.")
    if dtype is not None and t.is_floating_point() and t.dtype != dtype:
        t = t.to(dtype)
    return t


def _labels_tensor(value: Any, name: str, owner: object, dtype) -> torch.Tensor:
    if isinstance(value, list | tuple):
        try:
            value = np.asarray(value)
        except ValueError as err:
            raise ValueError(f"{_where(name, owner)} could not be read as an array: {err}") \
                from err
    if not _is_array(value):
        raise TypeError(f"{_where(name, owner)} must be a numpy array or a torch tensor of "
                        f"labels / targets (N, ...). Got {type(value).__name__} instead.")
    return _tensor(value, name, owner, dtype)


def _check_rows(x: torch.Tensor, y: torch.Tensor | None, name: str, label_name: str,
                owner: object, offset: int = 0) -> None:
    if x.dim() == 0:
        raise ValueError(f"{_where(name, owner)} must have a first (example) dimension, shape "
                         f"(N, ...). Got a scalar of shape {tuple(x.shape)} instead.")
    if y is not None:
        if y.dim() == 0:
            raise ValueError(f"{_where(label_name, owner)} must have one entry per example, "
                             f"shape (N, ...). Got a scalar instead.")
        if len(y) != len(x):
            at = "" if not offset else f" (in the batch starting at example {offset})"
            raise ValueError(
                f"The {name!r} and {label_name!r} arguments"
                + ("" if owner is None else f" of {owner_name(owner)}")
                + f" must have the same number of rows{at}. Got {len(x)} rows in {name} and "
                f"{len(y)} in {label_name}."
            )


def _check_finite(t: torch.Tensor, name: str, owner: object, offset: int = 0) -> None:
    check_finite_tensor(t, name, owner, offset=offset)


def _is_array_dataset(data: Any) -> bool:
    """A :class:`dunno.data.ArrayDataset` (or anything with tensor ``x`` and ``has_labels``)."""
    return isinstance(data, Dataset) and isinstance(getattr(data, "x", None), torch.Tensor) \
        and hasattr(data, "has_labels")


def _is_batch_iterable(data: Any) -> bool:
    """A DataLoader, a generator / iterable of batches, or a list of ``(x, y)`` / ``(x,)``
    tuples (a list or tuple of arrays is a pair, never batches)."""
    if isinstance(data, list | tuple):
        return all(isinstance(b, tuple | list) for b in data) and not _is_pair(data)
    return isinstance(data, DataLoader | Batches) or (
        isinstance(data, Iterable)
        and not isinstance(data, str | bytes | dict | set | np.ndarray)
    )


def _in_memory(data: Any, labels: Any, name: str, label_name: str, owner: object,
               dtype) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(x, y)`` tensors for the kinds that are held in memory, else None."""
    if _is_array(data):
        x = _tensor(data, name, owner, dtype)
        y = None if labels is None else _labels_tensor(labels, label_name, owner, dtype)
        return x, y
    if labels is not None:
        raise ValueError(
            f"The {label_name!r} argument of {owner_name(owner)} is only read with arrays; "
            f"{describe_kind(data)} input carries its own labels. Pass the data as x with "
            f"{label_name}=..., or the labels inside the data."
        )
    if _is_pair(data):
        x = _tensor(data[0], name, owner, dtype)
        y = None
        if len(data) == 2 and data[1] is not None:
            y = _labels_tensor(data[1], label_name, owner, dtype)
        return x, y
    if _is_array_dataset(data):
        x = _tensor(data.x, name, owner, dtype)
        y = None
        if data.has_labels:
            y = _labels_tensor(data.y, label_name, owner, dtype)
        return x, y
    if isinstance(data, TensorDataset):
        tensors = data.tensors
        if len(tensors) not in (1, 2):
            raise ValueError(
                f"{_where(name, owner)} is a TensorDataset of {len(tensors)} tensors; expected "
                "(x,) or (x, y)."
            )
        x = _tensor(tensors[0], name, owner, dtype)
        y = _labels_tensor(tensors[1], label_name, owner, dtype) if len(tensors) == 2 else None
        return x, y
    return None


def _split_batch(batch: Any, name: str, owner: object, index: int):
    if _is_array(batch):
        return batch, None
    if isinstance(batch, tuple | list) and len(batch) in (1, 2) and _is_array(batch[0]):
        return batch[0], (batch[1] if len(batch) == 2 else None)
    what = type(batch).__name__
    if isinstance(batch, tuple | list):
        what = f"a {what} of {len(batch)} items"
    raise TypeError(
        f"{_where(name, owner)} yielded batch {index} as {what}; expected x (N, ...), (x,) or "
        "(x, y) of numpy arrays or tensors."
    )


class Batches:
    """The data of an entry point as an iterable of ``(x, y)`` batches (``y`` is ``None`` for
    unlabelled data), made by :func:`as_loader`.

    In-memory data (arrays, pairs, ArrayDataset, TensorDataset) is held as the tensors
    :attr:`x` and :attr:`y` (checked once, when made) and sliced into ``batch_size`` batches,
    in order or, with ``shuffle=True``, in a fresh permutation drawn from ``generator`` each
    epoch. Other data (a Dataset, a DataLoader, any iterable of batches) is streamed and checked
    batch by batch; ``x`` / ``y`` are ``None`` then. An epoch that yields no example raises a
    ValueError.
    """

    def __init__(self, *, x=None, y=None, stream=None, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, name: str = "x",
                 label_name: str = "y", owner: object = None, dtype=None,
                 finite: bool = True, has_labels: bool | None = None,
                 require_labels: bool = False) -> None:
        self.x, self.y, self._stream = x, y, stream
        self.require_labels = require_labels
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.name, self.label_name, self.owner = name, label_name, owner
        self.dtype, self.finite = dtype, finite
        self._has_labels = has_labels

    @property
    def in_memory(self) -> bool:
        """Whether the data is held as the tensors :attr:`x` / :attr:`y`."""
        return self.x is not None

    @property
    def has_labels(self) -> bool | None:
        """Whether the batches carry labels (``None``: a stream not read yet)."""
        if self.in_memory:
            return self.y is not None
        return self._has_labels

    @property
    def dataset(self):
        """The underlying Dataset (a TensorDataset for in-memory data), or None."""
        if self.in_memory:
            return TensorDataset(self.x) if self.y is None else TensorDataset(self.x, self.y)
        return getattr(self._stream, "dataset", None)

    def __len__(self) -> int:
        if self.in_memory:
            return -(-len(self.x) // self.batch_size)
        return len(self._stream)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        if self.in_memory:
            n = len(self.x)
            order = torch.randperm(n, generator=self.generator) if self.shuffle else None
            for start in range(0, n, self.batch_size):
                if order is None:
                    sl = slice(start, start + self.batch_size)
                else:
                    sl = order[start:start + self.batch_size]
                yield self.x[sl], (None if self.y is None else self.y[sl])
            return
        seen = 0
        for index, batch in enumerate(self._stream):
            x, y = _split_batch(batch, self.name, self.owner, index)
            x = _tensor(x, self.name, self.owner, self.dtype)
            y = None if y is None else _labels_tensor(y, self.label_name, self.owner,
                                                      self.dtype)
            if self._has_labels is False:
                y = None
            if y is None and self.require_labels:
                raise ValueError(f"{_where(self.name, self.owner)} has no labels: its batches "
                                 f"are x alone; expected ({self.name}, {self.label_name}).")
            _check_rows(x, y, self.name, self.label_name, self.owner, offset=seen)
            if self.finite:
                _check_finite(x, self.name, self.owner, offset=seen)
                if y is not None:
                    _check_finite(y, self.label_name, self.owner, offset=seen)
            seen += len(x)
            if self._has_labels is None:
                self._has_labels = y is not None
            if len(x):
                yield x, y
        if seen == 0:
            raise ValueError(f"{_where(self.name, self.owner)} is empty: it yielded no "
                             "examples.")

    def __repr__(self) -> str:
        what = f"n={len(self.x)}" if self.in_memory else type(self._stream).__name__
        return f"Batches({what}, batch_size={self.batch_size}, shuffle={self.shuffle})"


def as_loader(data: Any, *, batch_size: int = 512, labels: Any = None, name: str = "x",
              label_name: str = "y", owner: object = None, shuffle: bool = False,
              generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
              finite: bool = True, require_labels: bool = False) -> Batches:
    """``data`` (any kind in the module docstring) as :class:`Batches` of ``(x, y)``.

    Parameters
    ----------
    data : numpy array, tensor, (x, y) pair, Dataset, DataLoader or iterable of batches
        The inputs ``(N, ...)`` (and labels).
    batch_size : int
        Batch size for in-memory data and Datasets (a DataLoader keeps its own).
    labels : numpy array or tensor, optional
        Labels / targets ``(N, ...)`` of array ``data`` (``fit(x, y)``); refused with other
        kinds, which carry their own.
    name, label_name : str
        The argument names used in messages (``"x"`` and ``"y"`` by default).
    owner : str or object
        Who reads the data, e.g. ``"KNNDetector.fit"``, for messages.
    shuffle : bool
        Reshuffle in-memory data and Datasets every epoch (a DataLoader keeps its own order).
    generator : torch.Generator, optional
        The generator of the shuffling permutations (reproducible epochs).
    dtype : torch.dtype, optional
        Floating dtype that floating inputs and labels are cast to (default: kept).
    finite : bool
        Refuse NaN / inf in floating inputs and labels (default True).
    require_labels : bool
        Refuse data without labels.
    """
    check_int(batch_size, "batch_size", owner_name(owner) if owner else "as_loader", low=1)
    memory = _in_memory(data, labels, name, label_name, owner, dtype)
    if memory is not None:
        x, y = memory
        _check_rows(x, y, name, label_name, owner)
        if len(x) == 0:
            raise ValueError(f"{_where(name, owner)} is empty (shape {tuple(x.shape)}): there "
                             "are no examples.")
        if finite:
            _check_finite(x, name, owner)
            if y is not None:
                _check_finite(y, label_name, owner)
        if require_labels and y is None:
            raise ValueError(f"{_where(name, owner)} has no labels; pass them as "
                             f"({name}, {label_name}) or {label_name}=....")
        return Batches(x=x, y=y, batch_size=batch_size, shuffle=shuffle, generator=generator,
                       name=name, label_name=label_name, owner=owner, dtype=dtype,
                       finite=finite)
    has_labels = None
    if isinstance(data, Dataset):
        if not isinstance(data, IterableDataset) and len(data) == 0:
            raise ValueError(f"{_where(name, owner)} is an empty {type(data).__name__}: there "
                             "are no examples.")
        has_labels = getattr(data, "has_labels", None)
        stream = DataLoader(data, batch_size=batch_size,
                            shuffle=shuffle and not isinstance(data, IterableDataset),
                            generator=generator)
    elif isinstance(data, Batches):
        return data
    elif _is_batch_iterable(data):
        stream = data
        inner = getattr(data, "dataset", None)
        has_labels = getattr(inner, "has_labels", None)
    else:
        raise TypeError(f"{_where(name, owner)} must be {_KINDS}. Got "
                        f"{_kind_for_message(data)} instead.")
    return Batches(stream=stream, batch_size=batch_size, shuffle=shuffle, generator=generator,
                   name=name, label_name=label_name, owner=owner, dtype=dtype, finite=finite,
                   has_labels=has_labels, require_labels=require_labels)


def _kind_for_message(data: Any) -> str:
    if isinstance(data, tuple | list):
        inner = ", ".join(type(v).__name__ for v in data[:3]) + (", ..." if len(data) > 3 else "")
        return f"a {type(data).__name__} of {len(data)} items ({inner})"
    return type(data).__name__


def as_arrays(data: Any, *, labels: Any = None, name: str = "x", label_name: str = "y",
              owner: object = None, dtype: torch.dtype | None = None, finite: bool = True,
              require_labels: bool = False, batch_size: int = 512
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``data`` (any kind in the module docstring) as whole tensors ``(x, y or None)``.

    In-memory kinds are returned without copying (numpy shares memory unless ``dtype`` casts);
    Datasets and loaders are read once and concatenated on the CPU. Arguments as
    :func:`as_loader`.
    """
    batches = as_loader(data, batch_size=batch_size, labels=labels, name=name,
                        label_name=label_name, owner=owner, dtype=dtype, finite=finite,
                        require_labels=require_labels)
    if batches.in_memory:
        return batches.x, batches.y
    xs, ys = [], []
    for x, y in batches:
        xs.append(x.cpu())
        if y is not None:
            ys.append(y.cpu())
    if ys and len(ys) != len(xs):
        raise ValueError(f"{_where(name, owner)} yielded labels in some batches but not in "
                         "others.")
    return torch.cat(xs), (torch.cat(ys) if ys else None)


def apply_batched(fn, data: Any, *, owner: object, batch_size: int = 512, name: str = "x",
                  dtype: torch.dtype | None = None, device: torch.device | None = None) -> Any:
    """``fn(x)`` of user data with numpy in, numpy out (e.g. a density model's ``log_prob``).

    A tensor goes to ``fn`` whole, as it is (autograd intact: training losses take this
    path), after the finite check. Other kinds are read by :func:`as_loader`, run batch by
    batch without gradients (moved to ``device`` when given), concatenated along the first
    axis and returned as :func:`output_like` the input.
    """
    if isinstance(data, torch.Tensor):
        check_finite_tensor(data, name, owner)
        return fn(data)
    batches = as_loader(data, batch_size=batch_size, name=name, owner=owner, dtype=dtype)
    with torch.no_grad():
        out = [fn(x if device is None else x.to(device)) for x, _ in batches]
    return output_like(torch.cat(out), data)
