"""dunno.data user data: split folders, the seeded stratified split rule, disjoint splits,
hidden entries, label checks and what is recorded (real PNG and .npz files in tmp_path)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

from dunno.data import describe_split, is_user_data, load_dataset
from dunno.errors import DataError

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- helpers
def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _image(rng, size=(6, 7)):
    return rng.integers(0, 256, size, dtype=np.uint8)


def _class_folder(root, counts, rng, size=(6, 7)):
    """``counts``: class name -> number of distinct images."""
    for cls, n in counts.items():
        for i in range(n):
            _png(root / cls / f"{i}.png", _image(rng, size))


def _hashes(ds):
    rows = ds.x.reshape(len(ds), -1).numpy()
    return [hashlib.sha256(r.tobytes()).hexdigest() for r in rows]


def _check_disjoint(spec):
    """Every split of ``spec``: disjoint by content hash and by index into ``all``, covering
    ``all``; labels follow their examples. Returns the splits."""
    splits = {s: load_dataset(spec, s) for s in SPLITS}
    everything = load_dataset(spec, "all")
    position = {h: i for i, h in enumerate(_hashes(everything))}
    assert len(position) == len(everything)  # the fixtures hold distinct examples
    index = {s: {position[h] for h in _hashes(ds)} for s, ds in splits.items()}
    for a in SPLITS:
        assert len(index[a]) == len(splits[a]) > 0
        for b in SPLITS:
            if a < b:
                assert not index[a] & index[b], (a, b)
                assert not set(_hashes(splits[a])) & set(_hashes(splits[b])), (a, b)
    assert set().union(*index.values()) == set(range(len(everything)))
    if everything.has_labels:
        for s, ds in splits.items():
            expected = [int(everything.y[position[h]]) for h in _hashes(ds)]
            assert ds.y.tolist() == expected, s
    full = load_dataset(spec, "train-full")
    assert set(_hashes(full)) == set(_hashes(splits["train"])) | set(_hashes(splits["val"]))
    return splits


# --------------------------------------------------------------------------- every form
def _form(kind, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    if kind == "split-folders":
        _class_folder(root / "train", {"cat": 8, "dog": 8}, rng)
        _class_folder(root / "val", {"cat": 2, "dog": 2}, rng)
        _class_folder(root / "test", {"cat": 3, "dog": 3}, rng)
    elif kind == "train-test-folders":
        _class_folder(root / "train", {"cat": 10, "dog": 10}, rng)
        _class_folder(root / "test", {"cat": 3, "dog": 3}, rng)
    elif kind == "train-folder-only":
        _class_folder(root / "train", {"cat": 10, "dog": 10}, rng)
    elif kind == "class-folder":
        _class_folder(root, {"cat": 10, "dog": 10, "owl": 7}, rng)
    elif kind == "unlabelled-folder":
        for i in range(12):
            _png(root / f"{i}.png", _image(rng))
    elif kind == "npz":
        root = tmp_path / "d.npz"
        np.savez(root, x=rng.integers(0, 256, (40, 5, 5), dtype=np.uint8), y=np.arange(40) % 4)
    elif kind == "npz-unlabelled":
        root = tmp_path / "d.npz"
        np.savez(root, x=rng.normal(size=(30, 6)).astype(np.float32))
    elif kind == "npz-splits":
        root = tmp_path / "d.npz"
        np.savez(root, **{f"x_{s}": rng.random((n, 1, 4, 4)) for s, n in
                          (("train", 20), ("val", 5), ("test", 6))},
                 **{f"y_{s}": np.arange(n) % 2 for s, n in (("train", 20), ("val", 5),
                                                           ("test", 6))})
    elif kind == "npz-train-test":
        root = tmp_path / "d.npz"
        np.savez(root, x_train=rng.random((30, 3)), y_train=np.arange(30) % 3,
                 x_test=rng.random((9, 3)), y_test=np.arange(9) % 3)
    else:  # npy
        root = tmp_path / "d.npy"
        np.save(root, rng.random((25, 2, 3, 3)).astype(np.float32))
    return str(root)


FORMS = ("split-folders", "train-test-folders", "train-folder-only", "class-folder",
         "unlabelled-folder", "npz", "npz-unlabelled", "npz-splits", "npz-train-test", "npy")


@pytest.mark.parametrize("kind", FORMS)
def test_no_split_shares_an_example(kind, tmp_path):
    spec = _form(kind, tmp_path)
    splits = _check_disjoint(spec)
    sizes = splits["train"].info.extras["split_sizes"]
    assert sizes == {s: len(ds) for s, ds in splits.items()}
    assert all(ds.info.extras["split_sizes"] == sizes for ds in splits.values())


@pytest.mark.parametrize("kind", ["class-folder", "npz", "npz-unlabelled", "train-test-folders"])
def test_same_seed_same_split_other_seed_other_split(kind, tmp_path):
    spec = _form(kind, tmp_path)
    first = _hashes(load_dataset(spec, "val"))  # val is carved in each of these forms
    assert _hashes(load_dataset(spec, "val")) == first
    assert _hashes(load_dataset(spec + ":split_seed=0", "val")) == first
    assert _hashes(load_dataset(spec, "val", split_seed=0)) == first
    other = _hashes(load_dataset(spec + ":split_seed=1", "val"))
    assert set(other) != set(first)
    _check_disjoint(spec + ":split_seed=1")


def test_default_fractions_and_stratification(tmp_path):
    spec = _form("npz", tmp_path)  # 40 examples, 4 classes of 10
    sizes = {s: len(load_dataset(spec, s)) for s in SPLITS}
    # per class: round(0.15 * 10) = 2 (half up) to val and to test, 6 stay in train
    assert sizes == {"train": 24, "val": 8, "test": 8}
    for s in SPLITS:
        assert torch.bincount(load_dataset(spec, s).y).tolist() == [sizes[s] // 4] * 4
    custom = {s: len(load_dataset(spec + ":val=0.3:test=0.1", s)) for s in SPLITS}
    assert custom == {"train": 24, "val": 12, "test": 4}
    same = {s: len(load_dataset(spec, s, val=0.3, test=0.1)) for s in SPLITS}
    assert same == custom
    info = load_dataset(spec, "train").info
    assert info.extras["split_fractions"] == {"val": 0.15, "test": 0.15}
    assert info.extras["split_seed"] == 0
    assert "stratified" in info.extras["split_rule"] and "40 examples" in info.extras["split_rule"]


def test_unlabelled_split_sizes_and_unlabelled_items(tmp_path):
    spec = _form("npz-unlabelled", tmp_path)  # 30 examples
    assert {s: len(load_dataset(spec, s)) for s in SPLITS} == {"train": 20, "val": 5, "test": 5}
    ds = load_dataset(spec, "val")
    assert not ds.has_labels and ds.info.num_classes is None
    assert "random (unlabelled)" in ds.info.extras["split_rule"]


def test_missing_val_is_carved_from_train_folder(tmp_path):
    spec = _form("train-test-folders", tmp_path)  # train/ 10+10, test/ 3+3
    train, val, test = (load_dataset(spec, s) for s in SPLITS)
    assert (len(train), len(val), len(test)) == (16, 4, 6)
    assert train.info.extras["classes"] == ["cat", "dog"] and train.info.num_classes == 2
    assert torch.bincount(test.y).tolist() == [3, 3]  # test/ as given, classes by name
    assert "given train/test" in train.info.extras["split_rule"]
    assert "val carved from train" in train.info.extras["split_rule"]


def test_split_folders_map_classes_by_name(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "pets"
    _class_folder(root / "train", {"cat": 6, "dog": 6, "owl": 6}, rng)
    _class_folder(root / "val", {"owl": 2}, rng)  # only one class, which is label 2
    _class_folder(root / "test", {"dog": 1, "owl": 1}, rng)
    val, test = load_dataset(str(root), "val"), load_dataset(str(root), "test")
    assert val.y.tolist() == [2, 2] and test.y.tolist() == [1, 2]
    assert val.info.num_classes == 3 and val.info.extras["classes"] == ["cat", "dog", "owl"]
    _class_folder(root / "test", {"bird": 1}, rng)
    with pytest.raises(DataError, match=r"class folder\(s\) \['bird'\].*'train/'"):
        load_dataset(str(root), "test")


def test_train_and_test_folders_are_not_classes(tmp_path):
    root = _form("train-test-folders", tmp_path)
    for s in ("train", "val", "test", "all"):
        ds = load_dataset(root, s)
        assert ds.info.extras["classes"] == ["cat", "dog"]
        assert set(ds.y.tolist()) == {0, 1}


def test_bad_split_folder_layouts(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "a"
    _class_folder(root / "val", {"cat": 2}, rng)
    _class_folder(root / "test", {"cat": 2}, rng)
    with pytest.raises(DataError, match=r"split folder\(s\) \['test', 'val'\] but no 'train/'"):
        load_dataset(str(root), "test")
    _class_folder(root / "train", {"cat": 6}, rng)
    _class_folder(root / "extra", {"cat": 1}, rng)
    with pytest.raises(DataError, match=r"and also \['extra'\]"):
        load_dataset(str(root), "train")
    b = tmp_path / "b"
    _class_folder(b / "train", {"cat": 6}, rng)
    _png(b / "train" / "loose.png", _image(rng))
    with pytest.raises(DataError, match="images directly inside it.*loose.png"):
        load_dataset(str(b), "train")
    c = tmp_path / "c"
    _class_folder(c / "train", {"cat": 6, "dog": 6}, rng)
    (c / "val").mkdir()
    with pytest.raises(DataError, match=r"No images found in '.*val'"):
        load_dataset(str(c), "val")
    d = tmp_path / "d"
    for i in range(6):
        _png(d / "train" / f"{i}.png", _image(rng))
    _class_folder(d / "test", {"cat": 1}, rng)
    with pytest.raises(DataError, match=r"sub-folders \['cat'\].*unlabelled"):
        load_dataset(str(d), "test")


def test_bad_class_folders(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "pets"
    _class_folder(root, {"cat": 4, "dog": 4}, rng)
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"Class folder '.*empty' has no images"):
        load_dataset(str(root), "train")
    (root / "empty").rmdir()
    _png(root / "stray.png", _image(rng))
    with pytest.raises(DataError, match=r"images directly inside it.*stray.png"):
        load_dataset(str(root), "train")


def test_hidden_and_system_entries_are_ignored(tmp_path):
    rng = np.random.default_rng(4)
    for root in (tmp_path / "flat", tmp_path / "split" / "train"):
        _class_folder(root, {"cat": 5, "dog": 5}, rng)
        copy = root / "cat" / "0.png"
        for hidden in (".ipynb_checkpoints", "__MACOSX", ".hidden"):
            _png(root / hidden / "x.png", _image(rng))  # would be a class and shift labels
            (root / "dog" / hidden).mkdir()
            (root / "dog" / hidden / "0-checkpoint.png").write_bytes(copy.read_bytes())
        for junk in (".DS_Store", "Thumbs.db", "desktop.ini", "._0.png"):
            (root / junk).write_bytes(b"\x00junk")
            (root / "cat" / junk).write_bytes(b"\x00junk")
        (root / "cat" / "notes.txt").write_text("not an image")
    for spec in (tmp_path / "flat", tmp_path / "split"):
        ds = load_dataset(str(spec), "all")
        assert ds.info.extras["classes"] == ["cat", "dog"]
        assert torch.bincount(ds.y).tolist() == [5, 5]
        _check_disjoint(str(spec))


def test_class_names_follow_the_classes_option(tmp_path):
    rng = np.random.default_rng(5)
    _class_folder(tmp_path / "f", {"ant": 4, "bee": 4, "cat": 4}, rng)
    ds = load_dataset(str(tmp_path / "f") + ":classes=1+2", "all")
    assert ds.info.extras["classes"] == ["bee", "cat"] and ds.y.tolist() == [0] * 4 + [1] * 4


def test_npz_class_names_and_partial_splits(tmp_path):
    rng = np.random.default_rng(6)
    path = tmp_path / "named.npz"
    np.savez(path, x_val=rng.random((6, 3)), y_val=np.arange(6) % 2,
             x_test=rng.random((4, 3)), y_test=np.arange(4) % 2, classes=np.array(["no", "yes"]))
    val = load_dataset(str(path), "val")
    assert val.info.extras["classes"] == ["no", "yes"] and val.info.num_classes == 2
    assert val.info.extras["split_sizes"] == {"val": 6, "test": 4}
    with pytest.raises(DataError, match=r"'.*named.npz' has no 'train' split"):
        load_dataset(str(path), "train")
    with pytest.raises(DataError, match=r"'test=0.2' carves a test split .* has its own"):
        load_dataset(str(path) + ":test=0.2", "val")
    np.savez(tmp_path / "test_only.npz", x_test=rng.random((4, 3)))
    with pytest.raises(DataError, match=r"'val=0.2' carves a val split from the training pool, "
                                        r"but '.*test_only.npz' has none"):
        load_dataset(str(tmp_path / "test_only.npz") + ":val=0.2", "test")
    np.savez(path, x=rng.random((6, 3)), y=np.arange(6) % 3, classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"'y' in '.*named.npz' has label y\[2\] = 2.*'classes' "
                                        r"names 2 classes"):
        load_dataset(str(path), "all")


def test_duplicates_stay_in_one_split(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.random((20, 4)).astype(np.float32)
    x = np.concatenate([x, x[:10]])  # 10 examples twice
    np.savez(tmp_path / "dup.npz", x=x, y=np.concatenate([np.arange(20) % 2, np.arange(10) % 2]))
    spec = str(tmp_path / "dup.npz")
    splits = {s: set(_hashes(load_dataset(spec, s))) for s in SPLITS}
    assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"]
                or splits["val"] & splits["test"])
    assert sum(len(load_dataset(spec, s)) for s in SPLITS) == 30


def test_given_splits_sharing_an_example_are_refused(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.random((10, 3))
    np.savez(tmp_path / "leak.npz", x_train=x, x_test=np.concatenate([rng.random((3, 3)), x[4:5]]))
    with pytest.raises(DataError, match=r"share examples: x_test\[3\] of '.*leak.npz' is "
                                        r"identical to x_train\[4\]"):
        load_dataset(str(tmp_path / "leak.npz"), "test")
    root = tmp_path / "imgs"
    _class_folder(root / "train", {"cat": 6}, rng)
    (root / "test" / "cat").mkdir(parents=True)
    same = (root / "train" / "cat" / "2.png").read_bytes()
    (root / "test" / "cat" / "same.png").write_bytes(same)
    with pytest.raises(DataError, match=r"'.*test/cat/same.png' is identical to "
                                        r"'.*train/cat/2.png'"):
        load_dataset(str(root), "train")


def test_class_too_small_to_split(tmp_path):
    rng = np.random.default_rng(9)
    _class_folder(tmp_path / "f", {"big": 10, "tiny": 2}, rng)
    with pytest.raises(DataError, match=r"Class 'tiny' of '.*f' has 2 distinct example\(s\).*"
                                        r"needs at least 3"):
        load_dataset(str(tmp_path / "f"), "train")
    ok = load_dataset(str(tmp_path / "f") + ":val=0", "train")  # train + test only
    assert len(ok) == 8 + 1
    np.save(tmp_path / "two.npy", rng.random((2, 3)))
    with pytest.raises(DataError, match=r"The data of '.*two.npy' has 2 distinct"):
        load_dataset(str(tmp_path / "two.npy"), "train")


def test_empty_split_after_splitting_is_refused(tmp_path):
    spec = _form("npz", tmp_path)
    assert len(load_dataset(spec + ":test=0", "train")) == 32
    assert len(load_dataset(spec + ":test=0", "train-full")) == 40
    with pytest.raises(DataError, match=r"The 'test' split of '.*d.npz' is empty.*test=0"):
        load_dataset(spec + ":test=0", "test")


@pytest.mark.parametrize("option, value, message", [
    ("val", "1.5", r"The 'val' parameter of user data '.*d.npz' must be a float in \[0, 1\)\. "
                   r"Got 1.5 instead"),
    ("test", "-0.1", r"The 'test' parameter of user data '.*d.npz' must be a float in "
                     r"\[0, 1\)\. Got -0.1 instead"),
    ("val", "abc", r"option 'val' needs a number. Got 'abc'"),
    ("split_seed", "x", r"option 'split_seed' needs an integer. Got 'x'"),
    ("nope", "1", r"Unknown option\(s\) \['nope'\] for user data"),
])
def test_bad_split_options(tmp_path, option, value, message):
    spec = _form("npz", tmp_path)
    with pytest.raises(DataError, match=message):
        load_dataset(f"{spec}:{option}={value}", "train")


def test_split_options_that_cannot_apply(tmp_path):
    spec = _form("npz", tmp_path)
    with pytest.raises(DataError, match=r"nothing for train: val=0.6 \+ test=0.5 = 1.1"):
        load_dataset(spec + ":val=0.6:test=0.5", "train")
    given = _form("npz-splits", tmp_path)
    with pytest.raises(DataError, match=r"'val=0.2' carves a val split .* has its own"):
        load_dataset(given + ":val=0.2", "train")
    with pytest.raises(DataError, match=r"'split_seed=3' has no effect on '.*d.npz'"):
        load_dataset(given + ":split_seed=3", "train")
    with pytest.raises(DataError, match=r"'split' argument must be one of .* Got 'valid'"):
        load_dataset(given, "valid")


# --------------------------------------------------------------------------- bad arrays
@pytest.mark.parametrize("y, message", [
    (np.array([0, 1, 2, 1_000_000_000]),
     r"'y' in '.*bad.npz' has label y\[3\] = 1000000000, but labels must be 0..K-1 with K at "
     r"most max\(1000, number of examples = 4\)"),
    (np.array([0, 1, -1, 1]), r"'y' in '.*bad.npz' must hold labels >= 0; y\[2\] = -1"),
    (np.array([0.0, 1.0, 0.5, 1.0]), r"'y' in '.*bad.npz' must hold integer class labels; "
                                     r"y\[2\] = 0.5 is not an integer"),
    (np.array([0.0, np.nan, 1.0, 1.0]), r"y\[1\] = nan is not an integer"),
    (np.array(["a", "b", "a", "b"]), r"'y' in '.*bad.npz' must hold integer class labels.*"
                                     r"dtype <U1"),
    (np.eye(4, dtype=np.int64), r"'y' in '.*bad.npz' must be 1-D class labels.*shape \(4, 4\)"),
    (np.array([0, 1, 1]), r"'y' in '.*bad.npz' has 3 labels but its inputs have 4 rows"),
    (np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64), r"too large for int64: y\[3\] = "
                                                      r"18446744073709551615"),
])
def test_bad_labels_are_refused_naming_file_array_and_value(tmp_path, y, message):
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3)), y=y)
    with pytest.raises(DataError, match=message):
        load_dataset(str(tmp_path / "bad.npz"), "train")


def test_a_huge_label_in_a_split_array_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((5, 2)), y_train=np.arange(5),
             x_test=np.ones((2, 2)), y_test=np.array([0, 10**9]))
    with pytest.raises(DataError, match=r"'y_test' in '.*bad.npz' has label y_test\[1\] = "
                                        r"1000000000"):
        load_dataset(str(tmp_path / "bad.npz"), "train")


def test_float_labels_that_are_integers_are_accepted(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.arange(12.0).reshape(6, 2), y=np.array([0.0, 1.0] * 3))
    ds = load_dataset(str(tmp_path / "f.npz"), "all")
    assert ds.y.dtype == torch.int64 and ds.y.tolist() == [0, 1] * 3 and ds.info.num_classes == 2


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((3, 2)), "x_train": np.zeros((3, 2))}, r"has both 'x' and \['x_train'\]"),
    ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(3), "x_test": np.ones((2, 2))},
     r"labels for \['x_train'\] but not for \['x_test'\]"),
    ({"x": np.zeros((3, 2)), "y_test": np.zeros(3)}, r"labels \['y_test'\] without the matching"),
    ({"x": np.zeros((3, 2)), "meta": np.zeros(1)}, r"array\(s\) \['meta'\] this format does not"),
    ({"images": np.zeros((3, 2))}, r"has arrays \['images'\], but an array named 'x'"),
    ({"x": np.zeros(5)}, r"'x' in '.*bad.npz' must have one row per example.*shape \(5,\)"),
    ({"x": np.zeros((0, 3))}, r"'x' in '.*bad.npz' is empty"),
    ({"x": np.array([[0.0, np.inf]])}, r"'x' in '.*bad.npz' contains NaN or inf .*\(0, 1\)"),
    ({"x_train": np.zeros((3, 2)), "x_test": np.zeros((3, 4))},
     r"'x_test' has examples of shape \(4,\) but 'x_train' has \(2,\)"),
    ({"x": np.zeros((2, 2)), "y": np.zeros(2), "classes": np.array([1, 2])},
     r"'classes' in '.*bad.npz' must be a 1-D array of distinct class names"),
])
def test_bad_npz_layouts(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(str(tmp_path / "bad.npz"), "all")


def test_bad_paths(tmp_path):
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"'.*data.csv' must be a folder of images, an .npz or "
                                        r"an .npy file; got a .csv file"):
        load_dataset(str(tmp_path / "data.csv"), "train")
    with pytest.raises(DataError, match=r"'.*nothing.npz' does not exist"):
        load_dataset(str(tmp_path / "nothing.npz"), "train")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"Cannot read '.*broken.npz' as NumPy data"):
        load_dataset(str(tmp_path / "broken.npz"), "train")


# --------------------------------------------------------------------------- what is recorded
def test_describe_split_and_is_user_data(tmp_path):
    spec = _form("npz", tmp_path)
    assert is_user_data(spec) and is_user_data(spec + ":val=0.1")
    assert not is_user_data("digits") and not is_user_data("mnist:rotate=90")
    assert describe_split("digits") is None
    line = describe_split(spec + ":val=0.3:test=0.1")
    assert line.startswith(spec + ":val=0.3:test=0.1: train 24, val 12, test 4 (seeded")
    assert "split_seed=0" in line


def test_n_option_and_ood_use_of_a_whole_file(tmp_path):
    spec = _form("npz", tmp_path)
    assert len(load_dataset(spec + ":n=5", "train")) == 5
    assert set(_hashes(load_dataset(spec + ":n=5", "train"))) <= set(
        _hashes(load_dataset(spec, "train")))
    assert len(load_dataset(spec, "all")) == 40
    assert load_dataset(spec, "all").info.extras["split_sizes"] == {"all": 40}


def test_train_classifier_records_class_names_and_split_sizes(tmp_path):
    from dunno.checkpoints import load_checkpoint
    from dunno.classify import train_classifier

    rng = np.random.default_rng(10)
    _class_folder(tmp_path / "pets", {"cat": 10, "dog": 10}, rng, size=(8, 8))
    result = train_classifier(data=str(tmp_path / "pets"), epochs=1, batch_size=8,
                              out=tmp_path / "run")
    meta = load_checkpoint(result.checkpoint).meta
    assert meta["class_names"] == ["cat", "dog"]
    assert meta["split_sizes"] == {"train": 12, "val": 4, "test": 4}
    assert "stratified" in meta["split_rule"]


def test_unlabelled_data_is_refused_where_labels_are_needed(tmp_path):
    from dunno.classify import train_classifier
    from uncertainty.calibration import run_calibration

    spec = str(tmp_path / "u.npy")
    np.save(spec, np.random.default_rng(11).random((20, 1, 8, 8)).astype(np.float32))
    with pytest.raises(ValueError, match=re.escape(f"'{spec}' is not a labelled image dataset")):
        train_classifier(data=spec, epochs=1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    with pytest.raises(ValueError, match=re.escape(f"'{spec}' is not a labelled")):
        run_calibration(model, spec, "temperature")


def test_cli_prints_split_sizes_and_splits_differ(tmp_path, capsys):
    import json

    from dunno.cli import main

    rng = np.random.default_rng(12)
    spec = str(tmp_path / "mine.npz")
    np.savez(spec, x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y=np.arange(40) % 2)
    out = tmp_path / "run"
    assert main(["train", "classifier", "--data", spec, "--epochs", "1", "--batch-size", "8",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"data {spec}: train 28, val 6, test 6 (seeded stratified split" in printed
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert {"train_acc", "val_acc", "test_acc"} <= set(metrics)
    assert main(["calibrate", "--checkpoint", str(out / "model.pt"), "--data", spec,
                 "--out", str(tmp_path / "cal"), "--device", "cpu"]) == 0
    assert f"data {spec}: train 28, val 6, test 6" in capsys.readouterr().out
    assert main(["ood", "--checkpoint", str(out / "model.pt"), "--in", spec, "--out",
                 "gaussian-noise", "--detectors", "msp", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"in-distribution data {spec}: train 28, val 6, test 6" in printed

    # the same file split another way would calibrate / score on training examples: refused
    for command in (["calibrate", "--checkpoint", str(out / "model.pt"), "--data",
                     spec + ":val=0.3", "--out", str(tmp_path / "cal2"), "--device", "cpu"],
                    ["ood", "--checkpoint", str(out / "model.pt"), "--in", spec + ":split_seed=1",
                     "--out", "gaussian-noise", "--detectors", "msp", "--device", "cpu"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"splits '{spec}' differently from the run that trained the model" in err
        assert f"Pass '{spec}'." in err


def test_check_same_split_passes_the_same_rule_and_other_files(tmp_path):
    from dunno.data import check_same_split, describe_split

    rng = np.random.default_rng(13)
    spec, other = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    for path in (spec, other):
        np.savez(path, x=rng.random((30, 8, 8)).astype(np.float32), y=np.arange(30) % 3)
    rule = describe_split(spec).split(" (", 1)[1][:-1]
    check_same_split(spec, spec, rule)  # the very same split
    check_same_split(other, spec, rule)  # another file: its own splits
    check_same_split("digits", spec, rule)  # registered data: fixed splits
    check_same_split(spec + ":val=0.2", spec, None)  # nothing recorded: nothing to compare
    with pytest.raises(DataError, match=r"--data '.*a\.npz:val=0\.2' splits '.*a\.npz' "
                                        r"differently .* now: .*val=0\.2"):
        check_same_split(spec + ":val=0.2", spec, rule)


# --------------------------------------------------------------------------- resource bombs
@pytest.mark.parametrize("spec, message", [
    ("gaussian-noise:n=1000000000000:shape=1x28x28",
     r"option 'n=1000000000000' of 'gaussian-noise' asks for 1000000000000 examples of shape "
     r"\(1, 28, 28\)"),
    ("uniform-noise:shape=1x100000x100000", r"'n=10000' of 'uniform-noise' asks for 10000 "
                                            r"examples of shape \(1, 100000, 100000\)"),
    ("gaussian-noise:shape=0x5", r"option 'shape' must look like 1x28x28 .* Got '0x5'"),
    ("gaussian-noise:shape=1x-5x5", r"option 'shape' must look like .* Got '1x-5x5'"),
    ("two-moons:n=10000000000", r"option 'n=10000000000' of 'two-moons' asks for 10000000000"),
    ("digits:classes=0-1000000000", r"'classes' names \[1000000000\], outside 0..9 of 'digits'"),
    ("digits:blur=1e9", r"option 'blur' must be in \(0, 8\] pixels .* Got '1e9'"),
    ("digits:blur=0", r"option 'blur' must be in \(0, 8\] pixels .* Got '0'"),
    ("digits:noise=-1", r"option 'noise' \(a standard deviation\) must be >= 0. Got '-1'"),
    ("digits:seed=100000000000000000000000:n=5", r"option 'seed' must be <= 9223372036854775807. "
                                                 r"Got 100000000000000000000000"),
])
def test_options_that_would_allocate_unbounded_memory_are_refused(spec, message):
    with pytest.raises(DataError, match=message):
        load_dataset(spec, "test")


def test_a_huge_split_seed_is_refused(tmp_path):
    spec = _form("npz", tmp_path)
    with pytest.raises(DataError, match=r"option 'split_seed' must be <= 9223372036854775807. "
                                        r"Got 100000000000000000000000"):
        load_dataset(spec + ":split_seed=100000000000000000000000", "train")


def test_an_npz_declaring_more_than_memory_is_refused_before_loading(tmp_path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 10**6)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:  # a header and no data
        archive.writestr("x.npy", header.getvalue())
    with pytest.raises(DataError, match=r"'x' in '.*bomb.npz' declares shape \(1000000000, "
                                        r"1000000\): .* GiB as float32, more than this machine"):
        load_dataset(str(tmp_path / "bomb.npz"), "train")


# --------------------------------------------------------------------------- pixel formats
def test_sixteen_bit_png_keeps_its_levels(tmp_path):
    """A 16-bit greyscale PNG is scaled by 1/65535, not clipped to 8 bits (which made every
    value >= 255 white)."""
    from PIL import Image

    root = tmp_path / "scans"
    root.mkdir()
    levels = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)  # 0 .. 60000
    for k in range(4):
        Image.fromarray(levels + k).save(root / f"{k}.png")
    x = load_dataset(str(root), "all").x.numpy()  # (4, 1, 4, 4)
    assert x.shape == (4, 1, 4, 4)
    expected = np.stack([(levels + k) / 65535.0 for k in range(4)])[:, None]
    np.testing.assert_allclose(np.sort(x, axis=0), np.sort(expected, axis=0), atol=1e-7)


def test_float_tiff_is_used_as_stored_and_checked(tmp_path):
    from PIL import Image

    root = tmp_path / "f"
    root.mkdir()
    values = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    for k in range(3):
        Image.fromarray(values * (k + 1) / 3).save(root / f"{k}.tiff")
    x = load_dataset(str(root), "all").x.numpy()
    np.testing.assert_allclose(np.sort(x.max(axis=(1, 2, 3))), [1 / 3, 2 / 3, 1.0], atol=1e-6)
    Image.fromarray(values * 2).save(root / "bright.tiff")
    with pytest.raises(DataError, match=r"bright\.tiff.*mode 'F'.*\[0, 2\].*\[0, 1\]"):
        load_dataset(str(root), "all")


def test_int32_image_is_refused(tmp_path):
    from PIL import Image

    root = tmp_path / "i"
    root.mkdir()
    Image.fromarray(np.full((4, 4), 70000, dtype=np.int32)).save(root / "a.tiff")
    with pytest.raises(DataError, match=r"a\.tiff.*32-bit integer"):
        load_dataset(str(root), "all")


@pytest.mark.parametrize("shape", [(12, 28, 28, 3), (12, 28, 28, 1), (12, 8, 8, 4)])
def test_channels_last_array_is_refused(tmp_path, shape):
    path = tmp_path / "hwc.npz"
    np.savez(path, x=np.random.default_rng(0).random(shape, dtype=np.float32),
             y=np.arange(12) % 2)
    with pytest.raises(DataError, match=re.escape(f"{shape}") + r".*channels-last.*"
                       r"transpose\(0, 3, 1, 2\)"):
        load_dataset(str(path), "train")


def test_channels_first_arrays_are_kept(tmp_path):
    rng = np.random.default_rng(0)
    for shape in [(12, 3, 28, 28), (12, 1, 3, 3), (12, 3, 3, 3), (12, 2, 10, 1)]:
        path = tmp_path / f"chw{len(shape)}_{shape[1]}_{shape[-1]}.npz"
        x = rng.random(shape, dtype=np.float32)
        np.savez(path, x=x, y=np.arange(12) % 2)
        assert tuple(load_dataset(str(path), "all").x.shape) == shape


def test_binary_uint8_array_is_refused_bool_and_255_are_read(tmp_path):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (12, 1, 8, 8))
    np.savez(tmp_path / "u8.npz", x=bits.astype(np.uint8), y=np.arange(12) % 2)
    with pytest.raises(DataError, match=r"uint8 and holds only 0 and 1.*bool or float32"):
        load_dataset(str(tmp_path / "u8.npz"), "all")
    np.savez(tmp_path / "b.npz", x=bits.astype(bool), y=np.arange(12) % 2)
    xb = load_dataset(str(tmp_path / "b.npz"), "all").x.numpy()
    assert set(np.unique(xb)) == {0.0, 1.0}
    np.savez(tmp_path / "p.npz", x=(bits * 255).astype(np.uint8), y=np.arange(12) % 2)
    xp = load_dataset(str(tmp_path / "p.npz"), "all").x.numpy()
    assert set(np.unique(xp)) == {0.0, 1.0}
