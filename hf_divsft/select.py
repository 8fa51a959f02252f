"""One selector for all six strategies: diversity level -> k types -> candidate pool -> N samples.

Every sample carries a *set* of types (one cluster id for macro, several tags for meso, many mid-band
tokens for micro). A subset at k types is D_k = union_{i<=k} Pi(C_i):

* Algorithm 1, reverse greedy pruning: start from all types and repeatedly drop the type whose removal
  loses the fewest samples still in the pool, together with those samples. The greedy order does not
  depend on k, so one run (a heap with lazy entries) serves every level: a sample leaves the pool at the
  step its first type is dropped, and the candidate pool for k is every sample that outlives the first
  K - k drops. With one type per sample this keeps the k largest clusters (macro).
* Algorithm 2, token-aware sampling: fill N from the candidate pool by always serving the kept type that
  is furthest behind (fewest selected samples carry it) with an unselected sample carrying it, drawn in
  seeded random order and, among the next few, the one that crowds already frequent types least.

Samples without any type can never represent a kept type, so they are left out of selection.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .arrays import distinct_pairs, row_pairs
from .errors import DivsftError

LOOKAHEAD = 8  # rows weighed per pick in Algorithm 2; 1 is plain random choice within the served type


@dataclass(frozen=True)
class Selection:
    """The result for one diversity level; `indices` are row positions in the typed dataset, sorted."""

    level: float
    k: int
    indices: np.ndarray
    candidates: int
    type_counts: np.ndarray  # per kept, still-present type: selected samples that carry it

    @property
    def types_covered(self) -> int:
        return int(np.count_nonzero(self.type_counts))

    @property
    def type_entropy(self) -> float:
        """Shannon entropy (bits) of the type distribution over the selected samples."""
        counts = self.type_counts[self.type_counts > 0].astype(np.float64)
        p = counts / counts.sum()
        return float(-(p * np.log2(p)).sum())

    @property
    def type_count_ratio(self) -> float | None:
        """max / min selected count over kept types; None when some kept type is missing."""
        low = int(self.type_counts.min())
        return float(self.type_counts.max() / low) if low else None


class TypeSelector:
    """Runs Algorithm 1 once over `types` (one list of type ids per row), then samples any level."""

    def __init__(self, types: Sequence[Sequence[int]] | pa.Array | pa.ChunkedArray, seed: int = 0):
        self.seed = seed
        self.num_rows, rows, dense, self.type_ids = _pairs(types)
        self.num_types = len(self.type_ids)
        if self.num_types == 0:
            raise DivsftError("no sample carries any type; nothing to select from")
        self._row_types = _csr(rows, dense, self.num_rows)
        self._type_rows = _csr(dense, rows, self.num_types)
        self.typed_rows = int(np.count_nonzero(np.diff(self._row_types[0])))
        # Ties are broken by a seeded random rank, not by type id, so no id range is favoured.
        self._tiebreak = np.random.default_rng(seed).permutation(self.num_types)
        self._pair_rows = rows  # row of each (row, type) pair, aligned with self._row_types[1]
        self.drop_order, self._row_death = self._prune()

    # -- Algorithm 1 ---------------------------------------------------------------------------------
    def _prune(self) -> tuple[np.ndarray, np.ndarray]:
        row_offsets, row_values = (a.tolist() for a in self._row_types)
        type_offsets, type_values = (a.tolist() for a in self._type_rows)
        num_types = self.num_types
        count = np.diff(self._type_rows[0]).tolist()
        rank = self._tiebreak.tolist()
        by_rank = np.argsort(self._tiebreak).tolist()
        dropped = [False] * num_types
        alive = [end > start for start, end in zip(row_offsets, row_offsets[1:])]
        death = [num_types] * self.num_rows
        # One int per heap entry, count * K + rank: cheaper to compare than tuples.
        heap = [count[t] * num_types + rank[t] for t in range(num_types)]
        heapq.heapify(heap)
        order = []
        while heap:
            c, r = divmod(heapq.heappop(heap), num_types)
            t = by_rank[r]
            if dropped[t] or c != count[t]:
                continue  # a stale entry; the current one is deeper in the heap
            step = len(order)
            dropped[t] = True
            order.append(t)
            touched = set()
            for row in type_values[type_offsets[t] : type_offsets[t + 1]]:
                if alive[row]:
                    alive[row] = False
                    death[row] = step
                    for other in row_values[row_offsets[row] : row_offsets[row + 1]]:
                        count[other] -= 1
                        touched.add(other)
            for other in touched:
                if not dropped[other]:
                    heapq.heappush(heap, count[other] * num_types + rank[other])
        death = np.asarray(death, dtype=np.int64)
        death[np.diff(self._row_types[0]) == 0] = -1  # untyped rows: in no candidate pool
        return np.asarray(order, dtype=np.int64), death

    def pool_size(self, k: int) -> int:
        """Rows in the candidate pool when k types are kept."""
        return int(np.count_nonzero(self._row_death >= self.num_types - k)) if k else 0

    def k_min(self, size: int) -> int:
        """Fewest types whose candidate pool still holds `size` rows (the 0% diversity level)."""
        death_steps = np.sort(self._row_death[self._row_death >= 0])[::-1]
        if size > len(death_steps):
            raise DivsftError(
                f"the pool has only {len(death_steps)} samples that carry a type (of {self.num_rows} rows); "
                f"it cannot supply --size {size}: lower --size or use a larger pool"
            )
        # The size-th latest death step s keeps `size` rows once K - k <= s, i.e. k >= K - s.
        return int(self.num_types - death_steps[size - 1])

    def k_for_level(self, level: float, size: int) -> int:
        """Level p in [0, 100] maps linearly from k_min (p = 0) to all types (p = 100)."""
        if not 0 <= level <= 100:
            raise DivsftError(f"diversity level {level}: must lie between 0 and 100")
        low = self.k_min(size)
        return low + int(round(level / 100 * (self.num_types - low)))

    def kept_types(self, k: int) -> np.ndarray:
        """Dense indices of the k types that survive pruning."""
        return self.drop_order[self.num_types - k :]

    def candidates(self, k: int) -> np.ndarray:
        """Row positions of the candidate pool for k kept types."""
        return np.flatnonzero(self._row_death >= self.num_types - k)

    # -- Algorithm 2 ---------------------------------------------------------------------------------
    def select(self, level: float, size: int) -> Selection:
        k = self.k_for_level(level, size)
        rng = np.random.default_rng([self.seed, k])
        candidates = self.candidates(k)
        in_pool = np.zeros(self.num_rows, dtype=bool)
        in_pool[candidates] = True
        type_offsets, type_values = self._type_rows
        keep = in_pool[type_values]
        # Each type's candidate rows in a seeded random order: sort by (type, random key).
        pair_types = np.repeat(np.arange(self.num_types), np.diff(type_offsets))[keep]
        pair_rows = type_values[keep]
        order = np.lexsort((rng.random(len(pair_rows)), pair_types))
        queue_rows = pair_rows[order].tolist()
        queue_start = np.searchsorted(pair_types[order], np.arange(self.num_types + 1)).tolist()
        picked = _serve_furthest_behind(
            queue_rows, queue_start, self._row_types, self.kept_types(k), self._tiebreak, size
        )
        indices = np.sort(np.asarray(picked, dtype=np.int64))
        return Selection(level, k, indices, len(candidates), self.type_counts(indices, k))

    def type_counts(self, indices: np.ndarray, k: int) -> np.ndarray:
        """How many of `indices` carry each kept type that is still present in the candidate pool."""
        row_values = self._row_types[1]
        selected = np.zeros(self.num_rows, dtype=bool)
        selected[np.asarray(indices, dtype=np.int64)] = True
        counts = np.bincount(row_values[selected[self._pair_rows]], minlength=self.num_types)
        in_pool = self._row_death[self._pair_rows] >= self.num_types - k
        present = np.bincount(row_values[in_pool], minlength=self.num_types) > 0
        kept = self.kept_types(k)
        return counts[kept[present[kept]]]


def _serve_furthest_behind(queue_rows, queue_start, row_types, kept, tiebreak, size) -> list[int]:
    row_offsets, row_values = (a.tolist() for a in row_types)
    tiebreak = tiebreak.tolist()
    count = [0] * len(tiebreak)
    cursor = list(queue_start)
    heap = [(0, tiebreak[t], t) for t in kept.tolist() if queue_start[t + 1] > queue_start[t]]
    heapq.heapify(heap)
    chosen = set()
    picked = []
    while len(picked) < size and heap:
        c, rank, t = heapq.heappop(heap)
        if c != count[t]:  # counts only grow: re-file at the current count
            heapq.heappush(heap, (count[t], rank, t))
            continue
        while cursor[t] < queue_start[t + 1] and queue_rows[cursor[t]] in chosen:
            cursor[t] += 1
        if cursor[t] == queue_start[t + 1]:
            continue  # every candidate carrying t is taken; t leaves the queue
        row = _least_crowded(queue_rows, cursor[t], queue_start[t + 1], chosen, row_offsets, row_values, count)
        chosen.add(row)
        picked.append(row)
        for other in row_values[row_offsets[row] : row_offsets[row + 1]]:
            count[other] += 1
        heapq.heappush(heap, (count[t], rank, t))
    return picked


def _least_crowded(queue_rows, start, end, chosen, row_offsets, row_values, count) -> int:
    """Of the next LOOKAHEAD unchosen rows carrying the served type, the one that brings the most types not
    yet represented, then whose most frequent type is least frequent so far: serving a rare type should
    not also inflate an already common one."""
    best_row, best_score, seen = -1, None, 0
    for row in queue_rows[start:end]:
        if row in chosen:
            continue
        counts = [count[u] for u in row_values[row_offsets[row] : row_offsets[row + 1]]]
        score = (-counts.count(0), max(counts))
        if best_score is None or score < best_score:
            best_row, best_score = row, score
        seen += 1
        if seen == LOOKAHEAD:
            break
    return best_row


def _pairs(types) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (row, dense type) pairs, sorted by row then type, and the original type ids."""
    num_rows, rows, values = row_pairs(types)
    type_ids, dense = np.unique(values, return_inverse=True)
    return (num_rows, *distinct_pairs(rows, dense), type_ids)


def _csr(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group `values` by `keys` (0..n-1): offsets of length n + 1 and the grouped values."""
    order = np.argsort(keys, kind="stable")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=offsets[1:])
    return offsets, values[order]
