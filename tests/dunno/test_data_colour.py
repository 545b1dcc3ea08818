"""dunno.data: CIFAR-10, CIFAR-100 and SVHN read from tiny files in the official formats
(exact pixels, channel order and labels, splits, checksums, refusals, downloads)."""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.request

import numpy as np
import pytest
import tiny_colour
import torch
from tiny_colour import install, write_svhn, write_tar

from dunno.data import available_datasets, dataset_status, load_dataset
from dunno.data import colour as colour_module
from dunno.data.colour import read_cifar_records, read_svhn_mat
from dunno.errors import DataError

LOCAL = ("http://127.0.0.1:", "http://localhost:")


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Nothing in this module may reach past this machine: a URL other than a local test
    server fails the test."""
    real = urllib.request.urlopen
    calls = []

    def guarded(url, *args, **kwargs):
        text = url if isinstance(url, str) else url.full_url
        calls.append(text)
        if not text.startswith(LOCAL):
            raise AssertionError(f"a test tried to download {text}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    return calls


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    root = tmp_path / "data"
    return root, install(root, monkeypatch)


def _float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32) / 255.0)


# --------------------------------------------------------------------------- registry
def test_colour_sets_are_registered_as_files():
    rows = {d["name"]: d for d in available_datasets()}
    for name in ("cifar10", "cifar100", "svhn"):
        assert rows[name]["source"] == "files"


def test_official_checksums_are_pinned_with_their_md5s():
    sets = colour_module.COLOUR_SETS
    assert set(sets["cifar10"]["files"]) == {"cifar-10-binary.tar.gz"}
    assert set(sets["cifar100"]["files"]) == {"cifar-100-binary.tar.gz"}
    assert set(sets["svhn"]["files"]) == {"train_32x32.mat", "test_32x32.mat"}
    for spec in sets.values():
        assert set(spec["md5"]) == set(spec["files"])
        for digest in spec["files"].values():
            assert len(digest) == 64 and int(digest, 16) >= 0
    # the torchvision MD5s the archives are published with
    assert sets["cifar10"]["md5"]["cifar-10-binary.tar.gz"] == "c32a1d4ab5d03f1284b67883e8d87530"
    assert sets["svhn"]["md5"]["test_32x32.mat"] == "eb5a983be6a315427106f1b164d9cef3"


# --------------------------------------------------------------------------- decoding
def test_cifar_record_layout_label_then_red_green_blue_planes_by_rows():
    record = bytearray([7]) + bytes([10]) * 1024 + bytes([20]) * 1024 + bytes([30]) * 1024
    record[1 + 1024 + 1 * 32 + 2] = 255  # green plane, row 1, column 2
    record[1 + 2 * 1024 + 31 * 32 + 0] = 0  # blue plane, last row, first column
    images, labels = read_cifar_records(bytes(record) * 2, 1, "test", records=2)
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [[7], [7]]
    assert images[0, 0].min() == images[0, 0].max() == 10
    assert images[0, 1, 1, 2] == 255 and images[0, 1, 2, 1] == 20 and images[0, 1, 0, 0] == 20
    assert images[0, 2, 31, 0] == 0 and images[0, 2, 0, 31] == 30


def test_cifar10_pixels_labels_and_channel_order_are_exact(tiny):
    root, written = tiny
    x, y = written["cifar10"]["test"]
    test = load_dataset("cifar10", "test", root)
    assert test.x.shape == (tiny_colour.CIFAR10_TEST, 3, 32, 32) and test.x.dtype == torch.float32
    torch.testing.assert_close(test.x, _float(x), rtol=0, atol=0)
    assert test.y.tolist() == y.tolist() and test.y.dtype == torch.long
    assert test.info.num_classes == 10 and test.info.extras["classes"][0] == "airplane"
    assert test.info.extras["augmentation"] == {"crop_padding": 4, "flip": True}
    # the red channel is channel 0: a pixel of image 0 read straight from its record bytes
    record = tiny_colour.cifar_records(x[:1], y[:1])
    assert round(float(test.x[0, 0, 5, 9]) * 255) == record[1 + 5 * 32 + 9]
    assert round(float(test.x[0, 2, 5, 9]) * 255) == record[1 + 2048 + 5 * 32 + 9]
    assert record[1 + 5 * 32 + 9] != record[1 + 2048 + 5 * 32 + 9]  # the check can tell R from B


def test_cifar10_splits_partition_the_five_training_batches(tiny):
    root, written = tiny
    x, y = written["cifar10"]["train"]  # batches 1..5 in file order
    full = load_dataset("cifar10", "train-full", root)
    torch.testing.assert_close(full.x, _float(x), rtol=0, atol=0)
    assert full.y.tolist() == y.tolist()
    train, val = load_dataset("cifar10", "train", root), load_dataset("cifar10", "val", root)
    assert (len(train), len(val)) == (len(x) - tiny_colour.N_VAL, tiny_colour.N_VAL)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    val_index = perm[:tiny_colour.N_VAL].sort().values
    train_index = perm[tiny_colour.N_VAL:].sort().values
    assert torch.equal(val.x, full.x[val_index]) and torch.equal(train.x, full.x[train_index])
    assert torch.equal(load_dataset("cifar10", "val", root).x, val.x)  # fixed


def test_cifar100_fine_labels_by_default_coarse_as_an_option(tiny):
    root, written = tiny
    x, coarse, fine = written["cifar100"]["test"]
    ds = load_dataset("cifar100", "test", root)
    torch.testing.assert_close(ds.x, _float(x), rtol=0, atol=0)
    assert ds.y.tolist() == fine.tolist() and ds.info.num_classes == 100
    ds_c = load_dataset("cifar100:labels=coarse", "test", root)
    assert ds_c.y.tolist() == coarse.tolist() and ds_c.info.num_classes == 20
    assert torch.equal(ds_c.x, ds.x)
    with pytest.raises(DataError, match="'labels' of 'cifar100' must be one of"):
        load_dataset("cifar100:labels=superclass", "test", root)
    with pytest.raises(DataError, match=r"Unknown option\(s\) \['labels'\]"):
        load_dataset("cifar10:labels=coarse", "test", root)


def test_generic_options_apply_to_colour_sets(tiny):
    root, written = tiny
    x, y = written["cifar10"]["test"]
    flipped = load_dataset("cifar10:invert", "test", root)
    torch.testing.assert_close(flipped.x, 1 - _float(x), rtol=0, atol=1e-7)
    some = load_dataset("cifar10:classes=0-4", "test", root)
    assert some.y.tolist() == [int(v) for v in y if v < 5]


def test_svhn_transposes_x_and_maps_label_10_to_digit_0(tiny, tmp_path):
    root, written = tiny
    x, y = written["svhn"]["test"]
    load_dataset("svhn", "test", root).y.zero_()  # the caller's copy: the cache is not touched
    ds = load_dataset("svhn", "test", root)
    torch.testing.assert_close(ds.x, _float(x), rtol=0, atol=0)
    assert ds.y.tolist() == y.tolist() and ds.y[0] == 0 and ds.info.num_classes == 10
    # by hand: X[h, w, c, n] is pixel (h, w) of channel c of image n
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    images[1, 2, 3, 4] = 200
    path = write_svhn(tmp_path / "one.mat", images, np.array([10 % 10, 4]))
    from scipy.io import loadmat

    raw = loadmat(path)
    assert raw["X"][3, 4, 2, 1] == 200 and raw["y"].ravel().tolist() == [10, 4]
    decoded, digits = read_svhn_mat(path, records=2)
    assert decoded[1, 2, 3, 4] == 200 and decoded.sum() == 200 and digits.tolist() == [0, 4]
    assert len(load_dataset("svhn", "train", root)) == tiny_colour.SVHN_TRAIN - tiny_colour.N_VAL


def test_ood_sets_of_the_openood_protocol_share_the_input_shape(tiny):
    root, _ = tiny
    shapes = {load_dataset(n, "test", root).x.shape[1:] for n in ("cifar10", "cifar100", "svhn")}
    assert shapes == {(3, 32, 32)}


# --------------------------------------------------------------------------- refusals
def test_sha256_mismatch_names_the_file_and_both_sums(tiny):
    root, _ = tiny
    path = root / "cifar10" / "cifar-10-binary.tar.gz"
    expected = colour_module.COLOUR_SETS["cifar10"]["files"][path.name]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="sha256 mismatch") as info:
        load_dataset("cifar10", "test", root)
    assert str(path) in str(info.value) and expected in str(info.value)
    assert tiny_colour.sha256(path) in str(info.value)
    status = {r["name"]: r["status"] for r in dataset_status(root)}
    assert (status["cifar10"], status["cifar100"], status["svhn"]) == (
        "corrupt", "verified", "verified")


def test_truncated_archive_is_refused_even_without_hashing(tiny):
    root, _ = tiny
    path = root / "cifar10" / "cifar-10-binary.tar.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or not a valid .tar.gz") as info:
        load_dataset("cifar10", "test", root, verify=False)
    assert str(path) in str(info.value)
    damaged = bytearray(tiny_colour.write_tar(path, {"a.bin": bytes(range(256)) * 64}
                                              ).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one byte of the stored data: the gzip CRC fails
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="truncated or not a valid .tar.gz"):
        load_dataset("cifar10", "test", root, verify=False)
    path.write_bytes(b"not an archive at all")
    with pytest.raises(DataError, match="not a valid .tar.gz"):
        load_dataset("cifar10", "test", root, verify=False)


def test_bad_records_name_the_archive_member(tiny, tmp_path, monkeypatch):
    root, written = tiny
    x, y = written["cifar10"]["test"]
    path = root / "cifar10" / "cifar-10-binary.tar.gz"
    good = {f"cifar-10-batches-bin/data_batch_{i}.bin": tiny_colour.cifar_records(x[:4], y[:4])
            for i in range(1, 6)}
    member = "cifar-10-batches-bin/test_batch.bin"
    cases = [
        (tiny_colour.cifar_records(x, y)[:-5], "not a whole number of 3073-byte records"),
        (tiny_colour.cifar_records(x[:2], y[:2]), "holds 2 records; the official file holds 6"),
        (tiny_colour.cifar_records(x, np.full(len(x), 10)), r"labels must be in 0..9. Got \[10\]"),
    ]
    for raw, message in cases:
        write_tar(path, {**good, member: raw})
        with pytest.raises(DataError, match=message) as info:
            load_dataset("cifar10", "test", root, verify=False)
        assert str(path) in str(info.value)
    write_tar(path, good)  # the test member is missing
    with pytest.raises(DataError, match="has no member 'cifar-10-batches-bin/test_batch.bin'"):
        load_dataset("cifar10", "test", root, verify=False)
    fine = tiny_colour.cifar_records(x[:5], np.zeros(5), np.full(5, 100))
    write_tar(root / "cifar100" / "cifar-100-binary.tar.gz", {
        "cifar-100-binary/train.bin": fine, "cifar-100-binary/test.bin": fine})
    with pytest.raises(DataError, match=r"labels must be in 0..99. Got \[100\]"):
        load_dataset("cifar100", "test", root, verify=False)
    assert len(load_dataset("cifar100:labels=coarse", "test", root, verify=False)) == 5


def test_bad_svhn_files_are_refused_with_the_file_named(tiny, tmp_path):
    from scipy.io import savemat

    root, _ = tiny
    path = root / "svhn" / "test_32x32.mat"
    images = np.zeros((3, 3, 32, 32), dtype=np.uint8)
    cases = [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated or not"),
        (lambda p: p.write_bytes(b"\x00" * 300), "truncated or not a valid MATLAB"),
        (lambda p: savemat(p, {"X": np.zeros((32, 32, 3, 3), np.uint8),
                               "y": np.array([[1], [11], [2]], np.uint8)}),
         r"labels must be the integers 1..10 \(10 = digit 0\). Got \[11\]"),
        (lambda p: savemat(p, {"X": np.zeros((32, 32, 3, 3), np.uint8),
                               "y": np.array([[1], [0], [2]], np.uint8)}), r"Got \[0\]"),
        (lambda p: savemat(p, {"X": np.zeros((3, 32, 32, 3), np.uint8),
                               "y": np.ones((3, 1), np.uint8)}), r"shape \(32, 32, 3, N\)"),
        (lambda p: savemat(p, {"X": np.zeros((32, 32, 3, 3), np.uint8),
                               "y": np.ones((2, 1), np.uint8)}), r"'y' must have shape \(3, 1\)"),
        (lambda p: savemat(p, {"images": np.zeros(3)}), "has no 'X' and 'y'"),
        (lambda p: write_svhn(p, images, np.array([1, 2, 3])),
         "holds 3 records; the official file holds 7"),
    ]
    for damage, message in cases:
        write_svhn(path, images, np.array([1, 2, 3]))
        damage(path)
        with pytest.raises(DataError, match=message) as info:
            load_dataset("svhn", "test", root, verify=False)
        assert str(path) in str(info.value)


def test_too_few_training_images_for_the_val_split(tiny, monkeypatch):
    root, _ = tiny
    spec = colour_module.COLOUR_SETS["svhn"]
    monkeypatch.setitem(colour_module.COLOUR_SETS, "svhn", {**spec, "n_val": 10})
    with pytest.raises(DataError, match="holds 10 images, too few to hold out 10"):
        load_dataset("svhn", "val", root)
    assert len(load_dataset("svhn", "train-full", root)) == 10


# --------------------------------------------------------------------------- files, download
def test_missing_files_say_where_and_how_and_download_nothing(tmp_path, no_internet):
    for name, filename in (("cifar10", "cifar-10-binary.tar.gz"),
                           ("cifar100", "cifar-100-binary.tar.gz"), ("svhn", "test_32x32.mat")):
        with pytest.raises(DataError) as info:
            load_dataset(name, "test", tmp_path)
        message = str(info.value)
        assert filename in message and str(tmp_path / name) in message
        assert "$DUNNO_DATA" in message and f"--download {name}" in message
    assert no_internet == []
    status = {r["name"]: (r["status"], r["detail"]) for r in dataset_status(tmp_path)}
    assert status["svhn"] == ("missing", f"2 of 2 file(s) missing in {tmp_path / 'svhn'}")


def test_the_official_pages_are_the_default_mirrors(monkeypatch):
    sets = colour_module.COLOUR_SETS
    assert sets["cifar10"]["mirrors"] == sets["cifar100"]["mirrors"] == [
        "https://www.cs.toronto.edu/~kriz/"]
    assert sets["svhn"]["mirrors"] == ["http://ufldl.stanford.edu/housenumbers/"]
    monkeypatch.setenv("DUNNO_SVHN_MIRRORS", "http://a/,http://b/")
    assert colour_module._mirrors("svhn", None) == ["http://a/", "http://b/"]
    assert colour_module._mirrors("svhn", ["http://c/"]) == ["http://c/"]


@pytest.fixture
def served(tmp_path):
    """A throw-away HTTP server on 127.0.0.1 serving tmp_path/served."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_download_from_a_mirror_verifies_and_falls_through(tiny, served, tmp_path, monkeypatch,
                                                           capsys, no_internet):
    import shutil

    from dunno.cli import main

    root, written = tiny
    folder, url = served
    shutil.copytree(root / "svhn", folder / "good")
    (folder / "bad").mkdir()
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (folder / "bad" / name).write_bytes(b"a different file")
    fresh = tmp_path / "fresh"
    ds = load_dataset("svhn", "test", fresh, download=True,
                      mirrors=[f"{url}/missing/", f"{url}/bad/", f"{url}/good/"])
    assert ds.y.tolist() == written["svhn"]["test"][1].tolist()
    assert not list((fresh / "svhn").glob("*.part"))
    # `dunno datasets --download` with the mirror from the environment
    shutil.copytree(root / "cifar10", folder / "c10")
    monkeypatch.setenv("DUNNO_CIFAR10_MIRRORS", f"{url}/c10/")
    assert main(["datasets", "--data-dir", str(fresh), "--download", "cifar10"]) == 0
    printed = capsys.readouterr().out
    assert "cifar10: files in" in printed
    status = {r["name"]: r["status"] for r in dataset_status(fresh)}
    assert status["cifar10"] == status["svhn"] == "verified"
    assert all(u.startswith(url) for u in no_internet) and len(no_internet) >= 4
    with pytest.raises(DataError, match="Could not download"):
        load_dataset("cifar100", "test", tmp_path / "other", download=True,
                     mirrors=[f"{url}/missing/"])


# --------------------------------------------------------------------------- real files
@pytest.mark.data
@pytest.mark.parametrize("name,sizes", [("cifar10", (45000, 5000, 10000)),
                                        ("cifar100", (45000, 5000, 10000)),
                                        ("svhn", (68257, 5000, 26032))])
def test_real_files_when_present(data_dir, name, sizes):
    folder = data_dir / colour_module.COLOUR_SETS[name]["folder"]
    if not all((folder / f).is_file() for f in colour_module.COLOUR_SETS[name]["files"]):
        pytest.skip(f"the {name} files are not under $DUNNO_DATA")
    got = tuple(len(load_dataset(name, s, data_dir)) for s in ("train", "val", "test"))
    assert got == sizes


# --------------------------------------------------------------------------- image helpers
def test_channel_stats_by_hand_and_against_numpy():
    from dunno.data import channel_stats

    x = torch.zeros(2, 2, 1, 2)
    x[0, 0] = torch.tensor([[0.0, 1.0]])
    x[1, 0] = torch.tensor([[0.0, 1.0]])  # channel 0: 0, 1, 0, 1 -> mean 1/2, std 1/2
    x[:, 1] = 0.25  # channel 1: constant -> std 0
    assert channel_stats(x) == ([0.5, 0.25], [0.5, 0.0])
    rng = np.random.default_rng(0)
    big = rng.random((2500, 3, 4, 5)).astype(np.float32)  # more than one 1024-image chunk
    mean, std = channel_stats(torch.from_numpy(big))
    np.testing.assert_allclose(mean, big.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, big.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-10)
    with pytest.raises(ValueError, match="holds no images"):
        channel_stats(torch.zeros(0, 3, 2, 2))
    with pytest.raises(ValueError, match=r"must be images of shape \(N, C, H, W\)"):
        channel_stats(torch.zeros(3, 2, 2))


def test_resize_images_bilinear_half_pixel_and_grey_to_rgb():
    from dunno.data import resize_images

    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # (1, 1, 2, 2)
    out = resize_images(x, 4)
    # output column j samples input position (j + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
    # clamped to the edge pixels: values 0, 0.25, 0.75, 1 in every row
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.25, 0.75, 1.0]] * 4))
    rgb = resize_images(torch.rand(3, 1, 28, 28), 32, channels=3)
    assert rgb.shape == (3, 3, 32, 32)
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])
    assert 0.0 <= float(rgb.min()) and float(rgb.max()) <= 1.0
    same = torch.rand(2, 3, 32, 32)
    assert torch.equal(resize_images(same, 32, channels=3), same)
    with pytest.raises(ValueError, match="repeats a single grey channel"):
        resize_images(same, 16, channels=1)
    with pytest.raises(ValueError, match="'size' argument of resize_images"):
        resize_images(same, 0)
