"""The UCI regression benchmark with the fixed splits of Hernandez-Lobato & Adams (2015),
as distributed with Gal & Ghahramani (2016).

Layout under the data directory: ``uci/<dataset>/data.txt`` (whitespace-separated matrix),
``index_features.txt``, ``index_target.txt``, ``index_train_<k>.txt``,
``index_test_<k>.txt`` (0-based row indices) and ``n_splits.txt``, ``n_hidden.txt``,
``n_epochs.txt``. Inputs and targets are standardised with the mean and standard
deviation of the training rows of split ``k`` (constant columns get std 1, as in Gal's
code); :class:`~dunno.data.base.RegressionDataset` keeps the statistics so metrics can be
reported in original units.
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np
import torch

from dunno.data.base import DatasetInfo, RegressionDataset
from dunno.data.files import data_dir, sha256_of
from dunno.errors import DataError

__all__ = ["UCI_SETS", "UCI_ALIASES", "load_uci", "uci_hyperparameters", "uci_status"]

# folder -> (sha256 of data.txt, sha256 of the index files in split order, n_splits)
UCI_SETS = {
    "bostonHousing": ("baadf72995725d76efe787b664e1f083388c79ba21ef9a7990d87f774184735a", "cf02f39c05c111ae6e512a35e178a2c954e9cf67451f5aa39df8af93e039cceb", 20),
    "concrete": ("43d290fd2c2a399ad7e62c45cab5337ba94ece69ebdcf5875aa668cb886243de", "c89b15e3165edb95c70c634e23323af9fba54d4a9ff9b97e1e0c4b21714e054d", 20),
    "energy": ("7f8bf024cea437267d56be99b7af7bb3faebec8a7bccfbb20d06d52d9372a950", "56bebb870d5a741731c3cc88fbc9fe03fd4adaa4e262f59d16017794a843a78c", 20),
    "kin8nm": ("a694ce0c7a21390f2bd2a205c36f2482cd974637a207038696716e22f3bbe810", "dc5190423870261bb79cb153b85bc97dc7acf1483d82f768287040aa1f8c8c09", 20),
    "naval-propulsion-plant": ("de0ea69da1efaab8b9655ffed828547d10dd68c1fb8c6e0163e6a988def393a6", "83a6a6c353641acef31b1d05943db010fbc07ce72a4743a76de6af342134a6eb", 20),
    "power-plant": ("daebd20c408dfc5c4979604f240e891be162c3a5d00d662380aa669044a1fb31", "c2981c8d9c2119a47244faee0f2c5364ab5499223b9cc923856ca405d7bcf18d", 20),
    "protein-tertiary-structure": ("d35f332707e8a73f21e021039250a1e7b26e14f7dd826a0337ffa8e8e48b9727", "46269b1252784dabb050bd0fd39195a2b3cad2002501a2fdaba41c90a4a9b3fe", 5),
    "wine-quality-red": ("3ba41eaf4ab562088cf47b5c9dca2b4de2a330c3ee38a7920b4527a09574d5c1", "ee653447d0ba63bcbc82d3b792e1bd74c6ca4afd32a4743c7da8dc99af946b06", 20),
    "yacht": ("00dfecc0fc01ddd4c90b558a3ac11b246df8ebcfea130724223475a9a67f0ea1", "26be4938f38603109e55c72be9e6412a5fa2817371760d61a37aa194c57db036", 20),
}  # fmt: skip
UCI_ALIASES = {
    "boston": "bostonHousing",
    "naval": "naval-propulsion-plant",
    "power": "power-plant",
    "protein": "protein-tertiary-structure",
    "wine": "wine-quality-red",
}


def canonical(name: str) -> str:
    """Folder name for a UCI set name or alias (``"boston"`` -> ``"bostonHousing"``)."""
    name = UCI_ALIASES.get(name, name)
    if name not in UCI_SETS:
        known = sorted(UCI_SETS) + sorted(UCI_ALIASES)
        raise DataError(f"Unknown UCI dataset {name!r}; known: {', '.join(known)}.")
    return name


def _folder(name: str, root):
    folder = data_dir(root) / "uci" / name
    if not (folder / "data.txt").is_file():
        raise DataError(
            f"UCI dataset {name!r} not found: no data.txt in {str(folder)!r} (data directory "
            "from 'root' / --data-dir, else $DUNNO_DATA, else ~/.cache/dunno). Copy the "
            "UCI_Datasets/<name>/data folders of the Dropout-uncertainty experiments there as "
            "uci/<name>/."
        )
    return folder


def _index_digest(folder, n_splits: int) -> str:
    digest = hashlib.sha256()
    for k in range(n_splits):
        for kind in ("train", "test"):
            digest.update((folder / f"index_{kind}_{k}.txt").read_bytes())
    for f in ("index_features.txt", "index_target.txt"):
        digest.update((folder / f).read_bytes())
    return digest.hexdigest()


def uci_status(name: str, root=None) -> tuple[str, str]:
    """``("verified" | "missing" | "corrupt", detail)`` for one UCI set."""
    data_sha, index_sha, n_splits = UCI_SETS[name]
    try:
        folder = _folder(name, root)
    except DataError:
        return "missing", f"no {data_dir(root) / 'uci' / name / 'data.txt'}"
    if sha256_of(folder / "data.txt") != data_sha:
        return "corrupt", f"sha256 mismatch: {folder / 'data.txt'}"
    try:
        if _index_digest(folder, n_splits) != index_sha:
            return "corrupt", f"split index files in {folder} differ from the published splits"
    except FileNotFoundError as err:
        return "missing", f"split file missing: {err.filename}"
    return "verified", f"data + {n_splits} splits, sha256 ok, in {folder}"


@functools.lru_cache(maxsize=16)
def _read(folder: str, mtime: int):
    try:
        data = np.loadtxt(os.path.join(folder, "data.txt"), dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{folder}/data.txt is not a numeric matrix: {err}") from err
    features = np.loadtxt(os.path.join(folder, "index_features.txt"), dtype=np.int64, ndmin=1)
    target = int(np.loadtxt(os.path.join(folder, "index_target.txt"), dtype=np.int64))
    return data, features, target


def _split_indices(folder, k: int, split: str, n_rows: int) -> np.ndarray:
    path = folder / f"index_{split}_{k}.txt"
    if not path.is_file():
        raise DataError(f"Split file {str(path)!r} not found.")
    index = np.loadtxt(path, dtype=np.float64, ndmin=1).astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= n_rows):
        raise DataError(f"{str(path)!r} holds row indices outside [0, {n_rows}).")
    return index


def uci_hyperparameters(name: str, root=None) -> dict[str, int]:
    """``n_splits``, ``n_hidden`` and ``n_epochs`` as given in the dataset's folder."""
    folder = _folder(canonical(name), root)
    return {
        key: int(float((folder / f"{key}.txt").read_text().split()[0]))
        for key in ("n_splits", "n_hidden", "n_epochs")
    }


def load_uci(name: str, split: str, root=None, *, k: int = 0, verify: bool = True):
    """Split ``k`` of a UCI set as standardised :class:`RegressionDataset`.

    Returns ``x (N, D)`` and ``y (N, 1)`` float32, standardised with training statistics.
    """
    name = canonical(name)
    data_sha, index_sha, n_splits = UCI_SETS[name]
    if split not in ("train", "test"):
        raise DataError(f"UCI datasets have splits 'train' and 'test'. Got {split!r}.")
    if not isinstance(k, int) or not 0 <= k < n_splits:
        raise DataError(f"UCI dataset {name!r} has splits k = 0..{n_splits - 1}. Got k={k!r}.")
    folder = _folder(name, root)
    if verify:
        status, detail = uci_status(name, root)
        if status != "verified":
            raise DataError(f"UCI dataset {name!r} failed verification: {detail}.")
    data, features, target = _read(str(folder), (folder / "data.txt").stat().st_mtime_ns)
    train_index = _split_indices(folder, k, "train", len(data))
    index = train_index if split == "train" else _split_indices(folder, k, "test", len(data))
    x_train, y_train = data[train_index][:, features], data[train_index][:, [target]]
    x_mean, x_std = x_train.mean(0), x_train.std(0)
    x_std[x_std == 0] = 1.0
    y_mean, y_std = y_train.mean(0), y_train.std(0)
    y_std[y_std == 0] = 1.0
    x = (data[index][:, features] - x_mean) / x_std
    y = (data[index][:, [target]] - y_mean) / y_std

    def t(a):
        return torch.as_tensor(a, dtype=torch.float32)

    info = DatasetInfo(
        name=f"uci/{name}",
        kind="regression",
        shape=(len(features),),
        description=f"UCI {name} regression, split {k} of {n_splits}",
        extras={"k": k, "n_splits": n_splits},
    )
    return RegressionDataset(
        t(x), t(y), info, x_mean=t(x_mean), x_std=t(x_std), y_mean=t(y_mean), y_std=t(y_std)
    )
