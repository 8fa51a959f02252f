"""The shared selector on real micro types, one-type-per-sample (macro) data, and a naive oracle."""

from __future__ import annotations

import numpy as np
import pytest

from hf_divsft import DivsftError, MicroTypes, TypeSelector, load_pool
from hf_divsft.config import PAPER_LEVELS

SIZE = 400


@pytest.fixture(scope="module", params=["response", "instruction"])
def typed(request, pool_file):
    return MicroTypes(request.param, band=(10, 100)).add_types(load_pool(str(pool_file)))


@pytest.fixture(scope="module")
def selections(typed):
    selector = TypeSelector(typed["types"][:], seed=0)
    return selector, [selector.select(level, SIZE) for level in PAPER_LEVELS]


def test_every_level_has_exactly_n_distinct_pool_rows(typed, selections):
    _, chosen = selections
    pool_ids = set(typed["id"][:])
    for selection in chosen:
        ids = typed.select(selection.indices)["id"][:]
        assert len(ids) == SIZE == len(set(ids))
        assert set(ids) <= pool_ids


def test_coverage_rises_with_level_from_k_min_to_all_types(typed, selections):
    selector, chosen = selections
    covered = [s.types_covered for s in chosen]
    assert covered == sorted(covered), covered
    all_types = {t for types in typed["types"][:] for t in types}
    assert chosen[-1].types_covered == len(all_types) == selector.num_types
    assert chosen[0].k == selector.k_min(SIZE) == chosen[0].types_covered
    assert selector.pool_size(selector.k_min(SIZE)) >= SIZE > selector.pool_size(selector.k_min(SIZE) - 1)


def test_subsets_use_only_kept_types(typed, selections):
    selector, chosen = selections
    for selection in chosen:
        kept = set(selector.type_ids[selector.kept_types(selection.k)].tolist())
        for types in typed.select(selection.indices)["types"][:]:
            assert types and set(types) <= kept


def test_same_seed_same_subset_other_seed_other_subset(typed, selections):
    _, chosen = selections
    again = TypeSelector(typed["types"][:], seed=0).select(50, SIZE)
    other = TypeSelector(typed["types"][:], seed=1).select(50, SIZE)
    assert np.array_equal(again.indices, chosen[3].indices)
    assert not np.array_equal(other.indices, chosen[3].indices)


def test_token_aware_sampling_is_more_even_than_random_draws(selections):
    selector, chosen = selections
    rng = np.random.default_rng(0)
    compared = 0
    for selection in chosen:
        pool = selector.candidates(selection.k)
        if len(pool) == SIZE:
            continue  # the candidate pool is the subset: nothing to choose
        ours = selection.type_counts
        for _ in range(5):
            drawn = selector.type_counts(rng.choice(pool, SIZE, replace=False), selection.k)
            assert ours.std() / ours.mean() < drawn.std() / drawn.mean()
            ratio = drawn.max() / drawn.min() if drawn.min() else np.inf
            assert selection.type_count_ratio < ratio
        compared += 1
    assert compared >= len(PAPER_LEVELS) - 1


def test_pool_too_small_for_n_is_a_clear_error(selections):
    selector, _ = selections
    with pytest.raises(DivsftError, match="cannot supply --size"):
        selector.select(0, selector.typed_rows + 1)


def test_macro_one_type_per_sample_keeps_the_k_largest_clusters_evenly():
    sizes = [300, 200, 120, 80, 40, 20, 10, 5]
    types = [[cluster] for cluster, n in enumerate(sizes) for _ in range(n)]
    selector = TypeSelector(types, seed=3)
    assert selector.k_min(250) == 1 and selector.k_min(301) == 2
    selection = selector.select(50, 250)
    kept = sorted(selector.type_ids[selector.kept_types(selection.k)].tolist())
    assert kept == list(range(selection.k)) and selection.k == 5  # the largest clusters
    counts = np.bincount([types[i][0] for i in selection.indices], minlength=len(sizes))
    # Even: clusters that still had samples left differ by at most one; smaller ones give all they have.
    share = counts[: selection.k]
    not_exhausted = share[share < np.asarray(sizes[: selection.k])]
    assert counts.sum() == 250 and not_exhausted.max() - not_exhausted.min() <= 1
    assert all(share[c] == sizes[c] for c in range(selection.k) if share[c] < not_exhausted.min())
    assert counts[selection.k :].sum() == 0


def naive_pool_sizes(types: list[list[int]], tiebreak: np.ndarray, type_ids: np.ndarray) -> list[int]:
    """Algorithm 1 by full rescans: pool size after each drop (the O(K^2) definition)."""
    rank = {int(t): int(tiebreak[i]) for i, t in enumerate(type_ids)}
    alive = [set(t) for t in types if t]
    kept = set(rank)
    sizes = [len(alive)]
    while kept:
        cost = {t: sum(t in row for row in alive) for t in kept}
        drop = min(kept, key=lambda t: (cost[t], rank[t]))
        kept.remove(drop)
        alive = [row for row in alive if drop not in row]
        sizes.append(len(alive))
    return sizes[::-1]  # index k = pool size with k kept types


@pytest.mark.parametrize("seed", range(5))
def test_heap_pruning_matches_the_naive_rescan(seed):
    rng = np.random.default_rng(seed)
    types = [sorted(set(rng.integers(0, 40, rng.integers(0, 6)).tolist())) for _ in range(300)]
    selector = TypeSelector(types, seed=seed)
    expected = naive_pool_sizes(types, selector._tiebreak, selector.type_ids)
    assert [selector.pool_size(k) for k in range(selector.num_types + 1)] == expected


def reference_selection(types: list[list[int]], seed: int, level: float, size: int) -> list[int]:
    """Algorithm 2 written plainly (the pure-Python selector this one replaced): serve the kept type with the
    fewest selected samples (ties by the seeded rank), taking among its next 8 unselected candidates, in
    seeded random order, the one that brings the most unrepresented types, then crowds frequent ones least."""
    import heapq

    selector = TypeSelector(types, seed=seed)  # Algorithm 1 and the queue order are checked above
    k = selector.k_for_level(level, size)
    dense = {int(t): i for i, t in enumerate(selector.type_ids)}
    row_types = [sorted({dense[t] for t in row}) for row in types]
    rng = np.random.default_rng([seed, k])
    candidates = selector.candidates(k)
    pairs = [(t, row) for t in range(selector.num_types) for row in candidates.tolist()
             if t in row_types[row]]
    keys = rng.random(len(pairs))
    queues: dict[int, list[int]] = {}
    for (t, row), _ in sorted(zip(pairs, keys), key=lambda item: (item[0][0], item[1])):
        queues.setdefault(t, []).append(row)
    rank = selector._tiebreak.tolist()
    count = [0] * selector.num_types
    heap = [(0, rank[t], t) for t in selector.kept_types(k).tolist() if queues.get(t)]
    heapq.heapify(heap)
    chosen: list[int] = []
    while len(chosen) < size and heap:
        c, r, t = heapq.heappop(heap)
        if c != count[t]:
            heapq.heappush(heap, (count[t], r, t))
            continue
        waiting = [row for row in queues[t] if row not in chosen][:8]
        if not waiting:
            continue
        best = min(waiting, key=lambda row: (-sum(count[u] == 0 for u in row_types[row]),
                                             max(count[u] for u in row_types[row]), waiting.index(row)))
        chosen.append(best)
        for u in row_types[best]:
            count[u] += 1
        heapq.heappush(heap, (count[t], r, t))
    return sorted(chosen)


@pytest.mark.parametrize("seed", range(4))
def test_compiled_sampling_matches_the_plain_reference(seed):
    rng = np.random.default_rng(100 + seed)
    # repeats and empty rows too
    types = [rng.integers(0, 60, rng.integers(0, 7)).tolist() for _ in range(500)]
    selector = TypeSelector(types, seed=seed)
    for level in (0, 33, 67, 100):
        assert selector.select(level, 120).indices.tolist() == reference_selection(types, seed, level, 120)
