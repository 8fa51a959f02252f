"""Macro extraction + 7-level selection vs BERTopic's own fit_transform, same embedding model and texts.

On a seeded 10,000-row sample of the shared pool, in one run:
  1. ours with MiniLM (embed, UMAP, HDBSCAN, TypeSelector, 7 x select) / BERTopic(MiniLM).fit_transform;
     target <= 1.0x (stretch 0.5x);
  2. the fast path (static model2vec distilled from the same MiniLM): time, and how closely its clusters
     agree with MiniLM's (adjusted Rand index);
  3. the offline meso tagger (spaCy): samples per second on this machine.
Prints a table and writes benchmarks/results/macro.json.
"""

from __future__ import annotations

import argparse

import datasets
import numpy as np
from common import POOL, RESULTS, save, timed

from hf_divsft import PAPER_LEVELS, TypeSelector, load_pool
from hf_divsft.embedding import load_embedder, minilm_dir
from hf_divsft.strategies import MacroTypes
from hf_divsft.tagging import SpacyTagger


def ours(sample, component: str, embedder: str, size: int):
    macro = MacroTypes(component, embedder=embedder)
    typed = macro.add_types(sample)
    selector = TypeSelector(typed["types"], seed=0)
    for level in PAPER_LEVELS:
        selector.select(level, size)
    return np.array([t[0] if t else -1 for t in typed["types"][:]]), macro.stats


def bertopic(texts: list[str]):
    from bertopic import BERTopic
    from sentence_transformers import SentenceTransformer

    model = BERTopic(embedding_model=SentenceTransformer(str(minilm_dir()), device="cpu"))
    topics, _ = model.fit_transform(texts)
    return np.asarray(topics)


def warm_up_jit() -> None:
    """UMAP and fast_hdbscan compile numba code on their first call in a process (about 30 s); whichever
    pipeline ran first would pay it, so both libraries are warmed up before anything is timed."""
    import hdbscan
    from fast_hdbscan import HDBSCAN
    from umap import UMAP

    points = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    reduced = UMAP(n_components=5, random_state=0, n_epochs=10).fit_transform(points)
    HDBSCAN(min_cluster_size=10).fit_predict(reduced)
    hdbscan.HDBSCAN(min_cluster_size=10).fit_predict(reduced)


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    from sklearn.metrics import adjusted_rand_score

    both = (a >= 0) & (b >= 0)
    return {"ari_all": round(adjusted_rand_score(a, b), 4), "ari_clustered": round(adjusted_rand_score(a[both], b[both]), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", default=str(POOL))
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2_000, help="N per level on the sample")
    parser.add_argument("--component", default="instruction")
    parser.add_argument("--out", default=str(RESULTS / "macro.json"))
    args = parser.parse_args()
    datasets.disable_caching()
    datasets.disable_progress_bars()
    sample = load_pool(args.pool).shuffle(seed=0).select(range(args.rows)).flatten_indices()
    texts = sample[args.component][:]
    load_embedder("minilm"), load_embedder("minilm-static")  # loading and one-off distillation not timed
    warm_up_jit()

    (minilm_labels, minilm_stats), ours_s = timed(lambda: ours(sample, args.component, "minilm", args.size))
    bertopic_labels, bertopic_s = timed(lambda: bertopic(texts))
    (static_labels, static_stats), static_s = timed(lambda: ours(sample, args.component, "minilm-static", args.size))
    tagger = SpacyTagger()
    tag_rows = sample.select(range(2000))
    tagger.tag_batch(["warm up the pipeline"])
    tagging = {}
    for column in ("instruction", "response"):
        _, seconds = timed(lambda: tagger.tag_batch(tag_rows[column][:]))
        tagging[column] = round(tag_rows.num_rows / seconds, 1)

    rows = [
        ("ours, MiniLM", ours_s, minilm_stats),
        ("BERTopic fit_transform, MiniLM", bertopic_s, {"clusters": int(bertopic_labels.max() + 1),
                                                       "noise_rows": int((bertopic_labels < 0).sum())}),
        ("ours, static (fast path)", static_s, static_stats),
    ]
    print(f"{'pipeline':<32} {'seconds':>8} {'vs BERTopic':>11} {'clusters':>8} {'noise':>6}")
    for name, seconds, stats in rows:
        print(f"{name:<32} {seconds:>8.1f} {seconds / bertopic_s:>10.2f}x {stats['clusters']:>8} {stats['noise_rows']:>6}")
    fast_vs_minilm = agreement(minilm_labels, static_labels)
    ours_vs_bertopic = agreement(minilm_labels, bertopic_labels)
    print(f"static vs MiniLM clusters: {fast_vs_minilm}; ours vs BERTopic clusters: {ours_vs_bertopic}")
    print(f"meso offline tagger (spaCy, 1 process): {tagging} samples/s")
    record = {
        "benchmark": "macro extraction + 7-level selection vs BERTopic.fit_transform",
        "rows": args.rows, "size": args.size, "component": args.component,
        "seconds": {name: round(seconds, 2) for name, seconds, _ in rows},
        "ratio_vs_bertopic": round(ours_s / bertopic_s, 3),
        "fast_path_ratio_vs_bertopic": round(static_s / bertopic_s, 3),
        "target_ratio": 1.0, "stretch_ratio": 0.5,
        "fast_vs_minilm": fast_vs_minilm, "ours_vs_bertopic": ours_vs_bertopic,
        "meso_spacy_samples_per_s": tagging,
    }
    save(record, args.out, ("datasets", "sentence-transformers", "model2vec", "umap-learn", "fast-hdbscan",
                            "bertopic", "spacy"))


if __name__ == "__main__":
    main()
