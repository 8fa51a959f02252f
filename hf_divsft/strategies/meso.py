"""Meso level: a sample's types are clusters of its intention tags (InsTag-style).

Tags come from a tagger (`hf_divsft.tagging`) and are normalised as InsTag does: rule aggregation
(lower-case, special characters to spaces, stemming), long-tail removal (tags seen in fewer than `alpha`
samples), semantic aggregation (embed the tag phrases, DBSCAN at a cosine-similarity threshold) and
association aggregation (FP-Growth: tags that nearly always co-occur are merged). Each resulting tag
cluster is one type.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from datasets import Dataset, Features, List, Value

from ..data import arrow_column
from ..embedding import DEFAULT_EMBEDDER, load_embedder
from ..errors import DivsftError
from ..tagging import LLMTagger, SpacyTagger, TagColumn


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
    """InsTag's normalisation, fitted on the tags of a whole pool."""

    alpha: int = 20
    similarity: float = 0.85
    association: float = 0.95
    embedder: str = DEFAULT_EMBEDDER

    def fit(self, tag_lists: list[list[str]]) -> TagVocabulary:
        from nltk.stem import PorterStemmer

        stem = PorterStemmer().stem
        # Stem each distinct tag once: a pool repeats the same few thousand tags hundreds of times.
        key_of = {tag: rule_key(tag, stem) for tag in {tag for tags in tag_lists for tag in tags}}
        key_lists = [{key_of[tag] for tag in tags} - {""} for tags in tag_lists]
        surface = Counter((key_of[tag], tag) for tags in tag_lists for tag in set(tags))
        support = Counter(key for keys in key_lists for key in keys)
        keys = sorted(key for key, n in support.items() if n >= self.alpha)
        if not keys:
            raise DivsftError(f"no tag is seen in {self.alpha} or more samples; lower --tag-alpha")
        label_of = {}
        for (key, tag), _ in surface.most_common():
            label_of.setdefault(key, tag)
        cluster = self._semantic_clusters([label_of[key] for key in keys])
        cluster = self._merge_associated(keys, cluster, key_lists)
        dense = {c: i for i, c in enumerate(dict.fromkeys(cluster))}
        key_to_type = {key: dense[c] for key, c in zip(keys, cluster)}
        labels = [""] * len(dense)
        for key in sorted(keys, key=lambda k: -support[k]):  # the most common tag names its cluster
            labels[key_to_type[key]] = labels[key_to_type[key]] or label_of[key]
        return TagVocabulary(key_to_type, labels)

    def _semantic_clusters(self, phrases: list[str]) -> list[int]:
        from sklearn.cluster import DBSCAN

        vectors = load_embedder(self.embedder).encode(phrases)
        labels = DBSCAN(eps=1.0 - self.similarity, min_samples=1, metric="cosine").fit_predict(vectors)
        return labels.tolist()

    def _merge_associated(self, keys: list[str], cluster: list[int], key_lists) -> list[int]:
        """Union clusters A and B when both rules A -> B and B -> A hold with this confidence."""
        import pandas as pd
        from mlxtend.frequent_patterns import association_rules, fpgrowth
        from scipy import sparse

        index = {key: i for i, key in enumerate(keys)}
        items = sorted(set(cluster))
        column = {c: j for j, c in enumerate(items)}
        rows = [sorted({column[cluster[index[k]]] for k in keys_ if k in index}) for keys_ in key_lists]
        rows = [r for r in rows if len(r) > 1]
        if not rows:
            return cluster
        indptr = np.cumsum([0] + [len(r) for r in rows])
        onehot = sparse.csr_matrix(
            (np.ones(indptr[-1], dtype=bool), np.concatenate(rows), indptr), shape=(len(rows), len(items))
        )
        frame = pd.DataFrame.sparse.from_spmatrix(onehot, columns=items)
        frequent = fpgrowth(frame, min_support=self.alpha / len(rows), use_colnames=True, max_len=2)
        if frequent.empty or (frequent["itemsets"].map(len) == 2).sum() == 0:
            return cluster
        rules = association_rules(frequent, metric="confidence", min_threshold=self.association)
        parent = {c: c for c in items}

        def find(c):
            while parent[c] != c:
                parent[c] = parent[parent[c]]
                c = parent[c]
            return c

        one_way = {(next(iter(a)), next(iter(b))) for a, b in zip(rules["antecedents"], rules["consequents"])}
        for a, b in one_way:
            if (b, a) in one_way:
                parent[find(a)] = find(b)
        return [find(c) for c in cluster]


@dataclass
class MesoTypes:
    """Type extractor for `{instruction,response}-meso`: tag, normalise, map tags to tag-cluster types."""

    component: str = "instruction"
    tagger: SpacyTagger | LLMTagger = field(default_factory=SpacyTagger)
    normalizer: TagNormalizer = field(default_factory=TagNormalizer)
    vocabulary: TagVocabulary | None = field(default=None, init=False, repr=False)  # set by `fit`

    @property
    def tag(self) -> TagColumn:
        return TagColumn(self.component, self.tagger)

    def fit(self, ds: Dataset) -> TagTypes:
        column = self.tag.output_column
        self.vocabulary = self.normalizer.fit(arrow_column(ds, column).to_pylist())
        return TagTypes(column, self.vocabulary)

    def add_types(self, ds: Dataset, num_proc: int | None = None) -> Dataset:
        ds = self.tag.apply(ds, num_proc=num_proc)
        features = Features({**ds.features, "types": List(Value("int64"))})
        return ds.map(self.fit(ds), batched=True, num_proc=num_proc, features=features, desc="Assigning meso types")

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
