"""In-memory dataset types returned by :func:`dunno.data.load_dataset`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch.utils.data import Dataset

__all__ = ["ArrayDataset", "DatasetInfo", "RegressionDataset"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is.

    Attributes
    ----------
    name : str
        The full dataset spec it was loaded from (e.g. ``"mnist:rotate=90"``).
    kind : str
        ``"image"`` (``x`` is ``(N, C, H, W)``), ``"vector"`` (``(N, D)``), ``"regression"``
        (``x (N, D)``, ``y (N, 1)`` float) or ``"sequence"`` (``(N, T, D)``).
    shape : tuple of int
        Shape of one example.
    num_classes : int or None
        Number of classes for labelled classification data.
    value_range : (float, float) or None
        Range the inputs lie in (``(0, 1)`` for images).
    description : str
        One line for humans.
    extras : dict
        More facts where known (not compared): for user data ``split_sizes``
        (``{"train": n, "val": n, "test": n}``), ``split_rule``, ``split_seed``,
        ``split_fractions``, ``layout`` and ``classes`` (class names, see
        :mod:`dunno.data.user`); ``original_classes`` after the ``classes=`` option.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    num_classes: int | None = None
    value_range: tuple[float, float] | None = None
    description: str = ""
    extras: dict = field(default_factory=dict, compare=False)

    def with_name(self, name: str) -> DatasetInfo:
        return replace(self, name=name)


class ArrayDataset(Dataset):
    """A dataset held as tensors.

    ``x`` is ``(N, ...)`` float32; ``y`` is ``(N,)`` int64 class labels, ``(N, d)`` float
    targets, or ``None`` for unlabelled data (then items are ``(x_i, -1)`` so that every
    loader yields ``(x, y)`` pairs and ``has_labels`` is ``False``).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, info: DatasetInfo):
        if y is not None and len(y) != len(x):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}.")
        self.x = x
        self.y = y
        self.info = info

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    @property
    def targets(self) -> torch.Tensor:
        """Labels, or ``-1`` everywhere for unlabelled data. ``(N,)``"""
        if self.y is None:
            return torch.full((len(self.x),), -1, dtype=torch.long)
        return self.y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.targets[index]

    def subset(self, index: torch.Tensor, name: str | None = None) -> ArrayDataset:
        """The examples at ``index`` (a LongTensor or boolean mask) as a new dataset."""
        y = None if self.y is None else self.y[index]
        info = self.info if name is None else self.info.with_name(name)
        return type(self)._rebuild(self, self.x[index], y, info)

    @staticmethod
    def _rebuild(template, x, y, info):
        return ArrayDataset(x, y, info)

    def __repr__(self) -> str:
        labels = f", num_classes={self.info.num_classes}" if self.info.num_classes else ""
        return (
            f"{type(self).__name__}({self.info.name!r}, n={len(self)}, "
            f"shape={tuple(self.info.shape)}{labels})"
        )


class RegressionDataset(ArrayDataset):
    """Standardised regression data: ``x (N, D)`` and ``y (N, 1)`` float32.

    ``x_mean, x_std (D,)`` and ``y_mean, y_std (1,)`` are the training-split statistics
    used for standardisation; :meth:`unscale_y` maps predictions back to original units.
    """

    def __init__(self, x, y, info, *, x_mean, x_std, y_mean, y_std):
        super().__init__(x, y, info)
        self.x_mean, self.x_std, self.y_mean, self.y_std = x_mean, x_std, y_mean, y_std

    @staticmethod
    def _rebuild(template, x, y, info):
        return RegressionDataset(
            x, y, info, x_mean=template.x_mean, x_std=template.x_std,
            y_mean=template.y_mean, y_std=template.y_std,
        )

    def unscale_y(self, y: torch.Tensor) -> torch.Tensor:
        """Standardised targets/means -> original units."""
        return y * self.y_std + self.y_mean

    @property
    def y_original(self) -> torch.Tensor:
        """Targets in original units. ``(N, 1)``"""
        return self.unscale_y(self.y)
