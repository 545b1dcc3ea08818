"""Fast batch iteration over in-memory datasets."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from dunno.data.base import ArrayDataset
from dunno.validation import check_int

__all__ = ["BatchLoader", "make_loader"]


class BatchLoader:
    """Iterate ``(x, y)`` mini-batches of an :class:`ArrayDataset` by tensor slicing.

    Much faster than a per-item :class:`~torch.utils.data.DataLoader` for data already in
    memory. Shuffling uses ``generator`` (a seeded :class:`torch.Generator` whose state the
    training loop checkpoints, so resumed runs see the same order); ``transform`` is applied
    to each ``x`` batch (e.g. dynamic binarisation).
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator,
        drop_last: bool = False,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last
        self.transform = transform

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        x, y = self.dataset.x, self.dataset.targets
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if self.drop_last and stop - start < self.batch_size:
                break
            if order is None:
                xb, yb = x[start:stop], y[start:stop]
            else:
                index = order[start:stop]
                xb, yb = x[index], y[index]
            if self.transform is not None:
                xb = self.transform(xb)
            yield xb, yb


def make_loader(
    dataset: Dataset,
    batch_size: int = 128,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    num_workers: int = 0,
    shard: bool | None = None,
):
    """A batch iterator yielding ``(x (B, ...), y (B,))``.

    :class:`ArrayDataset` gets a :class:`BatchLoader`; any other ``Dataset`` a
    :class:`~torch.utils.data.DataLoader`. Both shuffle with a generator seeded by ``seed``.

    ``shard`` (default: ``shuffle`` and a process group with several ranks is running)
    splits every global batch of ``batch_size`` over the ranks
    (:class:`dunno.distributed.ShardedBatchLoader`); evaluation loaders (no shuffling) are
    not sharded unless asked, so every rank sees the whole evaluation set.
    """
    batch_size = check_int(batch_size, "batch_size", "make_loader", low=1)
    if len(dataset) == 0:
        raise ValueError("The 'dataset' is empty: there is nothing to load.")
    generator = torch.Generator()
    generator.manual_seed(seed)
    from dunno import distributed

    info = distributed.current()
    if shard is None:
        shard = shuffle and info.enabled
    if shard and info.enabled:
        if not isinstance(dataset, ArrayDataset):
            raise ValueError("Sharded loading needs an in-memory ArrayDataset.")
        return distributed.ShardedBatchLoader(dataset, batch_size, generator=generator,
                                              drop_last=drop_last, transform=transform,
                                              info=info)
    if isinstance(dataset, ArrayDataset):
        return BatchLoader(
            dataset, batch_size, shuffle=shuffle, generator=generator,
            drop_last=drop_last, transform=transform,
        )
    if transform is not None:
        raise ValueError("'transform' is only supported for in-memory ArrayDatasets.")
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
        drop_last=drop_last, num_workers=num_workers,
    )
