"""Meso types: the offline spaCy tagger, InsTag normalisation, reply parsing, and the selector on real rows."""

from __future__ import annotations

import pytest

from hf_divsft import TypeSelector, load_pool
from hf_divsft.config import PAPER_LEVELS
from hf_divsft.strategies import MesoTypes, TagNormalizer
from hf_divsft.strategies.meso import rule_key
from hf_divsft.tagging import SpacyTagger, TagParseError, parse_tags

SIZE = 300


def test_spacy_tagger_finds_verb_object_pairs_and_noun_heads():
    tags = SpacyTagger().tag_batch(["Write a short poem about the sea.", "Translate the sentence into German."])
    assert tags[0][0] == "write poem" and "sea" in tags[0]
    assert tags[1][0] == "translate sentence"


def test_long_texts_are_clipped_to_head_and_tail():
    tagger = SpacyTagger(clip_words=5)
    text = "Summarize the article below. " + "filler word " * 200 + "Then list the main entities."
    clipped = tagger.clip(text + "<|endoftext|>")
    assert clipped.startswith("Summarize the article below.") and clipped.endswith("main entities.")
    assert len(clipped.split()) == 11


def test_rule_aggregation_merges_case_punctuation_and_inflection():
    assert rule_key("Code Generation!!") == rule_key("code-generating") == "code gener"
    assert rule_key("Math problems") == rule_key("math problem")


def test_normalizer_drops_long_tail_and_merges_similar_and_associated_tags():
    tag_lists = (
        [["solve math problem", "arithmetic"]] * 30
        + [["solving math problems", "arithmetic"]] * 10
        + [["translate text", "french"]] * 25
        + [["write poem"]] * 25
        + [["rare tag"]] * 2
    )
    vocabulary = TagNormalizer(alpha=5, similarity=0.9, association=0.95).fit(tag_lists)
    stem_keys = vocabulary.key_to_type
    assert rule_key("rare tag") not in stem_keys  # long tail
    assert stem_keys[rule_key("solve math problem")] == stem_keys[rule_key("solving math problems")]  # rule
    assert stem_keys[rule_key("translate text")] == stem_keys[rule_key("french")]  # always together
    assert stem_keys[rule_key("write poem")] != stem_keys[rule_key("translate text")]
    assert "write poem" in vocabulary.labels


# Torch's and OpenBLAS's kernels are chosen per CPU; these switch them as moving to another machine would.
OTHER_CPU_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                     "OPENBLAS_CORETYPE": "Haswell", "OMP_NUM_THREADS": "1"}
EMBED_TAGS = """
import sys, numpy as np
from hf_divsft.embedding import load_embedder
phrases = sys.argv[2].split(",")
np.save(sys.argv[1] + "-exact.npy", load_embedder("minilm", exact=True).encode(phrases))
np.save(sys.argv[1] + "-float32.npy", load_embedder("minilm").encode(phrases))
"""


def test_tag_phrases_embed_alike_whichever_cpu_kernels_run(tmp_path):
    """Meso's tag clusters hang on a cosine threshold, so the phrases' vectors must not depend on the CPU:
    float32 ones move in their last bits when the kernels change (checked, so the switch is real),
    the float64 ones the tag clustering uses agree to 1e-12."""
    import os
    import subprocess
    import sys

    import numpy as np

    phrases = "write poem,solve math problem,translate sentence,python function,summarize article,recipe"
    for name, extra in (("here", {}), ("other", OTHER_CPU_KERNELS)):
        subprocess.run([sys.executable, "-c", EMBED_TAGS, str(tmp_path / name), phrases],
                       env={**os.environ, **extra}, check=True, capture_output=True)
    here, other = ({kind: np.load(tmp_path / f"{name}-{kind}.npy") for kind in ("exact", "float32")}
                   for name in ("here", "other"))
    assert here["exact"].dtype == np.float64
    assert np.abs(here["float32"] - other["float32"]).max() > 1e-9
    assert np.abs(here["exact"] - other["exact"]).max() < 1e-12


@pytest.mark.parametrize(
    "reply, tags",
    [
        ('[{"tag": "Math", "explanation": "x"}, {"tag": "logic", "explanation": "y"}]', ["math", "logic"]),
        ('Sure! ```json\n[{"tag": "coding"}]\n``` Hope this helps.', ["coding"]),
        ('["summarization", "news"]', ["summarization", "news"]),
        ('[{"tag": "math", "explanation": "unterminated}, {"tag": "algebra"', ["math", "algebra"]),
    ],
)
def test_parse_tags_reads_json_and_survives_broken_json(reply, tags):
    assert parse_tags(reply, max_tags=5) == tags


def test_parse_tags_rejects_replies_without_tags():
    with pytest.raises(TagParseError):
        parse_tags("I am a helpful assistant and I like questions.", max_tags=5)


@pytest.fixture(scope="module", params=["instruction", "response"])
def meso_typed(request, pool_file):
    return MesoTypes(request.param, normalizer=TagNormalizer(alpha=5)).add_types(load_pool(str(pool_file)))


def test_meso_types_drive_the_shared_selector(meso_typed):
    selector = TypeSelector(meso_typed["types"], seed=0)
    assert selector.num_types > 50
    chosen = [selector.select(level, SIZE) for level in PAPER_LEVELS]
    covered = [s.types_covered for s in chosen]
    assert covered == sorted(covered) and covered[0] == selector.k_min(SIZE)
    assert covered[-1] == selector.num_types
    for selection in chosen:
        assert len(set(selection.indices.tolist())) == SIZE
        assert selection.type_count_ratio is not None


def test_association_merges_are_fp_growths_rules(pool_file, monkeypatch):
    """The sparse co-occurrence count gives exactly the merges of mlxtend's FP-Growth and association rules
    (2-itemsets, support >= alpha rows, both directions at the confidence threshold), on real tags."""
    import numpy as np
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules, fpgrowth
    from scipy import sparse

    from hf_divsft.data import arrow_column
    from hf_divsft.tagging import TagColumn

    tags = arrow_column(TagColumn("instruction", SpacyTagger()).apply(load_pool(str(pool_file))),
                        "instruction_tags")
    normalizer = TagNormalizer(alpha=3, similarity=0.9, association=0.6)
    seen = {}
    merge = TagNormalizer._merge_associated

    def capture(self, kept, cluster, pair_rows, pair_keys):
        seen["inputs"], seen["merged"] = (kept, cluster, pair_rows, pair_keys), merge(self, kept, cluster,
                                                                                    pair_rows, pair_keys)
        return seen["merged"]

    monkeypatch.setattr(TagNormalizer, "_merge_associated", capture)
    normalizer.fit(tags)
    kept, cluster, pair_rows, pair_keys = seen["inputs"]
    items = sorted(set(cluster))
    column = dict(zip(kept.tolist(), (items.index(c) for c in cluster)))
    per_row: dict[int, set] = {}
    for row, key in zip(pair_rows.tolist(), pair_keys.tolist()):
        if key in column:
            per_row.setdefault(row, set()).add(column[key])
    rows = [sorted(r) for r in per_row.values() if len(r) > 1]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    onehot = sparse.csr_matrix((np.ones(indptr[-1], dtype=bool), np.concatenate(rows), indptr),
                               shape=(len(rows), len(items)))
    frequent = fpgrowth(pd.DataFrame.sparse.from_spmatrix(onehot, columns=items), min_support=3 / len(rows),
                        use_colnames=True, max_len=2)
    rules = association_rules(frequent, metric="confidence", min_threshold=0.6)
    one_way = {(next(iter(a)), next(iter(b))) for a, b in zip(rules["antecedents"], rules["consequents"])}
    both_ways = {frozenset(pair) for pair in one_way if pair[::-1] in one_way}
    assert both_ways, "the test needs some merges to compare"
    parent = {c: c for c in items}

    def find(c):
        while parent[c] != c:
            c = parent[c]
        return c

    for a, b in (tuple(pair) for pair in both_ways):
        parent[find(a)] = find(b)
    expected = {frozenset(c for c in items if find(c) == root) for root in {find(c) for c in items}}
    groups: dict[int, set] = {}
    for before, after in zip(cluster, seen["merged"]):
        groups.setdefault(after, set()).add(before)
    assert {frozenset(group) for group in groups.values()} == expected
