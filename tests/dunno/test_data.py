"""dunno.data: registry, real datasets, splits, shifts, user data and bad input."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from dunno.data import (
    DynamicBinarize,
    available_datasets,
    dataset_status,
    gaussian_blur,
    invert,
    load_dataset,
    make_loader,
    parse_spec,
    read_idx,
    rotate,
)
from dunno.data import images as images_module
from dunno.errors import DataError


def _write_idx(path, array: np.ndarray, magic_dims: int, truncate: int = 0) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, magic_dims) + struct.pack(
        ">" + "I" * array.ndim, *array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    if truncate:
        payload = payload[:-truncate]
    with gzip.open(path, "wb") as handle:
        handle.write(payload)


def _fake_mnist(folder, n=12, seed=0):
    """Write small valid IDX files named like MNIST's; returns {filename: sha256}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("train", "t10k"):
        _write_idx(folder / f"{part}-images-idx3-ubyte.gz",
                   rng.integers(0, 256, (n, 28, 28)), 3)
        _write_idx(folder / f"{part}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)), 1)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


# --------------------------------------------------------------------------- registry
def test_spec_parsing():
    assert parse_spec("mnist:rotate=90:invert") == ("mnist", {"rotate": "90", "invert": True})
    assert parse_spec("uci/yacht:k=3") == ("uci/yacht", {"k": "3"})


def test_registry_lists_the_promised_datasets():
    names = {d["name"] for d in available_datasets()}
    for expected in ["digits", "mnist", "fashion-mnist", "mnist-binary", "uci/yacht",
                     "gaussian-noise", "uniform-noise", "two-moons", "ring-of-gaussians",
                     "cubic", "inverse-sine"]:
        assert expected in names
    assert sum(n.startswith("uci/") for n in names) == 9


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError, match="Unknown dataset 'mnits'.*digits.*fashion-mnist"):
        load_dataset("mnits")


def test_unknown_option_is_rejected():
    with pytest.raises(DataError, match=r"Unknown option\(s\) \['rotat'\].*rotate"):
        load_dataset("digits:rotat=3")


def test_bad_split():
    with pytest.raises(DataError, match="'split' argument must be one of"):
        load_dataset("digits", "training")


# --------------------------------------------------------------------------- digits
def test_digits_split_is_fixed_disjoint_and_complete():
    parts = {s: load_dataset("digits", s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [1257, 180, 360]
    for ds in parts.values():
        assert ds.x.shape[1:] == (1, 8, 8) and ds.x.dtype == torch.float32
        assert ds.x.min() >= 0 and ds.x.max() <= 1 and ds.y.dtype == torch.long
    rows = {tuple(v.tolist()) for s in parts for v in parts[s].x.flatten(1)}
    from sklearn.datasets import load_digits

    assert len(rows) == len({tuple(v) for v in (load_digits().data / 16).astype(np.float32)})
    again = load_dataset("digits", "test")
    assert torch.equal(again.x, parts["test"].x)
    # stratified: every class appears in the test split in proportion
    counts = torch.bincount(parts["test"].y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38


def test_classes_option_filters_and_renumbers():
    ds = load_dataset("digits:classes=5-9", "test")
    full = load_dataset("digits", "test")
    assert ds.info.num_classes == 5 and set(ds.y.tolist()) == set(range(5))
    assert len(ds) == int((full.y >= 5).sum())
    assert torch.equal(ds.y, full.y[full.y >= 5] - 5)
    with pytest.raises(DataError, match="outside 0..9"):
        load_dataset("digits:classes=8-12")


# --------------------------------------------------------------------------- MNIST / Fashion
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_sets_load_with_documented_splits(data_dir, name):
    train = load_dataset(name, "train", data_dir)
    val = load_dataset(name, "val", data_dir)
    test = load_dataset(name, "test", data_dir)
    assert (len(train), len(val), len(test)) == (55000, 5000, 10000)
    assert train.x.shape[1:] == (1, 28, 28) and train.x.dtype == torch.float32
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0
    assert torch.bincount(test.y, minlength=10).tolist() == (
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009] if name == "mnist" else [1000] * 10
    )
    full = load_dataset(name, "train-full", data_dir)
    assert len(full) == 60000
    # train and val partition the training file
    assert torch.bincount(torch.cat([train.y, val.y]), minlength=10).tolist() == (
        torch.bincount(full.y, minlength=10).tolist()
    )


def test_mnist_binary_is_a_fixed_draw(data_dir):
    a = load_dataset("mnist-binary", "test", data_dir)
    b = load_dataset("mnist-binary", "test", data_dir)
    grey = load_dataset("mnist", "test", data_dir)
    assert set(torch.unique(a.x).tolist()) == {0.0, 1.0}
    assert torch.equal(a.x, b.x)
    # the draw follows the intensities: mean of binary pixels ~ mean intensity
    assert abs(float(a.x.mean()) - float(grey.x.mean())) < 2e-3


def test_dynamic_binarize_draws_anew():
    x = torch.full((4, 1, 8, 8), 0.3)
    binarize = DynamicBinarize(seed=0)
    first, second = binarize(x), binarize(x)
    assert set(torch.unique(first).tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binarize(x + 1)


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "train", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "mnist") in message and "download=True" in message
    assert "$DUNNO_DATA" in message


def test_sha256_mismatch_names_file_expected_and_actual(tmp_path):
    _fake_mnist(tmp_path / "mnist")
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", tmp_path)
    message = str(info.value)
    expected = images_module.IDX_SETS["mnist"]["files"]["t10k-images-idx3-ubyte.gz"]
    assert "t10k-images-idx3-ubyte.gz" in message and expected in message
    actual = hashlib.sha256((tmp_path / "mnist/t10k-images-idx3-ubyte.gz").read_bytes())
    assert actual.hexdigest() in message
    status = {r["name"]: r["status"] for r in dataset_status(tmp_path)}
    assert status["mnist"] == "corrupt" and status["fashion-mnist"] == "missing"


def test_truncated_idx_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    _write_idx(path, np.zeros((5, 28, 28)), 3, truncate=100)
    with pytest.raises(DataError, match="truncated.*3820 bytes"):
        read_idx(path)
    # a gzip stream cut short
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated or not a valid gzip"):
        read_idx(path)
    # through the loader, with hashing off
    _fake_mnist(tmp_path / "mnist")
    _write_idx(tmp_path / "mnist/t10k-images-idx3-ubyte.gz", np.zeros((12, 28, 28)), 3,
               truncate=1)
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", "test", tmp_path, verify=False)


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    _write_idx(tmp_path / "a.gz", array, 3)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


# --------------------------------------------------------------------------- download
@pytest.fixture
def http_server(tmp_path):
    """A throw-away HTTP server on 127.0.0.1 serving tmp_path/served."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_download_from_mirrors_verifies_and_falls_through(tmp_path, http_server, monkeypatch):
    served, url = http_server
    hashes = _fake_mnist(served / "good")
    (served / "bad").mkdir()
    for name in hashes:  # the 'bad' mirror serves different bytes under the same names
        (served / "bad" / name).write_bytes(b"not the file")
    monkeypatch.setitem(images_module.IDX_SETS["mnist"], "files", hashes)
    root = tmp_path / "data"
    mirrors = [f"{url}/missing/", f"{url}/bad/", f"{url}/good/"]
    ds = load_dataset("mnist", "test", root, download=True, mirrors=mirrors)
    assert len(ds) == 12 and ds.x.shape[1:] == (1, 28, 28)
    for name, sha in hashes.items():
        assert hashlib.sha256((root / "mnist" / name).read_bytes()).hexdigest() == sha
    assert not list((root / "mnist").glob("*.part"))
    # no good mirror: a clear error listing what each answered, nothing left behind
    with pytest.raises(DataError, match="Could not download") as info:
        load_dataset("mnist", "test", tmp_path / "other", download=True,
                     mirrors=[f"{url}/missing/", f"{url}/bad/"])
    assert "404" in str(info.value) and "sha256" in str(info.value)
    assert not list((tmp_path / "other" / "mnist").glob("*"))


def test_download_real_files_from_local_mirror(data_dir, tmp_path, http_server):
    import shutil

    served, url = http_server
    shutil.copytree(data_dir / "mnist", served / "mnist")
    root = tmp_path / "data"
    ds = load_dataset("mnist", "test", root, download=True, mirrors=[f"{url}/mnist/"])
    assert len(ds) == 10000
    assert {r["name"]: r["status"] for r in dataset_status(root)}["mnist"] == "verified"


# --------------------------------------------------------------------------- UCI
def test_uci_split_matches_index_files_and_standardises_on_train(data_dir):
    folder = data_dir / "uci" / "concrete"
    raw = np.loadtxt(folder / "data.txt")
    k = 3
    train_idx = np.loadtxt(folder / f"index_train_{k}.txt").astype(int)
    test_idx = np.loadtxt(folder / f"index_test_{k}.txt").astype(int)
    train = load_dataset("uci/concrete", "train", data_dir, k=k)
    test = load_dataset(f"uci/concrete:k={k}", "test", data_dir)
    assert len(train) == len(train_idx) and len(test) == len(test_idx)
    np.testing.assert_allclose(train.y_original.numpy()[:, 0], raw[train_idx, 8], rtol=1e-5)
    np.testing.assert_allclose(test.y_original.numpy()[:, 0], raw[test_idx, 8], rtol=1e-5)
    np.testing.assert_allclose(train.x.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(train.x.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    assert torch.equal(train.x_mean, test.x_mean)  # test uses the training statistics


def test_uci_constant_columns_and_aliases(data_dir):
    naval = load_dataset("uci/naval", "train", data_dir)
    assert naval.x.shape[1] == 16 and torch.isfinite(naval.x).all()
    protein = load_dataset("uci/protein", "test", data_dir, k=4)
    assert protein.info.extras["n_splits"] == 5
    with pytest.raises(DataError, match="k = 0..4"):
        load_dataset("uci/protein", "test", data_dir, k=5)
    status = {r["name"]: r["status"] for r in dataset_status(data_dir)}
    assert all(status[n] == "verified" for n in status if n.startswith("uci/"))


# --------------------------------------------------------------------------- shifts and noise
def test_rotation():
    x = torch.rand(3, 1, 9, 9)
    assert torch.equal(rotate(x, 360), x)
    assert torch.equal(rotate(rotate(x, 90), 270), x)
    # the interpolating path agrees with the exact one (direction and centre)
    near = rotate(x, 90.0001)
    assert torch.allclose(near, rotate(x, 90), atol=1e-3)
    assert torch.equal(rotate(x, 90), torch.from_numpy(np.rot90(x.numpy(), 1, axes=(2, 3)).copy()))


def test_inversion_blur_and_noise_options():
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(invert(invert(x)), x)
    const = torch.full((1, 1, 8, 8), 0.4)
    assert torch.allclose(gaussian_blur(const, 1.0), const, atol=1e-6)
    base = load_dataset("digits", "test")
    inv = load_dataset("digits:invert", "test")
    assert torch.allclose(inv.x, 1 - base.x)
    noisy_a = load_dataset("digits:noise=0.2", "test")
    noisy_b = load_dataset("digits:noise=0.2", "test")
    assert torch.equal(noisy_a.x, noisy_b.x) and noisy_a.x.min() >= 0 and noisy_a.x.max() <= 1
    blurred = load_dataset("digits:blur=1", "test")
    assert blurred.x.var() < base.x.var()
    with pytest.raises(DataError, match="needs a number"):
        load_dataset("digits:rotate=left")


def test_noise_sets_match_the_in_distribution_data():
    ref = load_dataset("digits", "test")
    for name in ("gaussian-noise", "uniform-noise"):
        ds = load_dataset(name, "test", like=ref)
        assert ds.x.shape == ref.x.shape and not ds.has_labels
        assert ds.x.min() >= 0 and ds.x.max() <= 1
    fixed = load_dataset("gaussian-noise:shape=1x28x28:n=50", "test")
    assert fixed.x.shape == (50, 1, 28, 28)
    u = load_dataset("uniform-noise:shape=1x8x8:n=20000", "test")
    assert abs(float(u.x.mean()) - 0.5) < 0.01
    with pytest.raises(DataError, match="like=<in-distribution"):
        load_dataset("gaussian-noise", "test")


def test_toy_sets():
    cubic = load_dataset("cubic", "train")
    assert cubic.x.shape == (20, 1) and cubic.x.abs().max() <= 4
    resid = cubic.y - cubic.x**3
    assert resid.std() < 6  # noise std 3
    sine = load_dataset("inverse-sine", "train")
    assert torch.allclose(sine.x, sine.y + 0.3 * torch.sin(2 * torch.pi * sine.y), atol=0.1001)
    ring = load_dataset("ring-of-gaussians", "train")
    assert torch.allclose(ring.x.norm(dim=1), torch.full((1000,), 2.0), atol=0.1)
    moons = load_dataset("two-moons:n=100", "train")
    assert moons.x.shape == (100, 2) and set(moons.y.tolist()) == {0, 1}


# --------------------------------------------------------------------------- user data
def test_user_npz_and_npy(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(6) % 3)
    ds = load_dataset(str(tmp_path / "d.npz"), "all")
    assert ds.x.shape == (6, 1, 5, 5) and ds.info.num_classes == 3
    np.testing.assert_allclose(ds.x[:, 0].numpy(), x / 255.0, rtol=1e-6)
    np.save(tmp_path / "only.npy", x.astype(np.float32) / 255)
    assert not load_dataset(str(tmp_path / "only.npy"), "all").has_labels
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(DataError, match="'x'.*required"):
        load_dataset(str(tmp_path / "bad.npz"))


def test_user_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "pets" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (6, 7), dtype=np.uint8)).save(
                tmp_path / "pets" / cls / f"{i}.png"
            )
    ds = load_dataset(str(tmp_path / "pets"), "all")
    assert ds.x.shape == (6, 1, 6, 7) and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.info.extras["classes"] == ["cat", "dog"]
    Image.fromarray(np.zeros((9, 9), dtype=np.uint8)).save(tmp_path / "pets" / "dog" / "x.png")
    with pytest.raises(DataError, match="mixed sizes.*6x7.*9x9"):
        load_dataset(str(tmp_path / "pets"))


# --------------------------------------------------------------------------- loaders
def test_loader_covers_everything_once_and_repeats_with_seed():
    ds = load_dataset("digits", "val")
    loader = make_loader(ds, 64, shuffle=True, seed=3)
    seen = torch.cat([y for _, y in loader])
    assert len(loader) == 3 and sorted(seen.tolist()) == sorted(ds.y.tolist())
    again = torch.cat([y for _, y in make_loader(ds, 64, shuffle=True, seed=3)])
    assert torch.equal(seen, again)  # same seed, same first epoch
    assert not torch.equal(seen, torch.cat([y for _, y in loader]))  # a new epoch reshuffles
    with pytest.raises(ValueError, match="'batch_size' parameter of make_loader must be an int "
                                         ">= 1. Got 0 instead."):
        make_loader(ds, 0)
