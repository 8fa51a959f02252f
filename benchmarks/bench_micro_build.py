"""Micro extraction + selection of 7 levels vs batched tokenization alone (issue: foundation).

On the whole shared pool, both components, in one run:
  ratio = (MicroTypes.add_types + TypeSelector + 7 x select) / tokenizer(texts) batched, same tokenizer.
Target: ratio <= 2.0 and peak RSS <= 4 GiB. Prints a table and writes benchmarks/results/micro_build.json.
"""

from __future__ import annotations

import argparse
import resource

import datasets
from common import POOL, RESULTS, save, timed
from transformers import AutoTokenizer

from hf_divsft import PAPER_LEVELS, MicroTypes, TypeSelector, load_pool, load_tokenizer
from hf_divsft.data import arrow_column
from hf_divsft.tokenization import _smollm2_tokenizer_dir

TARGET_RATIO, TARGET_RSS_GIB = 2.0, 4.0



def run_component(pool, component: str, size: int) -> dict:
    # the baseline as always measured: transformers' batched call, on the tokenizer micro reads
    tokenizer = AutoTokenizer.from_pretrained(str(_smollm2_tokenizer_dir()))
    texts = arrow_column(pool, component).to_pylist()
    _, baseline = timed(lambda: tokenizer(texts, add_special_tokens=False)["input_ids"])

    def extract_and_select():
        typed = MicroTypes(component).add_types(pool)
        selector = TypeSelector(arrow_column(typed, "types"), seed=0)
        return selector, [selector.select(level, size) for level in PAPER_LEVELS]

    (selector, selections), ours = timed(extract_and_select)
    return {
        "component": component,
        "rows": pool.num_rows,
        "types_total": selector.num_types,
        "tokenize_s": round(baseline, 2),
        "micro_build_s": round(ours, 2),
        "ratio": round(ours / baseline, 3),
        "types_covered": [s.types_covered for s in selections],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", default=str(POOL))
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--out", default=str(RESULTS / "micro_build.json"))
    args = parser.parse_args()

    datasets.disable_caching()  # measure the computation, not a cache hit from an earlier run
    datasets.disable_progress_bars()
    pool = load_pool(args.pool)
    load_tokenizer()  # one-off GGUF conversion is not part of either side
    rows = [run_component(pool, component, args.size) for component in ("instruction", "response")]
    total_ours = sum(r["micro_build_s"] for r in rows)
    total_base = sum(r["tokenize_s"] for r in rows)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    summary = {
        "ratio": round(total_ours / total_base, 3),
        "target_ratio": TARGET_RATIO,
        "peak_rss_gib": round(peak_gib, 2),
        "target_rss_gib": TARGET_RSS_GIB,
        "passes": total_ours / total_base <= TARGET_RATIO and peak_gib <= TARGET_RSS_GIB,
    }
    print(f"{'component':<12} {'rows':>7} {'types':>7} {'tokenize s':>11} {'micro+select s':>15} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['component']:<12} {r['rows']:>7} {r['types_total']:>7} {r['tokenize_s']:>11.2f} "
            f"{r['micro_build_s']:>15.2f} {r['ratio']:>6.2f}"
        )
    print(f"{'both':<12} {'':>7} {'':>7} {total_base:>11.2f} {total_ours:>15.2f} {summary['ratio']:>6.2f}")
    print(f"peak RSS {summary['peak_rss_gib']:.2f} GiB (target <= {TARGET_RSS_GIB}); "
          f"ratio target <= {TARGET_RATIO}: {'met' if summary['passes'] else 'NOT met'}")
    record = {
        "benchmark": "micro extraction + 7-level selection vs batched tokenization",
        "pool": args.pool,
        "size": args.size,
        "levels": list(PAPER_LEVELS),
        "components": rows,
        "summary": summary,
    }
    save(record, args.out, ("datasets", "transformers", "tokenizers"))


if __name__ == "__main__":
    main()
