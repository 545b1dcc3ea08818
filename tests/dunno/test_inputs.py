"""dunno.inputs: every input kind read the same way, numpy in -> numpy out, every refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from dunno.data import ArrayDataset, DatasetInfo
from dunno.inputs import (
    Batches,
    as_arrays,
    as_loader,
    describe_kind,
    is_numpy_input,
    model_dtype,
    output_like,
)
from dunno.validation import check_finite_tensor

OWNER = "Thing.fit"


class MapDataset(Dataset):
    """A user's map-style dataset returning numpy ``(x_i, y_i)`` (or ``x_i`` alone)."""

    def __init__(self, x, y=None):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] if self.y is None else (self.x[i], self.y[i])


class Stream(IterableDataset):
    def __init__(self, x):
        self.x = x

    def __iter__(self):
        yield from self.x


def _collect(batches):
    xs, ys = [], []
    for x, y in batches:
        xs.append(x)
        if y is not None:
            ys.append(y)
    return torch.cat(xs), (torch.cat(ys) if ys else None)


def _kinds(x: np.ndarray, y: np.ndarray):
    """The same data in every accepted kind."""
    info = DatasetInfo("toy", "vector", tuple(x.shape[1:]), num_classes=3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    return {
        "pair-numpy": (x, y),
        "pair-tensor": (tx, ty),
        "pair-mixed": (x, ty),
        "list-pair": [tx, y],
        "TensorDataset": TensorDataset(tx, ty),
        "ArrayDataset": ArrayDataset(tx, ty, info),
        "map-Dataset": MapDataset(x, y),
        "DataLoader": DataLoader(TensorDataset(tx, ty), batch_size=3),
        "DataLoader-map": DataLoader(MapDataset(x, y), batch_size=4),
        "generator": [(tx[:5], ty[:5]), (tx[5:], ty[5:])],
        "batch-list": [(tx[:5], ty[:5]), [x[5:], y[5:]]],
    }


RNG = np.random.default_rng(0)
X = RNG.normal(size=(11, 2, 3)).astype(np.float32)
Y = RNG.integers(0, 3, size=11)


@pytest.mark.parametrize("kind", list(_kinds(X, Y)))
def test_every_kind_gives_the_same_arrays(kind):
    data = _kinds(X, Y)[kind]
    if kind == "generator":
        data = iter(data)
    x, y = as_arrays(data, owner=OWNER)
    np.testing.assert_array_equal(x.numpy(), X)
    np.testing.assert_array_equal(y.numpy(), Y)
    assert x.dtype == torch.float32 and y.dtype == torch.int64


@pytest.mark.parametrize("kind", list(_kinds(X, Y)))
def test_every_kind_gives_the_same_batches(kind):
    data = _kinds(X, Y)[kind]
    if kind == "generator":
        data = iter(data)
    x, y = _collect(as_loader(data, batch_size=4, owner=OWNER))
    np.testing.assert_array_equal(x.numpy(), X)
    np.testing.assert_array_equal(y.numpy(), Y)


def test_arrays_with_labels_argument_and_unlabelled_kinds():
    x, y = as_arrays(X, labels=Y, owner=OWNER)
    assert np.shares_memory(x.numpy(), X)  # no copy
    np.testing.assert_array_equal(y.numpy(), Y)
    for data in (X, torch.from_numpy(X), (X,), (X, None), TensorDataset(torch.from_numpy(X)),
                 MapDataset(X), DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=5),
                 ArrayDataset(torch.from_numpy(X), None, DatasetInfo("u", "vector", (2, 3))),
                 Stream(list(torch.from_numpy(X)))):
        x, y = as_arrays(data, owner=OWNER)
        np.testing.assert_array_equal(x.numpy(), X)
        assert y is None, describe_kind(data)


def test_unlabelled_array_dataset_behind_a_loader_has_no_labels():
    ds = ArrayDataset(torch.from_numpy(X), None, DatasetInfo("u", "vector", (2, 3)))
    batches = as_loader(DataLoader(ds, batch_size=4), owner=OWNER)
    assert batches.has_labels is False
    assert all(y is None for _, y in batches)


def test_labels_list_and_regression_targets():
    x, y = as_arrays(X, labels=list(Y), owner=OWNER)
    np.testing.assert_array_equal(y.numpy(), Y)
    t = RNG.normal(size=(11, 1))
    _, y = as_arrays((X, t), owner=OWNER)
    assert y.dtype == torch.float64 and y.shape == (11, 1)


def test_dtype_casts_floating_inputs_and_targets_only():
    x, y = as_arrays((X.astype(np.float64), Y), dtype=torch.float32, owner=OWNER)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    _, t = as_arrays((X, RNG.normal(size=11)), dtype=torch.float32, owner=OWNER)
    assert t.dtype == torch.float32
    xu, _ = as_arrays(np.zeros((2, 3), dtype=np.uint8), dtype=torch.float32, owner=OWNER)
    assert xu.dtype == torch.uint8  # integer pixels are the caller's to interpret
    xb, _ = as_arrays(np.zeros((2, 3), dtype=np.uint16), owner=OWNER)
    assert xb.dtype == torch.int64


def test_odd_numpy_layouts_are_read():
    x, _ = as_arrays(X[::-1], owner=OWNER)  # negative strides
    np.testing.assert_array_equal(x.numpy(), X[::-1])
    frozen = X.copy()
    frozen.flags.writeable = False
    x, _ = as_arrays(frozen, owner=OWNER)
    np.testing.assert_array_equal(x.numpy(), X)


def test_shuffle_is_a_permutation_and_reproducible():
    x = np.arange(20, dtype=np.float32)[:, None]
    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        return _collect(as_loader(x, batch_size=6, shuffle=True, generator=g))[0].numpy()
    a, b, c = epoch(1), epoch(1), epoch(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.sort(a, axis=0), x)
    batches = as_loader(x, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(batches) == 4
    e1, e2 = _collect(batches)[0], _collect(batches)[0]
    assert not torch.equal(e1, e2)  # a fresh permutation every epoch


def test_shuffle_of_a_dataset_uses_the_generator():
    ds = MapDataset(np.arange(30, dtype=np.float32)[:, None])
    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        return _collect(as_loader(ds, batch_size=7, shuffle=True, generator=g))[0]
    assert torch.equal(epoch(3), epoch(3))
    assert not torch.equal(epoch(3), torch.arange(30.0)[:, None])


def test_batches_is_accepted_again_and_loader_len():
    b = as_loader(X, batch_size=4, owner=OWNER)
    assert as_loader(b) is b
    assert len(b) == 3 and b.in_memory and b.has_labels is False
    assert isinstance(b.dataset, TensorDataset)
    dl = DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=5)
    s = as_loader(dl, owner=OWNER)
    assert len(s) == 3 and not s.in_memory and s.dataset is dl.dataset
    assert "Batches" in repr(b) and "DataLoader" in repr(s)


def test_numpy_in_numpy_out():
    t = torch.arange(3.0)
    assert isinstance(output_like(t, X), np.ndarray)
    assert isinstance(output_like(t, (X, Y)), np.ndarray)
    assert output_like(t, torch.from_numpy(X)) is t
    assert output_like(t, TensorDataset(torch.from_numpy(X))) is t
    assert output_like(t, (torch.from_numpy(X), Y)) is t
    out = output_like({"a": t, "b": (t, [t]), "c": 1}, X)
    assert isinstance(out["a"], np.ndarray) and isinstance(out["b"][1][0], np.ndarray)
    assert out["c"] == 1
    bf = output_like(torch.ones(2, dtype=torch.bfloat16, requires_grad=True), X)
    assert bf.dtype == np.float32
    assert is_numpy_input(X) and is_numpy_input((X, Y)) and not is_numpy_input([1.0])


def test_describe_kind():
    kinds = _kinds(X, Y)
    assert describe_kind(X) == "numpy" and describe_kind(torch.from_numpy(X)) == "tensor"
    assert describe_kind(kinds["pair-numpy"]) == "pair"
    assert describe_kind(kinds["TensorDataset"]) == "TensorDataset"
    assert describe_kind(kinds["ArrayDataset"]) == "ArrayDataset"
    assert describe_kind(kinds["map-Dataset"]) == "Dataset"
    assert describe_kind(kinds["DataLoader"]) == "DataLoader"
    assert describe_kind(iter([])) == "iterable"
    assert describe_kind("x") == "unsupported"


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize("bad, shown", [
    ("abc", "Got str instead"),
    ({"x": X}, "Got dict instead"),
    ([1.0, 2.0], r"Got a list of 2 items \(float, float\) instead"),
    ((X, Y, Y), r"Got a tuple of 3 items \(ndarray, ndarray, ndarray\) instead"),
    (3.0, "Got float instead"),
    (None, "Got NoneType instead"),
])
def test_unsupported_kinds_are_type_errors(bad, shown):
    with pytest.raises(TypeError, match=r"The 'x' argument of Thing.fit must be a numpy array, "
                       r"a torch tensor, an \(x, y\) pair, a Dataset or a DataLoader. " + shown):
        as_loader(bad, owner=OWNER)


def test_non_real_dtypes_are_refused():
    with pytest.raises(ValueError, match="'x' argument of Thing.fit must hold real numbers.*"
                       "dtype <U1"):
        as_loader(np.array(["a", "b"]), owner=OWNER)
    with pytest.raises(ValueError, match="'x' argument of Thing.fit must hold real numbers.*"
                       "complex64"):
        as_loader(torch.zeros(3, dtype=torch.complex64), owner=OWNER)
    with pytest.raises(ValueError, match="'y' argument of Thing.fit must hold real numbers"):
        as_loader(X, labels=np.array([None] * 11), owner=OWNER)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_inputs_are_refused(value):
    x = X.copy()
    x[4, 1, 2] = value
    msg = rf"The 'x' argument of Thing.fit must be finite \(no NaN or inf\); found {value} at " \
          r"index \(4, 1, 2\)"
    for data in (x, torch.from_numpy(x), (x, Y), TensorDataset(torch.from_numpy(x))):
        with pytest.raises(ValueError, match=msg):
            as_loader(data, owner=OWNER)
    # a loader is checked batch by batch; the index is the example's index in the data
    loader = DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=3)
    with pytest.raises(ValueError, match=msg):
        as_arrays(loader, owner=OWNER)
    with pytest.raises(ValueError, match=msg):
        list(as_loader(MapDataset(x), batch_size=2, owner=OWNER))


def test_nan_targets_are_refused_and_finite_false_lets_them_through():
    t = np.ones(11)
    t[7] = np.nan
    with pytest.raises(ValueError, match=r"The 'y' argument of Thing.fit must be finite.*nan "
                       "at index 7"):
        as_loader((X, t), owner=OWNER)
    x = X.copy()
    x[0, 0, 0] = np.nan
    got, _ = as_arrays(x, owner=OWNER, finite=False)
    assert torch.isnan(got[0, 0, 0])


def test_integer_inputs_are_not_checked_for_finiteness():
    x, _ = as_arrays(np.arange(6).reshape(3, 2), owner=OWNER)
    assert x.dtype == torch.int64
    check_finite_tensor(torch.tensor([True, False]), "x")


def test_check_finite_tensor_without_owner_and_with_offset():
    with pytest.raises(ValueError, match=r"^The 'scores' argument must be finite \(no NaN or "
                       r"inf\); found nan at index 12\.$"):
        check_finite_tensor(torch.tensor([0.0, 1.0, float("nan")]), "scores", offset=10)


@pytest.mark.parametrize("data", [
    np.zeros((0, 3)), torch.zeros(0, 2), (np.zeros((0, 3)), np.zeros(0)),
    TensorDataset(torch.zeros(0, 2)), MapDataset(np.zeros((0, 2))),
])
def test_empty_data_is_refused(data):
    with pytest.raises(ValueError, match="The 'x' argument of Thing.fit is (an )?empty"):
        as_loader(data, owner=OWNER)


def test_empty_loader_is_refused_when_read():
    with pytest.raises(ValueError, match="The 'x' argument of Thing.fit is empty: it yielded no "
                       "examples"):
        as_arrays(iter([]), owner=OWNER)
    with pytest.raises(ValueError, match="is empty: it yielded no examples"):
        as_arrays(Stream([]), owner=OWNER)
    with pytest.raises(ValueError, match="is empty: it yielded no examples"):
        as_arrays([], owner=OWNER)


def test_model_dtype():
    assert model_dtype(torch.nn.Linear(2, 2).double()) == torch.float64
    assert model_dtype(torch.nn.ReLU()) is None
    assert model_dtype(None) is None


def test_scalars_are_refused():
    with pytest.raises(ValueError, match=r"'x' argument of Thing.fit must have a first "
                       r"\(example\) dimension.*Got a scalar of shape \(\)"):
        as_loader(np.array(1.0), owner=OWNER)
    with pytest.raises(ValueError, match="'y' argument of Thing.fit must have one entry per "
                       "example"):
        as_loader(X, labels=np.array(1), owner=OWNER)


def test_mismatched_lengths_are_refused():
    msg = (r"The 'x' and 'y' arguments of Thing.fit must have the same number of rows. Got 11 "
           r"rows in x and 10 in y")
    for data, labels in (((X, Y[:10]), None), (X, Y[:10]), ((torch.from_numpy(X), Y[:10]), None)):
        with pytest.raises(ValueError, match=msg):
            as_loader(data, labels=labels, owner=OWNER)
    with pytest.raises(ValueError, match=r"same number of rows \(in the batch starting at "
                       r"example 2\). Got 2 rows in x and 1 in y"):
        as_arrays(iter([(torch.zeros(2, 1), torch.zeros(2)), (torch.zeros(2, 1), torch.zeros(1))]),
                  owner=OWNER)


def test_labels_argument_with_a_kind_that_has_its_own_is_refused():
    with pytest.raises(ValueError, match="The 'y' argument of Thing.fit is only read with arrays; "
                       "pair input carries its own labels"):
        as_loader((X, Y), labels=Y, owner=OWNER)
    with pytest.raises(ValueError, match="DataLoader input carries its own labels"):
        as_loader(DataLoader(TensorDataset(torch.from_numpy(X))), labels=Y, owner=OWNER)
    with pytest.raises(TypeError, match="The 'y' argument of Thing.fit must be a numpy array or "
                       "a torch tensor of labels.*Got str instead"):
        as_loader(X, labels="abc", owner=OWNER)
    with pytest.raises(ValueError, match="The 'y' argument of Thing.fit could not be read"):
        as_loader(X, labels=[[1], [1, 2]], owner=OWNER)


def test_required_labels_are_refused_when_missing():
    with pytest.raises(ValueError, match=r"The 'x' argument of Thing.fit has no labels; pass them "
                       r"as \(x, y\) or y=..."):
        as_loader(X, owner=OWNER, require_labels=True)
    with pytest.raises(ValueError, match="The 'x' argument of Thing.fit has no labels: its batches "
                       "are x alone"):
        as_arrays(DataLoader(TensorDataset(torch.from_numpy(X))), owner=OWNER,
                  require_labels=True)
    x, y = as_arrays(DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))),
                     owner=OWNER, require_labels=True)
    assert y is not None


def test_bad_batches_and_bad_tensor_datasets_are_refused():
    with pytest.raises(TypeError, match=r"The 'x' argument of Thing.fit yielded batch 1 as a "
                       r"tuple of 3 items; expected x \(N, ...\), \(x,\) or \(x, y\)"):
        as_arrays(iter([torch.zeros(2, 1), (torch.zeros(2, 1),) * 3]), owner=OWNER)
    with pytest.raises(TypeError, match="yielded batch 0 as str"):
        as_arrays(iter(["ab"]), owner=OWNER)
    t = torch.zeros(2, 1)
    with pytest.raises(ValueError, match=r"'x' argument of Thing.fit is a TensorDataset of 3 "
                       r"tensors; expected \(x,\) or \(x, y\)"):
        as_loader(TensorDataset(t, t, t), owner=OWNER)


def test_batch_size_is_checked():
    with pytest.raises(ValueError, match="The 'batch_size' parameter of Thing.fit must be an int "
                       ">= 1. Got 0 instead"):
        as_loader(X, batch_size=0, owner=OWNER)


def test_names_in_messages_follow_the_entry_point():
    with pytest.raises(ValueError, match="The 'x_val' argument of Cal.fit must be finite"):
        as_loader(np.array([[np.nan]]), name="x_val", owner="Cal.fit")
    with pytest.raises(ValueError, match="The 'labels' argument of Cal.fit must be finite"):
        as_loader(X, labels=np.full(11, np.inf), label_name="labels", owner="Cal.fit")


# ---------------------------------------------------------------------- random shapes / dtypes
# (seeded sweeps that always run; tests/dunno/test_inputs_properties.py adds hypothesis)
@pytest.mark.parametrize("seed", range(12))
def test_round_trip_over_random_shapes_and_dtypes(seed):
    rng = np.random.default_rng(seed)
    dtype = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8,
             np.bool_][seed % 8]
    shape = tuple(int(s) for s in rng.integers(1, 5, size=rng.integers(1, 4)))
    n = int(rng.integers(1, 40))
    x = (rng.normal(size=(n, *shape)) * 10).astype(dtype)
    y = rng.integers(0, 5, size=n)
    batch = int(rng.integers(1, 50))
    got, gy = _collect(as_loader(x, labels=y, batch_size=batch))
    assert got.numpy().dtype == x.dtype
    np.testing.assert_array_equal(got.numpy(), x)
    np.testing.assert_array_equal(gy.numpy(), y)
    for data in ((x, y), TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                 DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                            batch_size=batch)):
        a, b = as_arrays(data)
        np.testing.assert_array_equal(a.numpy(), x)
        np.testing.assert_array_equal(b.numpy(), y)
    assert isinstance(Batches, type)
