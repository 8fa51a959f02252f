"""Builds on million-row multi-turn chat pools (issue: real pools), each measured in a fresh process and
cache.

* micro: `response-micro` + `instruction-micro` (7 levels, N=10,000, `--band-scale`) against loading the same
  pool and batch-tokenizing both components with the same tokenizer. Targets at 1M rows: ratio <= 1.5,
  peak RSS <= 6 GiB, Algorithm 1 + 7 levels of Algorithm 2 <= 60 s (per component).
* scaling: the micro builds at 75K, 250K and 1M rows; the exponent of time in rows <= 1.1.
* macro: `instruction-macro` with the static embedder at 1M rows: <= 20 min and <= 8 GiB peak RSS.
* macro sample fit: on the shared pool, the adjusted Rand index between instruction types fitted on the
  default 50,000-row sample (the rest assigned by neighbours) and types fitted on all rows.

Builds run with `--no-metrics`: the six metrics are `bench_metrics.py`'s subject, and their cost does not
grow with the pool (they read the selected rows only).

Pools come from `make_large_pool.py` into --pools (generated once, never committed). Prints a table and
writes benchmarks/results/large_pool.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from common import POOL, RESULTS, save
from make_large_pool import make_pool

ROWS = (75_636, 250_000, 1_000_000)
TARGETS = {"ratio": 1.5, "rss_gib": 6.0, "select_s": 60.0, "exponent": 1.1, "macro_s": 1200.0,
           "macro_rss_gib": 8.0}

# Each measurement runs in its own interpreter with an empty datasets cache, and reports its own peak RSS.
DRIVER = textwrap.dedent("""
    import json, resource, sys, time
    import datasets
    datasets.disable_progress_bars()
    job = json.loads(sys.argv[1])
    start = time.perf_counter()
    record = {}
    if job["kind"] == "agreement":
        import numpy as np
        from sklearn.metrics import adjusted_rand_score
        from hf_divsft.data import read_pool
        from hf_divsft.embedding import embedding_matrix
        from hf_divsft.strategies.macro import MacroTypes
        pool = read_pool(job["pool"]).rows
        labels = {}
        for name, sample in (("sample", job["sample"]), ("full", pool.num_rows)):
            macro = MacroTypes(job["component"], sample=sample)
            vectors = embedding_matrix(macro.embed.apply(pool), macro.embed.output_column)
            tick = time.perf_counter()
            labels[name] = macro.cluster(vectors)
            record[name] = {**macro.stats, "fit_s": round(time.perf_counter() - tick, 1)}
        both = (labels["sample"] >= 0) & (labels["full"] >= 0)
        record["ari_all_rows"] = adjusted_rand_score(labels["full"], labels["sample"])  # noise is one label
        record["ari_clustered_in_both"] = adjusted_rand_score(labels["full"][both], labels["sample"][both])
        record["clustered_in_both"] = int(both.sum())
    elif job["kind"] == "tokenize":
        from hf_divsft.data import arrow_column, read_pool
        from hf_divsft.tokenization import load_tokenizer
        from hf_divsft.arrays import text_blocks
        tokenizer = load_tokenizer()
        pool = read_pool(job["pool"]).rows
        for component in ("instruction", "response"):
            record[component + "_tokens"] = sum(len(ids)
                                                for block in text_blocks(arrow_column(pool, component))
                                                for ids in tokenizer.encode_batch(block))
    else:
        from hf_divsft import BuildConfig, TypeSelector, build
        from hf_divsft.data import arrow_column, read_pool
        from hf_divsft.strategies import Strategy
        config = BuildConfig(**job["config"])
        manifest = build(config)
        record["build_s"] = time.perf_counter() - start
        record["types_total"] = manifest["types_total"]
        record["typed_rows"] = manifest["typed_rows"]
        record["ids_sha256"] = [level["ids_sha256"] for level in manifest["levels"]]
    if job["kind"] == "build" and job.get("time_selector", True):
        typed = Strategy.parse(config.strategy).extractor(config).add_types(read_pool(config.pool).rows)
        tick = time.perf_counter()  # the selector alone, on the types the build cached
        selector = TypeSelector(arrow_column(typed, "types"), seed=config.seed)
        selections = [selector.select(level, config.size) for level in config.levels]
        record["select_s"] = time.perf_counter() - tick
        record["pairs"] = int(len(selector._pair_rows))
        record["types_covered"] = [s.types_covered for s in selections]
    record["wall_s"] = time.perf_counter() - start
    record["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(record))
""")


def measure(job: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        # Both caches: datasets' own, and ours (where maps over a user's folder go).
        env = {**os.environ, "HF_DATASETS_CACHE": f"{cache}/datasets", "HF_DIVSFT_CACHE": f"{cache}/divsft"}
        done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(job)], env=env, capture_output=True,
                              text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{job['kind']} failed:\n{done.stderr[-3000:]}")
    record = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return {**record, "bars_s": bar_seconds(done.stderr)}


# tqdm's line: `desc: 100%|███| 75636/75636 [00:04<00:00, ...]`, or `desc: 75636 rows [00:04, ...]`
BAR = re.compile(r"^\s*(?P<desc>.+?): +(?:\d+%\|[^|]*\| +)?\d+(?:/\d+)?(?: \w+)? +"
                 r"\[(?P<elapsed>\d+(?::\d+)+)[<,\]]")


def bar_seconds(stderr: str) -> dict[str, int]:
    """Each progress bar's elapsed seconds as it last showed them (tqdm's `[mm:ss<`), by description: where
    a build's time went."""
    seconds = {}
    for line in re.split(r"[\r\n]", stderr):
        if match := BAR.match(line):
            parts = [int(part) for part in match["elapsed"].split(":")]
            seconds[match["desc"]] = sum(part * 60**power for power, part in enumerate(reversed(parts)))
    return seconds


def micro_at(pool: Path, work: Path, rows: int, size: int) -> dict:
    base = measure({"kind": "tokenize", "pool": str(pool)})
    builds = {}
    for strategy in ("response-micro", "instruction-micro"):
        config = {"pool": str(pool), "strategy": strategy, "out": str(work / f"{strategy}-{rows}"),
                  "band_scale": True, "size": size, "metrics": False}
        builds[strategy] = measure({"kind": "build", "config": config})
    build_s = sum(b["build_s"] for b in builds.values())
    return {"rows": rows, "baseline_s": round(base["wall_s"], 1),
            "baseline_rss_gib": round(base["peak_rss_gib"], 2),
            "tokens": {k: v for k, v in base.items() if k.endswith("_tokens")},
            "builds": builds, "build_s": round(build_s, 1), "ratio": round(build_s / base["wall_s"], 3),
            "peak_rss_gib": round(max(b["peak_rss_gib"] for b in builds.values()), 2),
            "select_s": round(max(b["select_s"] for b in builds.values()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", type=Path, default=Path(tempfile.gettempdir()) / "divsft-large-pools")
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--size", type=int, default=10_000, help="N, rows per subset")
    parser.add_argument("--skip-macro", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true",
                        help="skip the shared pool's sample-vs-full ARI")
    parser.add_argument("--agreement-pool", type=Path, default=POOL)
    parser.add_argument("--agreement-sample", type=int, default=50_000, help="the default --macro-sample")
    parser.add_argument("--out", default=str(RESULTS / "large_pool.json"))
    args = parser.parse_args()
    args.pools.mkdir(parents=True, exist_ok=True)
    pools = {rows: args.pools / f"chat-{rows}" for rows in args.rows}
    for rows, path in pools.items():
        if not path.exists():
            make_pool(rows, path)
    work = Path(tempfile.mkdtemp(prefix="bench-builds-"))
    micro = [micro_at(pools[rows], work, rows, args.size) for rows in args.rows]
    exponent = float(np.polyfit(np.log([m["rows"] for m in micro]), np.log([m["build_s"] for m in micro]),
                                1)[0]) if len(micro) > 1 else None
    record = {"benchmark": "micro and macro builds on multi-turn chat pools", "targets": TARGETS,
              "micro": micro, "scaling_exponent": round(exponent, 3) if exponent is not None else None}
    print(f"{'rows':>9} {'load+tokenize s':>16} {'2 builds s':>11} {'ratio':>6} {'select s':>9} "
          f"{'peak GiB':>9}")
    for m in micro:
        print(f"{m['rows']:>9,} {m['baseline_s']:>16.1f} {m['build_s']:>11.1f} {m['ratio']:>6.2f} "
              f"{m['select_s']:>9.1f} {m['peak_rss_gib']:>9.2f}")
    print(f"time ~ rows^{record['scaling_exponent']} (target <= {TARGETS['exponent']})")
    packages = ("datasets", "tokenizers", "numba", "umap-learn", "fast_hdbscan")
    # saved after each section too: the whole run takes over an hour, and a stopped one keeps what it measured
    save({**record, "complete": False}, args.out, packages)
    if not args.skip_macro:
        largest = max(args.rows)
        config = {"pool": str(pools[largest]), "strategy": "instruction-macro", "out": str(work / "macro"),
                  "size": args.size, "metrics": False}
        macro = measure({"kind": "build", "config": config})
        record["macro"] = {"rows": largest,
                           **{k: round(v, 2) if isinstance(v, float) else v for k, v in macro.items()}}
        print(f"instruction-macro at {largest:,} rows: {macro['build_s']:.0f} s, "
              f"peak {macro['peak_rss_gib']:.2f} GiB "
              f"(targets <= {TARGETS['macro_s']:.0f} s, <= {TARGETS['macro_rss_gib']} GiB)")
        save({**record, "complete": False}, args.out, packages)
    if not args.skip_agreement:
        agreement = measure({"kind": "agreement", "pool": str(args.agreement_pool),
                             "component": "instruction", "sample": args.agreement_sample})
        record["macro_sample_agreement"] = {"pool": str(args.agreement_pool), "component": "instruction",
                                            "sample": args.agreement_sample, **agreement}
        print(f"shared pool, instruction types fitted on {args.agreement_sample:,} rows vs all: "
              f"ARI {agreement['ari_all_rows']:.3f} over all rows, "
              f"{agreement['ari_clustered_in_both']:.3f} over the {agreement['clustered_in_both']:,}"
              " rows clustered in both")
    save({**record, "complete": True}, args.out, packages)


if __name__ == "__main__":
    main()
