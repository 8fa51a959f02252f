"""The Ray engine's overhead (issue: past one machine): the same micro builds with `--engine local` and
`--engine ray` (a local Ray instance on this machine's CPUs, started and stopped by each build), each in a
fresh process and cache.

Per pool and strategy: the ratio of the Ray build's time to the local one (target <= 1.3) and whether both
chose the same rows at every level (`ids_sha256`). Pools: the shared pool, and with --pools-rows the chat
pools `make_large_pool.py` generates. Prints a table and writes benchmarks/results/ray_engine.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench_large_pool import measure
from common import POOL, RESULTS, save
from make_large_pool import make_pool

TARGET_RATIO = 1.3
STRATEGIES = ("response-micro", "instruction-micro")


def engines_on(pool: Path, work: Path, size: int) -> list[dict]:
    rows = []
    for strategy in STRATEGIES:
        runs = {}
        for engine in ("local", "ray"):
            config = {"pool": str(pool), "strategy": strategy, "out": str(work / f"{pool.name}-{strategy}-{engine}"),
                      "band_scale": True, "size": size, "metrics": False, "engine": engine}
            runs[engine] = measure({"kind": "build", "config": config, "time_selector": False})
        rows.append({"pool": str(pool), "strategy": strategy, "typed_rows": runs["local"]["typed_rows"],
                     "local_s": round(runs["local"]["build_s"], 1), "ray_s": round(runs["ray"]["build_s"], 1),
                     "ratio": round(runs["ray"]["build_s"] / runs["local"]["build_s"], 3),
                     "same_rows": runs["ray"]["ids_sha256"] == runs["local"]["ids_sha256"],
                     "local_rss_gib": round(runs["local"]["peak_rss_gib"], 2),
                     "ray_driver_rss_gib": round(runs["ray"]["peak_rss_gib"], 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=POOL)
    parser.add_argument("--pools", type=Path, default=Path(tempfile.gettempdir()) / "divsft-large-pools")
    parser.add_argument("--pools-rows", type=int, nargs="*", default=[], help="also these generated pools")
    parser.add_argument("--size", type=int, default=10_000, help="N, rows per subset")
    parser.add_argument("--out", default=str(RESULTS / "ray_engine.json"))
    args = parser.parse_args()
    os.environ.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"})  # nothing left in ~/.ray
    pools = [args.pool]
    for rows in args.pools_rows:
        pools.append(args.pools / f"chat-{rows}")
        if not pools[-1].exists():
            make_pool(rows, pools[-1])
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    results = [row for pool in pools for row in engines_on(pool, work, args.size)]
    print(f"{'pool':>28} {'strategy':>18} {'local s':>8} {'ray s':>8} {'ratio':>6} {'same rows':>9}")
    for row in results:
        print(f"{Path(row['pool']).name:>28} {row['strategy']:>18} {row['local_s']:>8.1f} {row['ray_s']:>8.1f} "
              f"{row['ratio']:>6.2f} {row['same_rows']!s:>9}")
    save({"benchmark": "Ray engine vs local engine, micro builds (7 levels, --band-scale, --no-metrics)",
          "target_ratio": TARGET_RATIO, "results": results}, args.out, ("datasets", "ray"))


if __name__ == "__main__":
    main()
