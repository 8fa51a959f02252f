"""The macro level's default components, reproducible bit for bit: the same vectors and seed give the same
clusters in every process and for any thread count, at any pool size.

Every source of run-to-run variation found on the shared pool is closed here:
* UMAP's spectral initialisation calls ARPACK, whose restart vectors come from an unseeded generator when
  the iteration stalls (it does on groups of near-duplicate texts): `seeded_eigsh` seeds them;
* UMAP's approximate neighbour search, and BLAS sums whose order depends on the thread count: the
  neighbour graph is exact (`exact_cosine_knn`), with single-threaded BLAS in fixed-shape chunks;
* fast_hdbscan's parallel Boruvka shares bounds between threads: it runs on one numba thread.
A pool larger than the fitting sample has the sample's clusters assigned to its other rows by their exact
nearest sampled neighbours (`assign_by_neighbours`), deterministic by construction.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

NEIGHBOURS = 15  # BERTopic's UMAP n_neighbors, and the votes a row outside the fitting sample gets


def exact_cosine_knn(queries: np.ndarray, k: int, base: np.ndarray | None = None, chunk: int = 1024):
    """(indices, cosine distances) of each query's k nearest rows of `base` (default: the queries themselves,
    each row first among its own duplicates), ordered by distance, ties by row index."""
    x = _unit(queries)
    same = base is None
    y = x if same else _unit(base)
    k = min(k, len(y))
    indices = np.empty((len(x), k), dtype=np.int64)
    distances = np.empty((len(x), k), dtype=np.float32)
    yt = np.ascontiguousarray(y.T)

    def block(start: int) -> None:
        stop = min(start + chunk, len(x))
        similarity = x[start:stop] @ yt
        if same:
            rows = np.arange(stop - start)
            similarity[rows, start + rows] = 2.0  # distance -1: each row is its own nearest
        _k_nearest(similarity, k, indices[start:stop], distances[start:stop])

    with threadpool_limits(1), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(block, range(0, len(x), chunk)))  # chunks run anywhere; each one's sums are fixed
    return indices, distances


@njit(cache=True, nogil=True)
def _k_nearest(similarity: np.ndarray, k: int, indices: np.ndarray, distances: np.ndarray) -> None:
    """Per row, the k columns of least cosine distance (1 - similarity, in float32), ordered by distance,
    ties by column. One pass keeps a sorted list of k: a rows x columns argpartition allocated 400 MB of
    int64 per chunk and took 3x the matrix product."""
    one = np.float32(1.0)
    for row in range(similarity.shape[0]):
        near = np.full(k, np.inf, dtype=np.float32)
        which = np.full(k, -1, dtype=np.int64)
        for column in range(similarity.shape[1]):
            distance = one - similarity[row, column]
            if distance < near[k - 1]:  # a later column never displaces an equal, earlier one
                slot = k - 1
                while slot > 0 and near[slot - 1] > distance:
                    near[slot], which[slot] = near[slot - 1], which[slot - 1]
                    slot -= 1
                near[slot], which[slot] = distance, column
        indices[row] = which
        distances[row] = np.maximum(near, np.float32(0.0))


def _unit(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@contextlib.contextmanager
def seeded_eigsh(seed: int):
    """ARPACK (scipy's `eigsh`) with seeded restart vectors, inside UMAP's spectral layout."""
    import sklearn.manifold._spectral_embedding as spectral
    from scipy.sparse import linalg

    originals = linalg.eigsh, spectral.eigsh

    def seeded(fn):
        if "rng" not in inspect.signature(fn).parameters:
            return fn  # scipy < 1.15 has no generator to seed
        return functools.wraps(fn)(lambda *args, **kwargs: fn(*args, **{"rng": seed, **kwargs}))

    linalg.eigsh, spectral.eigsh = seeded(originals[0]), seeded(originals[1])
    try:
        yield
    finally:
        linalg.eigsh, spectral.eigsh = originals


class SeededUMAP(BaseEstimator):
    """UMAP on the exact cosine neighbour graph, seeded throughout (its layout, its epochs, ARPACK)."""

    def __init__(self, n_neighbors: int = NEIGHBOURS, n_components: int = 5, min_dist: float = 0.0,
                 n_epochs: int | None = 50, random_state: int = 0):
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.random_state = random_state

    def fit(self, vectors: np.ndarray, y=None) -> SeededUMAP:
        self.embedding_ = self.fit_transform(vectors)
        return self

    def fit_transform(self, vectors: np.ndarray, y=None) -> np.ndarray:
        from umap import UMAP

        neighbours = min(self.n_neighbors, len(vectors) - 1)
        indices, distances = exact_cosine_knn(vectors, neighbours)
        umap = UMAP(
            n_neighbors=neighbours, n_components=self.n_components, min_dist=self.min_dist,
            metric="cosine", n_epochs=self.n_epochs, random_state=self.random_state,
            precomputed_knn=(indices, distances, None),
        )
        with warnings.catch_warnings(), seeded_eigsh(self.random_state), threadpool_limits(1):
            # both are the expected consequences of seeding and of our graph
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
            return umap.fit_transform(vectors)


class SingleThreadPCA(BaseEstimator):
    """scikit-learn's PCA with one BLAS thread, so its output does not depend on the machine's core count."""

    def __init__(self, n_components: int = 50, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, vectors: np.ndarray, y=None) -> SingleThreadPCA:
        from sklearn.decomposition import PCA

        with threadpool_limits(1):
            self.pca_ = PCA(min(self.n_components, *vectors.shape),
                            random_state=self.random_state).fit(vectors)
        return self

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        with threadpool_limits(1):
            return self.pca_.transform(vectors)

    def fit_transform(self, vectors: np.ndarray, y=None) -> np.ndarray:
        return self.fit(vectors).transform(vectors)


class OneThreadHDBSCAN(BaseEstimator):
    """fast_hdbscan on one numba thread (its parallel Boruvka depends on the thread count); on 2 cores one
    thread was also the fastest: 11 s on the shared pool's 75,636 instructions."""

    def __init__(self, min_cluster_size: int = 30):
        self.min_cluster_size = min_cluster_size

    def fit_predict(self, vectors: np.ndarray, y=None) -> np.ndarray:
        import numba
        from fast_hdbscan import HDBSCAN

        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return HDBSCAN(min_cluster_size=self.min_cluster_size, reproducible=True).fit_predict(vectors)
        finally:
            numba.set_num_threads(threads)


def default_reducer(seed: int = 0, pca_dims: int = 50, umap_epochs: int | None = 50):
    """PCA to `pca_dims`, then BERTopic's UMAP (15 neighbours, 5 components, min_dist 0, cosine).

    The PCA step makes the neighbour search about 3x faster on 256-d vectors; 50 optimisation epochs
    instead of UMAP's 200 make it 2.5x faster again and gave as pure clusters on the shared pool.
    `umap_epochs=None` restores UMAP's own schedule (full fidelity).
    """
    from sklearn.pipeline import make_pipeline

    umap = SeededUMAP(n_epochs=umap_epochs, random_state=seed)
    return make_pipeline(SingleThreadPCA(pca_dims, random_state=seed), umap) if pca_dims else umap


def assignment_space(reducer, vectors: np.ndarray) -> np.ndarray:
    """Where rows outside the fitting sample meet their sampled neighbours: a fitted pipeline's steps before
    UMAP (PCA, for the default), which UMAP cannot extend to new rows deterministically; else the vectors."""
    steps = getattr(reducer, "steps", None)
    if steps and len(steps) > 1:
        return reducer[:-1].transform(vectors)
    return vectors


def assign_by_neighbours(sample_space: np.ndarray, sample_labels: np.ndarray, others: np.ndarray,
                         k: int = NEIGHBOURS, block: int = 50_000) -> np.ndarray:
    """Labels for rows outside the sample: the majority label of their k nearest sampled rows (noise, -1,
    included; ties go to the nearer neighbour), or noise when even the nearest sampled row lies farther
    than 99% of the sampled rows lie from their own nearest neighbour."""
    _, within = exact_cosine_knn(sample_space, 2)
    limit = float(np.percentile(within[:, -1], 99))
    labels = np.empty(len(others), dtype=np.int64)
    for start in range(0, len(others), block):
        indices, distances = exact_cosine_knn(others[start : start + block], k, base=sample_space)
        weight = 1.0 + (k - np.arange(indices.shape[1])) / (k * (k + 1.0))  # counts first, then nearness
        chosen = _weighted_majority(np.ascontiguousarray(sample_labels[indices]), weight)
        chosen[distances[:, 0] > limit] = -1
        labels[start : start + block] = chosen
    return labels


@njit(cache=True)
def _weighted_majority(votes: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per row, the label whose votes weigh most (ties: the smaller label), summed in neighbour order. A
    row's k votes are compared with each other, not tallied into a rows x labels table (GBs at 1M rows)."""
    chosen = np.empty(votes.shape[0], dtype=np.int64)
    for row in range(votes.shape[0]):
        best_label, best_total = 0, -1.0
        for i in range(votes.shape[1]):
            label = votes[row, i]
            total = 0.0
            for j in range(votes.shape[1]):
                if votes[row, j] == label:
                    total += weight[j]
            if total > best_total or (total == best_total and label < best_label):
                best_label, best_total = label, total
        chosen[row] = best_label
    return chosen
