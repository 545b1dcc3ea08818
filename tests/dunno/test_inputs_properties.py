"""Property-based tests of dunno.inputs over random shapes, dtypes and batch sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dunno.inputs import as_arrays, as_loader, output_like

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                          np.int64, np.uint8, np.bool_])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)


@st.composite
def arrays_with_labels(draw):
    dtype = draw(DTYPES)
    shape = draw(SHAPES)
    elements = None
    if np.dtype(dtype).kind == "f":
        elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=16)
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    y = draw(hnp.arrays(np.int64, (shape[0],), elements=st.integers(0, 9)))
    return x, y


def _cat(batches):
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), (None if ys[0] is None else torch.cat(ys))


@settings(max_examples=60, deadline=None)
@given(arrays_with_labels(), st.integers(1, 20))
def test_numpy_loader_round_trip_keeps_values_and_dtype(data, batch_size):
    x, y = data
    gx, gy = _cat(as_loader(x, labels=y, batch_size=batch_size))
    assert gx.numpy().dtype == x.dtype
    np.testing.assert_array_equal(gx.numpy(), x)
    np.testing.assert_array_equal(gy.numpy(), y)
    assert len(as_loader(x, batch_size=batch_size)) == -(-len(x) // batch_size)


@settings(max_examples=60, deadline=None)
@given(arrays_with_labels(), st.integers(1, 20))
def test_pair_dataset_and_loader_are_equivalent(data, batch_size):
    x, y = data
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    ref = as_arrays((x, y))
    for kind in ((tx, ty), TensorDataset(tx, ty), DataLoader(TensorDataset(tx, ty),
                                                              batch_size=batch_size)):
        got = as_arrays(kind)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


@settings(max_examples=40, deadline=None)
@given(arrays_with_labels())
def test_float32_cast_is_exact_for_float_inputs_and_numpy_comes_back(data):
    x, _ = data
    got, _ = as_arrays(x, dtype=torch.float32)
    if x.dtype.kind == "f":
        assert got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), x.astype(np.float32))
    back = output_like(got, x)
    assert isinstance(back, np.ndarray) and back.shape == x.shape


@settings(max_examples=40, deadline=None)
@given(arrays_with_labels(), st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_any_non_finite_entry_is_found(data, value, draw):
    x, _ = data
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    x = x.copy()
    flat = draw.draw(st.integers(0, x.size - 1))
    x.flat[flat] = value
    index = np.unravel_index(flat, x.shape)
    where = str(index[0]) if x.ndim == 1 else str(tuple(int(i) for i in index))
    with pytest.raises(ValueError, match="must be finite") as err:
        as_arrays(DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=3), owner="T.fit")
    assert f"at index {where}." in str(err.value)
