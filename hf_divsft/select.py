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

Both algorithms are compiled with numba over compact int32 arrays (the (row, type) pairs in CSR form, both
ways), so 50 million pairs take seconds, not a Python object each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from .arrays import SMALL_IDS, distinct_pairs, row_pairs
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
    strata_k: tuple[int, ...] | None = None  # with --control: each stratum's k (`k` counts their union)

    @property
    def types_covered(self) -> int:
        return int(np.count_nonzero(self.type_counts))

    @property
    def type_entropy(self) -> float:
        """Shannon entropy (bits) of the type distribution over the selected samples."""
        counts = self.type_counts[self.type_counts > 0].astype(np.float64)
        p = counts / counts.sum()
        return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: one type gives 0, not -0

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
        self.drop_order, self._row_death = _prune(*self._row_types, *self._type_rows,
                                                  self._tiebreak.astype(np.int64), self.num_rows)

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
        in_pool = self._row_death >= self.num_types - k
        return self.fill(level, k, in_pool, self.kept_types(k), size, np.random.default_rng([self.seed, k]))

    def fill(self, level: float, k: int, in_pool: np.ndarray, kept: np.ndarray, size: int, rng,
             strata: tuple[np.ndarray, np.ndarray] | None = None) -> Selection:
        """Algorithm 2 over the candidate rows `in_pool` (a mask), serving the `kept` types. With `strata`
        (each row's stratum, each stratum's quota) a row is drawn only while its stratum has room."""
        type_offsets, type_values = self._type_rows
        keep = in_pool[type_values]
        # Each type's candidate rows in a seeded random order: sort by (type, random key).
        pair_types = np.repeat(np.arange(self.num_types, dtype=np.int32), np.diff(type_offsets))[keep]
        pair_rows = type_values[keep]
        queue_start = np.searchsorted(pair_types, np.arange(self.num_types + 1))  # pairs are grouped by type
        queue_rows = pair_rows[_sorted_within(queue_start, rng.random(len(pair_rows)))]
        del keep, pair_types, pair_rows
        stratum, room = strata if strata else (np.zeros(self.num_rows, dtype=np.int32), np.array([size]))
        picked = _serve_furthest_behind(queue_rows, queue_start, *self._row_types, kept,
                                        self._tiebreak.astype(np.int64), size, LOOKAHEAD, stratum,
                                        room.astype(np.int64))
        indices = np.sort(picked)
        return Selection(level, k, indices, int(np.count_nonzero(in_pool)),
                         self._counts(indices, self.counted_types(in_pool, kept)))

    def type_counts(self, indices: np.ndarray, k: int) -> np.ndarray:
        """How many of `indices` carry each kept type still present in the candidate pool for k."""
        in_pool = self._row_death >= self.num_types - k
        return self._counts(indices, self.counted_types(in_pool, self.kept_types(k)))

    def counted_types(self, in_pool: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """The `kept` types some candidate row carries (a kept type can lose all its rows to other types'
        drops): the types a level is meant to cover."""
        present = np.bincount(self._row_types[1][in_pool[self._pair_rows]], minlength=self.num_types) > 0
        return kept[present[kept]]

    def _counts(self, indices: np.ndarray, types: np.ndarray) -> np.ndarray:
        selected = np.zeros(self.num_rows, dtype=bool)
        selected[np.asarray(indices, dtype=np.int64)] = True
        return np.bincount(self._row_types[1][selected[self._pair_rows]], minlength=self.num_types)[types]


@njit(cache=True)
def _sorted_within(starts, keys):
    """The order that sorts `keys` within each segment [starts[t], starts[t + 1]), stably: what
    `np.lexsort((keys, segment))` gives for grouped segments, several times faster on tens of millions."""
    order = np.empty(len(keys), dtype=np.int64)
    for t in range(len(starts) - 1):
        start, stop = starts[t], starts[t + 1]
        if stop > start:
            order[start:stop] = start + np.argsort(keys[start:stop], kind="mergesort")
    return order


# -- a binary min-heap of unique int64 keys, for the compiled loops -----------------------------------------
@njit(cache=True)
def _push(heap, size, key):
    if size == len(heap):
        grown = np.empty(2 * len(heap) + 1, dtype=np.int64)
        grown[:size] = heap[:size]
        heap = grown
    heap[size] = key
    child = size
    while child > 0:
        parent = (child - 1) >> 1
        if heap[parent] <= heap[child]:
            break
        heap[parent], heap[child] = heap[child], heap[parent]
        child = parent
    return heap, size + 1


@njit(cache=True)
def _pop(heap, size):
    top = heap[0]
    size -= 1
    heap[0] = heap[size]
    parent = 0
    while True:
        smallest, left = parent, 2 * parent + 1
        if left < size and heap[left] < heap[smallest]:
            smallest = left
        if left + 1 < size and heap[left + 1] < heap[smallest]:
            smallest = left + 1
        if smallest == parent:
            break
        heap[parent], heap[smallest] = heap[smallest], heap[parent]
        parent = smallest
    return top, size


# -- Algorithm 1 -------------------------------------------------------------------------------------------
@njit(cache=True)
def _prune(row_offsets, row_values, type_offsets, type_values, rank, num_rows):
    """(drop order of the types, step at which each row leaves the pool; -1 for untyped rows).

    Heap entries are `count * K + rank` (unique: one live entry per type and count); stale ones are skipped.
    """
    num_types = len(type_offsets) - 1
    count = np.diff(type_offsets)
    by_rank = np.argsort(rank)
    dropped = np.zeros(num_types, dtype=np.bool_)
    alive = np.diff(row_offsets) > 0
    death = np.full(num_rows, num_types, dtype=np.int64)
    heap = np.empty(num_types, dtype=np.int64)
    for t in range(num_types):
        heap[t] = count[t] * num_types + rank[t]
    heap = np.sort(heap)  # a sorted array is a valid heap
    size = num_types
    touched_at = np.full(num_types, -1, dtype=np.int64)
    touched = np.empty(num_types, dtype=np.int64)
    order = np.empty(num_types, dtype=np.int64)
    steps = 0
    while size:
        key, size = _pop(heap, size)
        c, r = key // num_types, key % num_types
        t = by_rank[r]
        if dropped[t] or c != count[t]:
            continue  # a stale entry; the current one is deeper in the heap
        dropped[t] = True
        order[steps] = t
        n_touched = 0
        for i in range(type_offsets[t], type_offsets[t + 1]):
            row = type_values[i]
            if alive[row]:
                alive[row] = False
                death[row] = steps
                for j in range(row_offsets[row], row_offsets[row + 1]):
                    other = row_values[j]
                    count[other] -= 1
                    if touched_at[other] != steps:
                        touched_at[other] = steps
                        touched[n_touched] = other
                        n_touched += 1
        for i in range(n_touched):
            other = touched[i]
            if not dropped[other]:
                heap, size = _push(heap, size, count[other] * num_types + rank[other])
        steps += 1
    for row in range(num_rows):
        if row_offsets[row + 1] == row_offsets[row]:
            death[row] = -1  # untyped rows: in no candidate pool
    return order, death


# -- Algorithm 2 -------------------------------------------------------------------------------------------
@njit(cache=True)
def _serve_furthest_behind(queue_rows, queue_start, row_offsets, row_values, kept, rank, size, lookahead,
                           stratum, room):
    """Rows picked by always serving the kept type with the fewest selected samples (ties: seeded rank),
    each from a stratum with `room` left (one stratum of room `size` when uncontrolled)."""
    room = room.copy()
    num_types = len(rank)
    count = np.zeros(num_types, dtype=np.int64)
    cursor = queue_start.copy()
    chosen = np.zeros(len(row_offsets) - 1, dtype=np.bool_)
    picked = np.empty(size, dtype=np.int64)
    heap = np.empty(len(kept) + 1, dtype=np.int64)
    heap_size = 0
    by_rank = np.argsort(rank)
    for t in kept:
        if queue_start[t + 1] > queue_start[t]:
            heap, heap_size = _push(heap, heap_size, rank[t])  # count 0
    n = 0
    while n < size and heap_size:
        key, heap_size = _pop(heap, heap_size)
        c, t = key // num_types, by_rank[key % num_types]
        if c != count[t]:  # counts only grow: re-file at the current count
            heap, heap_size = _push(heap, heap_size, count[t] * num_types + rank[t])
            continue
        end = queue_start[t + 1]
        # a full stratum never has room again: its rows are passed over for good
        while cursor[t] < end and (chosen[queue_rows[cursor[t]]] or room[stratum[queue_rows[cursor[t]]]] == 0):
            cursor[t] += 1
        if cursor[t] == end:
            continue  # every candidate carrying t is taken; t leaves the queue
        row = _least_crowded(queue_rows, cursor[t], end, chosen, row_offsets, row_values, count, lookahead,
                             stratum, room)
        chosen[row] = True
        room[stratum[row]] -= 1
        picked[n] = row
        n += 1
        for j in range(row_offsets[row], row_offsets[row + 1]):
            count[row_values[j]] += 1
        heap, heap_size = _push(heap, heap_size, count[t] * num_types + rank[t])
    return picked[:n]


@njit(cache=True)
def _least_crowded(queue_rows, start, end, chosen, row_offsets, row_values, count, lookahead, stratum, room):
    """Of the next `lookahead` unchosen rows carrying the served type, the one that brings the most types not
    yet represented, then whose most frequent type is least frequent so far: serving a rare type should
    not also inflate an already common one."""
    best_row, best_zeros, best_max, seen = -1, -1, 0, 0
    for i in range(start, end):
        row = queue_rows[i]
        if chosen[row] or room[stratum[row]] == 0:
            continue
        zeros, most = 0, 0
        for j in range(row_offsets[row], row_offsets[row + 1]):
            c = count[row_values[j]]
            zeros += c == 0
            most = max(most, c)
        if best_row < 0 or zeros > best_zeros or (zeros == best_zeros and most < best_max):
            best_row, best_zeros, best_max = row, zeros, most
        seen += 1
        if seen == lookahead:
            break
    return best_row


def _pairs(types) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (row, dense type) pairs as int32, sorted by row then type, and the original type ids."""
    num_rows, rows, values = row_pairs(types)
    if len(values) and values.min() >= 0 and values.max() < SMALL_IDS:  # token or cluster ids: a lookup table
        present = np.bincount(values) > 0
        type_ids = np.flatnonzero(present)
        dense = (np.cumsum(present) - 1)[values]
    else:  # e.g. the whitespace tokenizer's 63-bit word hashes
        type_ids, dense = np.unique(values, return_inverse=True)
    rows, dense = rows.astype(np.int32), dense.astype(np.int32)
    ordered = len(rows) < 2 or bool(np.all((rows[1:] > rows[:-1])
                                           | ((rows[1:] == rows[:-1]) & (dense[1:] > dense[:-1]))))
    if not ordered:  # extractors write each row's types sorted and distinct; other callers may not
        rows, dense = distinct_pairs(rows, dense)
    return num_rows, rows, dense, type_ids


def _csr(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group `values` by `keys` (0..n-1): offsets of length n + 1 and the grouped values."""
    order = np.argsort(keys, kind="stable")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=offsets[1:])
    return offsets, values[order]
