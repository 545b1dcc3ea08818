r"""Exact nearest-neighbour searches shared by the detectors of one OOD run.

In an all-detector run (:func:`uncertainty.ood.run_ood`) the same test and OOD features are
searched against two banks made from the same training features: kNN's bank (all of them)
and the kNN component of :class:`~uncertainty.ood.combined.Combined` (the rows it keeps for
fitting, 80% by default; the rest is its p-value reference). Inside a
:meth:`SharedSearches.active` block such searches are made **once**, against the largest
bank, and every detector reads its own answer from it:

* the :math:`K` most similar rows of the whole bank are found exactly
  (:func:`uncertainty.ood.similarity.top_similarities`: float64 products, proven top-:math:`K`);
* a detector whose bank is the whole bank takes the :math:`k`-th of them;
* a detector whose bank is a subset :math:`S` (row indices) takes the :math:`k`-th of the
  candidates that lie in :math:`S`. Every row of :math:`S` outside the candidates has a
  similarity at most the :math:`K`-th, so when at least :math:`k` candidates lie in
  :math:`S`, the :math:`k`-th of them is the :math:`k`-th neighbour in :math:`S`; rows with
  fewer are searched again against :math:`S` alone. :math:`K` is chosen from the registered
  banks so that this almost never happens: :math:`\lceil 1.25\,k / f\rceil` for a subset that
  holds a fraction :math:`f` of the bank.

The answer is the neighbour a search of the detector's own bank finds (up to exact ties of the
float64 products), and the distance is computed from the detector's own normalised bank, so
the scores are those of :func:`~uncertainty.ood.knn.knn_score` up to float rounding; a test
checks them against it.

**What is shared, and when.** Only query sets declared with :meth:`SharedSearches.share_queries`
(the run's test and OOD features, scored by every detector) and banks registered while
fitting (:meth:`SharedSearches.register_bank`, which kNN calls inside an active block) take
part, and only when at least two registered banks come from the same training features.
Entries are keyed by the tensors themselves (held by the cache, with their in-place version
counters, so a tensor changed in place or another tensor at the same address never matches)
and by the dtype and device of the search; the cache is emptied when the block ends. Outside
a block nothing is cached and every detector searches on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from uncertainty.ood.similarity import normalize_features, top_similarities

__all__ = ["SharedSearches", "active_searches"]

_ACTIVE: ContextVar[SharedSearches | None] = ContextVar("uncertainty_ood_shared_searches",
                                                        default=None)

#: Margin on the expected number of candidates inside a subset bank (module docstring).
SUBSET_MARGIN = 1.25


def active_searches() -> SharedSearches | None:
    """The cache of the enclosing :meth:`SharedSearches.active` block, or ``None``."""
    return _ACTIVE.get()


def _same(entry: tuple[torch.Tensor, int], tensor: torch.Tensor) -> bool:
    """``entry`` holds this very tensor, unchanged since it was stored."""
    return entry[0] is tensor and entry[1] == tensor._version


class SharedSearches:
    """Exact kNN searches made once per query set and training-feature bank within one run
    (see the module docstring). Use it as ``with SharedSearches().active(): ...``.

    Attributes
    ----------
    searches : int
        Searches made against a whole bank for several detectors.
    reused : int
        Answers read from them.
    redone : int
        Query rows searched again against a subset bank (too few candidates inside it).
    """

    def __init__(self) -> None:
        self._queries: list[tuple[torch.Tensor, int]] = []
        # id(root) -> ((root, version), [(rows or None, k), ...])
        self._banks: dict[int, tuple[tuple[torch.Tensor, int], list]] = {}
        # (id(queries), id(root), dtype, device) -> ((queries, v), (root, v), K, values, indices)
        self._results: dict[tuple, tuple] = {}
        # id(subset features) -> ((subset, v), (root, v), rows)
        self._subsets: dict[int, tuple] = {}
        self.searches = 0
        self.reused = 0
        self.redone = 0

    @contextmanager
    def active(self) -> Iterator[SharedSearches]:
        """Make this cache the one kNN detectors use inside the block; empty it at the end."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
            self.clear()

    def clear(self) -> None:
        """Forget every query set, bank and search."""
        self._queries.clear()
        self._banks.clear()
        self._results.clear()
        self._subsets.clear()

    def share_queries(self, features: torch.Tensor) -> None:
        """Declare ``features (N, F)`` a query set that several detectors will score."""
        if not any(_same(e, features) for e in self._queries):
            self._queries.append((features, features._version))

    def note_subset(self, subset: torch.Tensor, root: torch.Tensor, rows: torch.Tensor) -> None:
        """Declare ``subset`` to be ``root[rows]`` (e.g. the part of the fit features that
        :class:`~uncertainty.ood.combined.Combined` fits its components on)."""
        self._subsets[id(subset)] = ((subset, subset._version), (root, root._version),
                                     rows.detach().clone())

    def register_bank(self, features: torch.Tensor, rows: torch.Tensor | None, k: int
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Record that a detector searches the ``k``-th neighbour among ``features[rows]``
        (``rows=None``: all of them; raw training features, not normalised). Returns
        ``(root, rows)``: the same bank as rows of the features it was taken from (through
        :meth:`note_subset`), which :meth:`kth_neighbour` takes."""
        root = features
        sub = self._subsets.get(id(features))
        if sub is not None and _same(sub[0], features) and _same(sub[1], sub[1][0]):
            root = sub[1][0]
            rows = sub[2] if rows is None else sub[2][rows.to(sub[2].device)]
        entry = self._banks.get(id(root))
        if entry is None or not _same(entry[0], root):
            entry = ((root, root._version), [])
            self._banks[id(root)] = entry
        rows = None if rows is None else rows.detach().clone()
        entry[1].append((rows, int(k)))
        return root, rows

    def _candidates(self, root: torch.Tensor) -> int | None:
        """How many neighbours a shared search of ``root`` keeps (None: not shared)."""
        entry = self._banks.get(id(root))
        if entry is None or not _same(entry[0], root) or len(entry[1]) < 2:
            return None
        m = len(root)
        need = [k if rows is None else math.ceil(SUBSET_MARGIN * k * m / max(1, len(rows)))
                for rows, k in entry[1]]
        return min(m, max(need))

    def kth_neighbour(self, features: torch.Tensor, root: torch.Tensor,
                      rows: torch.Tensor | None, bank: torch.Tensor, k: int
                      ) -> torch.Tensor | None:
        """Index ``(N,)`` into ``bank`` of the ``k``-th nearest neighbour of every query, or
        ``None`` when this search is not shared (then the caller searches on its own).

        Args:
            features: ``(N, F)`` raw query features (normalised here, as by ``knn_score``).
            root: ``(M, F)`` raw training features the bank was made from.
            rows: the bank's rows of ``root`` (``None``: all of them, in order).
            bank: ``(len(rows), F)`` the detector's normalised bank, ``normalize(root[rows])``.
            k: which neighbour.
        """
        if not any(_same(e, features) for e in self._queries):
            return None
        size = self._candidates(root)
        if size is None or k > size:
            return None
        dtype = torch.promote_types(features.dtype, bank.dtype)
        key = (id(features), id(root), dtype, bank.device)
        hit = self._results.get(key)
        if hit is None or not (_same(hit[0], features) and _same(hit[1], root)
                               and hit[2] >= size):
            whole = normalize_features(root.to(bank.device)).to(dtype)  # (M, F)
            queries = normalize_features(features.to(device=bank.device, dtype=dtype))
            _, index = top_similarities(queries, whole, size)  # (N, size), exact
            hit = ((features, features._version), (root, root._version), size, index)
            self._results[key] = hit
            self.searches += 1
        index = hit[3]
        self.reused += 1
        if rows is None:
            return index[:, k - 1]
        position = torch.full((len(root),), -1, dtype=torch.long, device=index.device)
        position[rows.to(index.device)] = torch.arange(len(rows), device=index.device)
        inside = position[index]  # (N, size): the candidate's row in the bank, or -1
        count = (inside >= 0).cumsum(dim=1)  # (N, size)
        enough = count[:, -1] >= k
        column = (count >= k).to(torch.int8).argmax(dim=1)  # first column reaching k
        out = inside.gather(1, column[:, None])[:, 0]  # (N,)
        short = torch.nonzero(~enough).flatten()
        if len(short):
            self.redone += len(short)
            queries = normalize_features(features[short.to(features.device)].to(
                device=bank.device, dtype=dtype))
            _, again = top_similarities(queries, bank.to(dtype), k)
            out[short] = again[:, k - 1]
        return out
