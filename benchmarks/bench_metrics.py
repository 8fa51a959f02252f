"""All six metrics on a 10,000-sample subset, both components, vs the `diversity` package (issue: metrics).

In one run, on the same texts:
  ours   = `measure_dataset` from raw text: tokenization, embeddings and all six metrics, both components.
  theirs = the `diversity` package's metrics that we share: `compression_ratio`, `ngram_diversity_score`
           and `homogenization_score(measure="bleu")` (self-BLEU homogenization).
`homogenization_score` scores all n(n-1) ordered pairs, one corpus BLEU per text: hours at n = 10,000.
It is timed on the first M texts for two values of M and extrapolated by n(n-1) / (M(M-1)); the record
says which figures are measured and which are extrapolated. It calls `evaluate.load("bleu")`, a Hub
module this offline machine cannot fetch, so a sacrebleu corpus BLEU with the same interface stands in.
Targets: ours <= 60 s and ours <= 0.25x theirs. Prints a table; writes benchmarks/results/metrics.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io

import datasets
from common import POOL, RESULTS, save, timed

from hf_divsft.config import MeasureConfig
from hf_divsft.data import load_pool
from hf_divsft.embedding import load_embedder
from hf_divsft.measure import measure_dataset
from hf_divsft.metrics import NGrams, compression_ratio, ngram_ratio, self_bleu
from hf_divsft.strategies import COMPONENTS as TEXT_COLUMNS
from hf_divsft.tokenization import load_tokenizer

TARGET_SECONDS, TARGET_RATIO = 60.0, 0.25
HOMOGENIZATION_SIZES = (50, 100)


class SacreBleuStandIn:
    """`evaluate.load("bleu")`'s `compute(predictions, references)` interface, offline, via sacrebleu."""

    def compute(self, predictions, references):
        import sacrebleu

        return {"bleu": sacrebleu.corpus_bleu(predictions, [[r[0] for r in references]]).score / 100}


def time_diversity(texts: list[str], size: int) -> dict:
    import diversity
    from diversity import homogenization

    homogenization.load = lambda name: SacreBleuStandIn()  # the Hub module is unreachable offline
    _, compression = timed(lambda: diversity.compression_ratio(texts))
    _, ngram = timed(lambda: diversity.ngram_diversity_score(texts, 4))
    pairs = {}
    for m in HOMOGENIZATION_SIZES:
        with contextlib.redirect_stdout(io.StringIO()):
            _, seconds = timed(lambda: diversity.homogenization_score(texts[:m], measure="bleu", verbose=False))
        pairs[m] = seconds
    largest = HOMOGENIZATION_SIZES[-1]
    extrapolated = pairs[largest] * size * (size - 1) / (largest * (largest - 1))
    def ours_shared():
        ngrams = NGrams.of(texts)
        return compression_ratio(texts), ngram_ratio(ngrams), self_bleu(ngrams)

    _, ours_shared_s = timed(ours_shared)
    return {
        "ours_shared_three_s": round(ours_shared_s, 3),
        "compression_s": round(compression, 3),
        "ngram_diversity_s": round(ngram, 3),
        "homogenization_measured_s": {str(m): round(s, 3) for m, s in pairs.items()},
        "homogenization_extrapolated_s": round(extrapolated, 1),
        "ours_self_bleu_same_texts_s": {str(m): round(timed(lambda: self_bleu(texts[:m]))[1], 4) for m in pairs},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", default=str(POOL))
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument("--out", default=str(RESULTS / "metrics.json"))
    args = parser.parse_args()

    datasets.disable_caching()  # time the computation, not a cache hit
    datasets.disable_progress_bars()
    subset = load_pool(args.pool).shuffle(seed=0).select(range(args.size)).flatten_indices()
    subset = subset.select_columns(["id", *TEXT_COLUMNS])
    config = MeasureConfig(num_proc=args.num_proc)
    _, load_s = timed(lambda: (load_tokenizer(config.tokenizer), load_embedder(config.embedder)))
    metrics, ours = timed(lambda: measure_dataset(subset, config, keep_in_memory=True))

    rows = {}
    for component in TEXT_COLUMNS:
        rows[component] = time_diversity(subset[component][:], args.size)
    measured = sum(r["compression_s"] + r["ngram_diversity_s"] for r in rows.values())
    ours_shared = sum(r["ours_shared_three_s"] for r in rows.values())
    theirs = measured + sum(r["homogenization_extrapolated_s"] for r in rows.values())
    summary = {
        "ours_all_six_s": round(ours, 2),
        "model_load_s": round(load_s, 2),
        "diversity_compression_ngram_measured_s": round(measured, 2),
        "diversity_with_homogenization_extrapolated_s": round(theirs, 1),
        "ours_shared_three_s": round(ours_shared, 2),
        "ratio_vs_measured_only": round(ours / measured, 3),
        "ratio_shared_three_vs_measured_two": round(ours_shared / measured, 3),
        "ratio_vs_all_shared": round(ours / theirs, 5),
        "target_seconds": TARGET_SECONDS,
        "target_ratio": TARGET_RATIO,
        "passes": ours <= TARGET_SECONDS and ours / theirs <= TARGET_RATIO,
    }
    print(f"ours: all six metrics, both components, {args.size} rows: {ours:.2f} s "
          f"(+ {load_s:.2f} s one-off model load)")
    print(f"{'component':<12} {'ours: 3 shared s':>16} {'compress s':>10} {'ngram s':>8} " + " ".join(
        f"{'homog@' + str(m) + ' s':>12}" for m in HOMOGENIZATION_SIZES) + f" {'homog@' + str(args.size) + ' s (extrap.)':>26}")
    for component, r in rows.items():
        homog = " ".join(f"{r['homogenization_measured_s'][str(m)]:>12.2f}" for m in HOMOGENIZATION_SIZES)
        print(f"{component:<12} {r['ours_shared_three_s']:>16.2f} {r['compression_s']:>10.2f} {r['ngram_diversity_s']:>8.2f} {homog} "
              f"{r['homogenization_extrapolated_s']:>26.0f}")
    print(f"ratio ours / diversity (compression + n-gram, measured): {summary['ratio_vs_measured_only']:.3f}")
    print(f"ratio ours (compression + n-gram + exact Self-BLEU on all {args.size}) / diversity (compression + "
          f"n-gram): {summary['ratio_shared_three_vs_measured_two']:.3f}")
    print(f"ratio ours / diversity (all three shared, homogenization extrapolated): {summary['ratio_vs_all_shared']:.5f}")
    print(f"targets: <= {TARGET_SECONDS:.0f} s and <= {TARGET_RATIO}x: {'met' if summary['passes'] else 'NOT met'}")
    record = {
        "benchmark": "six metrics, both components, vs the diversity package's shared metrics",
        "pool": args.pool,
        "size": args.size,
        "settings": config.settings(),
        "diversity": rows,
        "values": {c: {name: m["value"] for name, m in metrics[c].items()} for c in TEXT_COLUMNS},
        "summary": summary,
        "notes": "homogenization_score uses a sacrebleu stand-in for evaluate.load('bleu') (Hub-only); "
                 "its 10,000-text time is extrapolated from the measured sizes by n(n-1).",
    }
    save(record, args.out, ("datasets", "tokenizers", "model2vec", "diversity", "sacrebleu", "nltk"))


if __name__ == "__main__":
    main()
