"""Macro types on real pool rows: embeddings, BERTopic-style clustering, swappable parts, the selector."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from hf_divsft import TypeSelector, load_pool
from hf_divsft.config import PAPER_LEVELS
from hf_divsft.embedding import load_embedder
from hf_divsft.strategies import MacroTypes

from .conftest import POOL_DIR

SIZE = 300


@pytest.fixture(scope="module")
def t0_rows():
    """4,000 real T0 instructions: their template (the middle of the id) is a ground truth for topics."""
    pool = load_pool(str(POOL_DIR))
    t0 = pool.filter(lambda batch: [s == "t0-50k" for s in batch["source"]], batched=True)
    return t0.shuffle(seed=0).select(range(4000))


@pytest.fixture(scope="module")
def macro_typed(t0_rows):
    macro = MacroTypes("instruction", min_cluster_size=10)
    return macro, macro.add_types(t0_rows)


def template_purity(templates: np.ndarray, labels: np.ndarray) -> float:
    """Row-weighted share of each template's clustered rows that sit in its most common cluster."""
    total = weighted = 0
    for template in np.unique(templates):
        labels_of = labels[(templates == template) & (labels >= 0)]
        if len(labels_of):
            total += len(labels_of)
            weighted += Counter(labels_of.tolist()).most_common(1)[0][1]
    return weighted / total


def test_static_embedder_agrees_with_minilm_on_similarity():
    texts = ["Translate this sentence into French.", "Render this sentence in French.", "Solve 3 + 4 * 2."]
    for name in ("minilm-static", "minilm"):
        vectors = load_embedder(name).encode(texts)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_t0_templates_fall_into_few_clusters(macro_typed, t0_rows):
    macro, typed = macro_typed
    labels = np.array([types[0] if types else -1 for types in typed["types"][:]])
    templates = np.array([row_id.split("/")[1] for row_id in t0_rows["id"][:]])
    purity = template_purity(templates, labels)
    shuffled = template_purity(templates, np.random.default_rng(0).permutation(labels))
    print(f"\nmacro on 4,000 T0 instructions: {macro.stats['clusters']} clusters, "
          f"{macro.stats['noise_rows']} noise rows, template purity {purity:.3f} (shuffled labels {shuffled:.3f})")
    assert macro.stats["clusters"] >= 20
    assert purity >= 0.45 and purity >= 2.5 * shuffled


def test_one_type_per_clustered_row_and_noise_dropped(macro_typed):
    macro, typed = macro_typed
    types = typed["types"][:]
    assert all(len(t) <= 1 for t in types)
    assert sum(1 for t in types if not t) == macro.stats["noise_rows"]
    assert "instruction_embedding" in typed.column_names  # cached feature column, reused by every level


def test_selector_gives_even_topic_subsets(macro_typed):
    _, typed = macro_typed
    selector = TypeSelector(typed["types"], seed=0)
    chosen = [selector.select(level, SIZE) for level in PAPER_LEVELS]
    covered = [s.types_covered for s in chosen]
    assert covered == sorted(covered) and covered[-1] == selector.num_types
    for selection in chosen:
        assert len(selection.indices) == SIZE == len(set(selection.indices.tolist()))
        counts = selection.type_counts
        available = selector.type_counts(selector.candidates(selection.k), selection.k)
        # One type per row: clusters with samples left differ by at most one; the others gave them all.
        left = counts < available
        if left.any():
            assert counts[left].max() - counts[left].min() <= 1
            assert (counts[~left] <= counts[left].max()).all()


def test_components_are_swappable_and_noise_can_be_a_type(t0_rows):
    rows = t0_rows.select(range(600))
    macro = MacroTypes("instruction", reducer=PCA(n_components=8, random_state=0),
                       clusterer=KMeans(n_clusters=6, n_init=3, random_state=0))
    types = macro.add_types(rows)["types"][:]
    assert sorted({t[0] for t in types}) == list(range(6))
    as_type = MacroTypes("instruction", min_cluster_size=10, noise="type").add_types(rows)["types"][:]
    assert all(len(t) == 1 for t in as_type)


def test_same_seed_same_clusters(t0_rows):
    rows = t0_rows.select(range(800))
    first, again = (MacroTypes("instruction", min_cluster_size=10, seed=3).add_types(rows) for _ in range(2))
    assert first["types"][:] == again["types"][:]


def test_a_sample_fit_assigns_every_other_row_and_is_reproducible_in_a_fresh_process(t0_rows, tmp_path):
    """Fitted on 1,500 of 4,000 rows, the others take the cluster of their nearest sampled rows, or noise;
    the labels agree with a fit on all rows (adjusted Rand index, printed) and are the same in a new process
    with other thread counts."""
    from sklearn.metrics import adjusted_rand_score

    typed = MacroTypes("instruction", min_cluster_size=10).embed.apply(t0_rows)
    vectors = np.stack(typed.with_format("numpy")["instruction_embedding"][:])
    np.save(tmp_path / "vectors.npy", vectors)
    sampled = MacroTypes("instruction", min_cluster_size=10, sample=1500)
    labels = sampled.cluster(vectors)
    full = MacroTypes("instruction", min_cluster_size=10, sample=len(vectors)).cluster(vectors)
    assert sampled.stats["fitted_rows"] == 1500 and sampled.stats["assigned_rows"] == 2500
    assert len(labels) == len(vectors) and labels.min() >= -1 and sampled.stats["clusters"] >= 20
    both = (labels >= 0) & (full >= 0)
    agreement = adjusted_rand_score(full[both], labels[both])
    print(f"\nsample fit (1,500 of 4,000) vs full fit: ARI {adjusted_rand_score(full, labels):.3f} "
          "over all rows, "
          f"{agreement:.3f} over the {both.sum()} rows both cluster")
    assert agreement > 0.5
    script = ("import sys, numpy as np; from hf_divsft.strategies import MacroTypes; "
              "v = np.load(sys.argv[1]); np.save(sys.argv[2], MacroTypes('instruction', min_cluster_size=10, "
              "sample=1500).cluster(v))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "vectors.npy"), str(tmp_path / "again.npy")],
                   check=True, env=env, timeout=600)
    assert np.array_equal(np.load(tmp_path / "again.npy"), labels)


@pytest.mark.parametrize("counted_rows", [200_000, 1_000])
def test_each_topic_is_named_by_words_of_its_own_texts(t0_rows, counted_rows):
    """Topics are T0 templates here; with `counted_rows` below the pool's size the words are counted on
    a seeded sample of rows plus each topic's first rows: every topic is still named, from its own texts."""
    templates, topics = np.unique([row_id.split("/")[1] for row_id in t0_rows["id"][:]], return_inverse=True)
    typed = t0_rows.add_column("types", [[int(topic)] for topic in topics])
    labels = MacroTypes("instruction").type_labels(typed, counted_rows=counted_rows)
    texts = np.array(t0_rows["instruction"][:], dtype=object)
    assert set(labels) == set(range(len(templates)))
    for topic, label in labels.items():
        words = label.split()
        own = " ".join(texts[topics == topic]).lower()
        assert 1 <= len(words) <= 4 and all(word in own for word in words), (templates[topic], label)
