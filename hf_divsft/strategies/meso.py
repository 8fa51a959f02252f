"""Meso level: a sample's types are clusters of its intention tags (InsTag-style).

Tags come from a tagger (`hf_divsft.tagging`) and are normalised as InsTag does: rule aggregation
(lower-case, special characters to spaces, stemming), long-tail removal (tags seen in fewer than `alpha`
samples), semantic aggregation (embed the tag phrases, DBSCAN at a cosine-similarity threshold) and
association aggregation (FP-Growth: tags that nearly always co-occur are merged). Each resulting tag
cluster is one type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value

from ..arrays import distinct_pairs
from ..assets import DEFAULT_TAG_EMBEDDER
from ..columns import add_columns
from ..data import arrow_column
from ..embedding import load_embedder
from ..errors import DivsftError
from ..tagging import LLMTagger, SpacyTagger, TagColumn, make_tagger


def rule_key(tag: str, stem=None) -> str:
    """Rule aggregation: lower-case, anything but letters and digits to spaces, each word stemmed."""
    if stem is None:
        from nltk.stem import PorterStemmer

        stem = PorterStemmer().stem
    return " ".join(stem(word) for word in re.sub(r"[^a-z0-9]+", " ", tag.lower()).split())


@dataclass
class TagVocabulary:
    """The fitted mapping from a rule key to its type id, with a readable label per type."""

    key_to_type: dict[str, int]
    labels: list[str]

    def types(self, tags: list[str], stem) -> list[int]:
        return sorted({self.key_to_type[key] for key in (rule_key(t, stem) for t in tags) if key in self.key_to_type})


class TagTypes:
    """Batched map function: `<column>_tags` -> `types` through a fitted `TagVocabulary`."""

    def __init__(self, tag_column: str, vocabulary: TagVocabulary):
        self.tag_column = tag_column
        self.vocabulary = vocabulary

    def __call__(self, batch: dict) -> dict:
        from nltk.stem import PorterStemmer

        stem = PorterStemmer().stem
        return {"types": [self.vocabulary.types(tags, stem) for tags in batch[self.tag_column]]}


@dataclass
class TagNormalizer:
    """InsTag's normalisation, fitted on the tags of a whole pool.

    It works on integer codes: each distinct tag is stemmed once, and supports and co-occurrences are
    counted over (row, key) pairs with NumPy and SciPy, so a million-row pool costs no Python object per tag.
    """

    alpha: int = 20
    similarity: float = 0.85
    association: float = 0.95
    embedder: str = DEFAULT_TAG_EMBEDDER

    def fit(self, tags) -> TagVocabulary:
        """`tags`: one list of tags per row (an Arrow list column, or Python lists)."""
        from nltk.stem import PorterStemmer

        stem = PorterStemmer().stem
        rows, tag_codes, distinct_tags = _tag_pairs(tags)
        key_names, key_of_tag = np.unique([rule_key(tag, stem) for tag in distinct_tags], return_inverse=True)
        key_of_tag = key_of_tag.astype(np.int64)
        blank = np.flatnonzero(key_names == "")
        pair_rows, pair_keys = distinct_pairs(rows, key_of_tag[tag_codes])
        if len(blank):  # a tag of punctuation only has no key
            real = pair_keys != blank[0]
            pair_rows, pair_keys = pair_rows[real], pair_keys[real]
        support = np.bincount(pair_keys, minlength=len(key_names))
        kept = np.flatnonzero(support >= self.alpha)  # key_names are sorted, so keys stay in sorted order
        if not len(kept):
            raise DivsftError(f"no tag is seen in {self.alpha} or more samples; lower --tag-alpha")
        label_of = _most_common_surface(rows, tag_codes, key_of_tag, distinct_tags)
        keys = key_names[kept].tolist()
        cluster = self._semantic_clusters([label_of[k] for k in kept.tolist()])
        cluster = self._merge_associated(kept, cluster, pair_rows, pair_keys)
        dense = {c: i for i, c in enumerate(dict.fromkeys(cluster))}
        key_to_type = {key: dense[c] for key, c in zip(keys, cluster)}
        labels = [""] * len(dense)
        # the most common tag names it
        for index in sorted(range(len(keys)), key=lambda i: -support[kept[i]]):
            labels[key_to_type[keys[index]]] = labels[key_to_type[keys[index]]] or label_of[kept[index]]
        return TagVocabulary(key_to_type, labels)

    def _semantic_clusters(self, phrases: list[str]) -> list[int]:
        from sklearn.cluster import DBSCAN

        # float64 throughout: a float32 cosine can land on either side of the threshold on different CPUs
        vectors = np.asarray(load_embedder(self.embedder, exact=True).encode(phrases), dtype=np.float64)
        labels = DBSCAN(eps=1.0 - self.similarity, min_samples=1, metric="cosine").fit_predict(vectors)
        return labels.tolist()

    def _merge_associated(self, kept: np.ndarray, cluster: list[int], pair_rows, pair_keys) -> list[int]:
        """Union clusters A and B when both rules A -> B and B -> A hold with this confidence.

        These are FP-Growth's rules between 2-itemsets of clusters, over the rows that hold two or more kept
        clusters: support counts at least alpha, confidence support(AB) / support(A). With 2-itemsets they are
        pair co-occurrence counts, computed here as one sparse product.
        """
        from scipy import sparse

        column_of_key = np.full(int(pair_keys.max(initial=0)) + 1, -1, dtype=np.int64)
        items = np.unique(cluster)
        column_of_key[kept] = np.searchsorted(items, cluster)
        columns = column_of_key[pair_keys]
        rows, columns = distinct_pairs(pair_rows[columns >= 0], columns[columns >= 0])
        many = np.bincount(rows, minlength=int(rows.max(initial=-1)) + 1) > 1
        rows, columns = rows[many[rows]], columns[many[rows]]
        transactions = int(np.count_nonzero(many))
        if not transactions:
            return cluster
        onehot = sparse.csr_matrix((np.ones(len(rows)), (np.unique(rows, return_inverse=True)[1], columns)),
                                   shape=(transactions, len(items)))
        together = (onehot.T @ onehot).tocoo()
        count = np.asarray(onehot.sum(axis=0)).ravel()
        min_support = self.alpha / transactions
        parent = {c: c for c in items.tolist()}

        def find(c):
            while parent[c] != c:
                parent[c] = parent[parent[c]]
                c = parent[c]
            return c

        one_way = set()
        for a, b, ab in zip(together.row, together.col, together.data):
            # FP-Growth's float arithmetic: supports are fractions of the transactions
            if (a != b and ab / transactions >= min_support
                    and (ab / transactions) / (count[a] / transactions) >= self.association):
                one_way.add((int(a), int(b)))
        for a, b in one_way:
            if (b, a) in one_way:
                parent[find(int(items[a]))] = find(int(items[b]))
        return [find(c) for c in cluster]


def _tag_pairs(tags) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(row of each tag, its code, the distinct tags in order of first appearance) from a list column."""
    array = (tags if isinstance(tags, (pa.Array, pa.ChunkedArray))
             else pa.array(list(tags), pa.list_(pa.string())))
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    rows = np.asarray(pc.list_parent_indices(array), dtype=np.int64)
    encoded = pc.dictionary_encode(pc.list_flatten(array))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    return rows, np.asarray(encoded.indices, dtype=np.int64), encoded.dictionary.to_pylist()


def _most_common_surface(rows, tag_codes, key_of_tag, distinct_tags) -> dict[int, str]:
    """Per key, its most common spelling over the rows (ties: the one seen first)."""
    pair_rows, pair_tags = distinct_pairs(rows, tag_codes)  # a tag counts once per row
    counts = np.bincount(pair_tags, minlength=len(distinct_tags))
    order = np.lexsort((np.arange(len(distinct_tags)), -counts))  # dictionary codes follow first appearance
    label_of: dict[int, str] = {}
    for code in order.tolist():
        label_of.setdefault(int(key_of_tag[code]), distinct_tags[code])
    return label_of


@dataclass
class MesoTypes:
    """Type extractor for `{instruction,response}-meso`: tag, normalise, map tags to tag-cluster types."""

    component: str = "instruction"
    tagger: SpacyTagger | LLMTagger = field(default_factory=SpacyTagger)
    normalizer: TagNormalizer = field(default_factory=TagNormalizer)
    vocabulary: TagVocabulary | None = field(default=None, init=False, repr=False)  # set by `fit`

    @classmethod
    def from_config(cls, component: str, config) -> MesoTypes:
        options = {"model": config.tagger_model} if config.tagger != "spacy" else {}
        if config.tagger == "openai":
            options.update(base_url=config.base_url, concurrency=config.tagger_concurrency)
        normalizer = TagNormalizer(config.tag_alpha, config.tag_similarity, config.tag_association,
                                   config.tag_embedder)
        return cls(component, make_tagger(config.tagger, **options), normalizer)

    def check(self) -> None:
        self.tagger.check()
        load_embedder(self.normalizer.embedder, exact=True, option="--tag-embedder")

    def plan(self, rows: int) -> list[str]:
        n = self.normalizer
        return [f"tag the {self.component}s with {self.tagger.describe()['tagger']} ({rows:,} texts)",
                f"normalise the tags: drop those in fewer than {n.alpha} rows, merge spellings, "
                f"similar phrases (cosine >= {n.similarity}) and tags that imply each other "
                f"(confidence >= {n.association})",
                "give each row its tag clusters as types"]

    @property
    def tag(self) -> TagColumn:
        return TagColumn(self.component, self.tagger)

    def fit(self, ds: Dataset) -> TagTypes:
        column = self.tag.output_column
        self.vocabulary = self.normalizer.fit(arrow_column(ds, column))
        return TagTypes(column, self.vocabulary)

    def add_types(self, ds: Dataset, num_proc: int | None = None) -> Dataset:
        ds = self.tag.apply(ds, num_proc=num_proc)
        return add_columns(ds, self.fit(ds), reads=[self.tag.output_column], num_proc=num_proc,
                           features=Features({"types": List(Value("int32"))}), desc="Assigning meso types")

    def type_labels(self, typed: Dataset) -> dict[int, str]:
        """Each type is a cluster of tags: the first tag seen in it (set by `fit`)."""
        return dict(enumerate(self.vocabulary.labels))

    def describe(self) -> dict:
        n = self.normalizer
        return {
            "level": "meso",
            "component": self.component,
            **self.tagger.describe(),
            "alpha": n.alpha,
            "similarity": n.similarity,
            "association": n.association,
            "embedder": n.embedder,
        }
