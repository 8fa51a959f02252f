"""Macro level: a sample's single type is the semantic cluster of one component (BERTopic-style).

Embed the text, reduce (UMAP), cluster (HDBSCAN); each of the three is a swappable component passed in,
as in BERTopic (defaults in `hf_divsft.clustering`, reproducible bit for bit). Embeddings are a cached
`.map()` column, so every level and every rerun reuses them. The reducer and clusterer are fitted on a
seeded sample of `sample` rows (all rows of a smaller pool); every other row takes the cluster of its
nearest sampled rows, or noise. HDBSCAN leaves outliers unclustered; `noise="drop"` (default) gives them no
type, so they are never selected (a topic-controlled subset should not be padded with off-topic
outliers), and `noise="type"` makes all outliers one more type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value

from ..arrays import take_rows
from ..assets import DEFAULT_EMBEDDER
from ..clustering import NEIGHBOURS, OneThreadHDBSCAN, assign_by_neighbours, assignment_space, default_reducer
from ..columns import add_columns
from ..data import arrow_column
from ..embedding import EmbedColumn, embedding_matrix, load_embedder
from ..errors import DivsftError

NOISE_CHOICES = ("drop", "type")


class ClusterTypes:
    """Batched Arrow map function (with indices): row i gets `[labels[i]]`, or `[]` for dropped noise.

    It needs only the row positions; it is given the narrow `id` column to read.
    """

    def __init__(self, labels: np.ndarray):
        self.labels = np.asarray(labels, dtype=np.int32)

    def __call__(self, batch: pa.Table, indices: list[int]) -> pa.Table:
        labels = self.labels[np.asarray(indices, dtype=np.int64)]
        offsets = np.concatenate([[0], np.cumsum(labels >= 0)]).astype(np.int32)
        types = pa.ListArray.from_arrays(pa.array(offsets), pa.array(labels[labels >= 0], type=pa.int32()))
        return pa.table({"types": types})


@dataclass
class MacroTypes:
    """Type extractor for `{instruction,response}-macro`."""

    component: str = "instruction"
    embedder: str = DEFAULT_EMBEDDER
    reducer: Any = None
    clusterer: Any = None
    min_cluster_size: int = 30
    umap_epochs: int | None = 50
    noise: str = "drop"
    seed: int = 0
    sample: int = 50_000
    stats: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.noise not in NOISE_CHOICES:
            raise DivsftError(f"--noise {self.noise}: choose one of {', '.join(NOISE_CHOICES)}")

    @classmethod
    def from_config(cls, component: str, config) -> MacroTypes:
        return cls(component, config.embedder, min_cluster_size=config.min_cluster_size,
                   umap_epochs=config.umap_epochs or None, noise=config.noise, seed=config.seed,
                   sample=config.macro_sample)

    def check(self) -> None:
        load_embedder(self.embedder)

    def plan(self, rows: int) -> list[str]:
        fitted = min(rows, self.sample)
        steps = [f"embed the {self.component}s with {self.embedder}",
                 f"fit {self.describe()['reducer']} and {self.describe()['clusterer']} on "
                 + (f"a seeded sample of {fitted:,} rows" if fitted < rows else f"all {rows:,} rows")]
        if fitted < rows:
            steps.append(f"assign the other {rows - fitted:,} rows the cluster of their {NEIGHBOURS} nearest "
                         "sampled rows (or noise)")
        return [*steps, f"give each row its cluster as its one type (noise: {self.noise})"]

    @property
    def embed(self) -> EmbedColumn:
        return EmbedColumn(self.component, self.embedder)

    def cluster(self, vectors: np.ndarray) -> np.ndarray:
        """Cluster labels per row; -1 marks noise, or a type of its own with `noise="type"`."""
        reducer = self.reducer if self.reducer is not None else default_reducer(self.seed, umap_epochs=self.umap_epochs)
        fitted = np.sort(np.random.default_rng(self.seed).permutation(len(vectors))[: self.sample])
        # the smallest cluster is counted in pool rows: a sample holds proportionally fewer of them
        smallest = max(2, round(self.min_cluster_size * len(fitted) / len(vectors)))
        clusterer = self.clusterer if self.clusterer is not None else OneThreadHDBSCAN(smallest)
        labels = np.full(len(vectors), -1, dtype=np.int64)
        labels[fitted] = np.asarray(clusterer.fit_predict(reducer.fit_transform(vectors[fitted])),
                                    dtype=np.int64)
        others = np.setdiff1d(np.arange(len(vectors)), fitted)
        if len(others):
            space = assignment_space(reducer, vectors[fitted])
            labels[others] = assign_by_neighbours(space, labels[fitted],
                                                  assignment_space(reducer, vectors[others]))
        self.stats = {"clusters": int(labels.max() + 1), "noise_rows": int((labels < 0).sum()),
                      "fitted_rows": len(fitted), "assigned_rows": len(others)}
        if self.noise == "type":
            labels = np.where(labels < 0, labels.max() + 1, labels)
        return labels

    def add_types(self, ds: Dataset, num_proc: int | None = None) -> Dataset:
        ds = self.embed.apply(ds, num_proc=num_proc)
        labels = self.cluster(embedding_matrix(ds, self.embed.output_column))
        return add_columns(ds, ClusterTypes(labels), reads=["id"], arrow=True, with_indices=True,
                           features=Features({"types": List(Value("int32"))}), desc="Assigning macro types")

    def type_labels(self, typed: Dataset, words: int = 4, vocabulary_rows: int = 20_000,
                    counted_rows: int = 200_000) -> dict[int, str]:
        """Each type is a topic: its top words by class-based TF-IDF, as BERTopic names its topics.

        The vocabulary comes from a seeded sample of the texts; the per-topic word counts from all of them
        (in a pool of more than `counted_rows`, from a seeded sample of that many plus each topic's first
        rows), a block at a time, kept sparse: no list of all texts and no dense topics x words matrix.
        """
        from sklearn.feature_extraction.text import CountVectorizer

        topics = _cluster_of_rows(arrow_column(typed, "types"))
        texts = arrow_column(typed, self.component)
        if not (topics >= 0).any():
            return {}
        order = np.random.default_rng(self.seed).permutation(len(texts))
        vectorizer = CountVectorizer(stop_words="english", max_features=50_000)
        vectorizer.fit(take_rows(texts, np.sort(order[:vocabulary_rows])).to_pylist())
        names = np.unique(topics[topics >= 0])
        counted = _counted(topics, order, counted_rows)
        counts = _topic_word_counts(texts, topics, counted, names, vectorizer)
        rows = np.repeat(np.arange(len(names)), np.diff(counts.indptr))
        total = np.asarray(counts.sum(axis=1)).ravel()
        idf = np.log(1 + total.mean() / np.maximum(np.asarray(counts.sum(axis=0)).ravel(), 1))
        scores = counts.data / np.maximum(total, 1)[rows] * idf[counts.indices]
        vocabulary = vectorizer.get_feature_names_out()
        labels = {}
        for row, name in enumerate(names):
            start, stop = counts.indptr[row], counts.indptr[row + 1]
            best = counts.indices[start:stop][np.argsort(-scores[start:stop], kind="stable")[:words]]
            if len(best):  # a topic of stop words only has no name
                labels[int(name)] = " ".join(vocabulary[best])
        return labels

    def describe(self) -> dict:
        return {
            "level": "macro",
            "component": self.component,
            "embedder": self.embedder,
            "reducer": type(self.reducer).__name__ if self.reducer is not None
            else f"PCA(50) + UMAP(15, 5, cosine, n_epochs={self.umap_epochs or 'default'})",
            "clusterer": type(self.clusterer).__name__ if self.clusterer is not None
            else f"HDBSCAN(min_cluster_size={self.min_cluster_size})",
            "noise": self.noise,
            "sample": self.sample,
            **self.stats,
        }


def _counted(topics: np.ndarray, order: np.ndarray, counted_rows: int, per_topic: int = 20) -> np.ndarray:
    """The rows whose words are counted: all, or the first `counted_rows` of the seeded `order` and the
    first `per_topic` rows of every topic (so a small topic is named too), sorted."""
    if len(topics) <= counted_rows:
        return np.arange(len(topics))
    by_topic = np.argsort(topics, kind="stable")
    starts = np.searchsorted(topics[by_topic], topics[by_topic])
    firsts = by_topic[(np.arange(len(topics)) - starts < per_topic) & (topics[by_topic] >= 0)]
    return np.union1d(order[:counted_rows], firsts)


def _topic_word_counts(texts: pa.ChunkedArray, topics: np.ndarray, counted: np.ndarray, names: np.ndarray,
                       vectorizer, block: int = 1000, collapse_nnz: int = 1 << 22):
    """(topics x words) counts over the `counted` rows, as a CSR matrix. Each block's counts are kept as
    coordinates and summed into the total a few million at a time (one pass each, not one per block)."""
    from scipy import sparse

    shape = (len(names), len(vectorizer.vocabulary_))
    total, parts, held = sparse.csr_matrix(shape), [], 0
    for start in range(0, len(counted), block):
        positions = counted[start : start + block]
        positions = positions[topics[positions] >= 0]
        if not len(positions):
            continue
        onehot = sparse.csr_matrix((np.ones(len(positions)),
                                    (np.searchsorted(names, topics[positions]), np.arange(len(positions)))),
                                   shape=(len(names), len(positions)))
        parts.append((onehot @ vectorizer.transform(take_rows(texts, positions).to_pylist())).tocoo())
        held += parts[-1].nnz
        if held >= collapse_nnz:
            total, parts, held = _summed(total, parts, shape), [], 0
    return _summed(total, parts, shape)


def _summed(total, parts: list, shape: tuple[int, int]):
    from scipy import sparse

    total = total.tocoo()
    data = np.concatenate([total.data, *(part.data for part in parts)])
    rows = np.concatenate([total.row, *(part.row for part in parts)])
    cols = np.concatenate([total.col, *(part.col for part in parts)])
    summed = sparse.coo_matrix((data, (rows, cols)), shape=shape).tocsr()  # duplicates are summed
    summed.sort_indices()  # ties in a topic's scores go to the earlier word
    return summed


def _cluster_of_rows(types: pa.ChunkedArray) -> np.ndarray:
    """Each row's one macro type, or -1 for a row without one."""
    out = np.full(len(types), -1, dtype=np.int64)
    offset = 0
    for chunk in types.chunks:
        rows = np.asarray(pc.list_parent_indices(chunk), dtype=np.int64)
        out[offset + rows] = np.asarray(pc.list_flatten(chunk), dtype=np.int64)
        offset += len(chunk)
    return out
