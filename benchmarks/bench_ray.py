"""The Ray engine's overhead (issue: past one machine): the same micro builds with `--engine local`, with
`--engine ray` (a local Ray instance on this machine's CPUs, started and stopped by the build), and with
`--engine ray --ray-address` joining an instance that is already running (as on a cluster, whose start is
not the build's), each in a fresh process and cache.

Per pool and strategy: the ratio of each Ray build's time to the local one (target <= 1.3), whether all
chose the same rows at every level (`ids_sha256`), and the seconds of the Ray reads and maps (their
progress bars: the part a cluster spreads). Pools: the shared pool, and with --pools-rows the chat pools
`make_large_pool.py` generates. Prints a table and writes benchmarks/results/ray_engine.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench_large_pool import measure
from common import POOL, RESULTS, save
from make_large_pool import make_pool

TARGET_RATIO = 1.3
STRATEGIES = ("response-micro", "instruction-micro")


def engines_on(pool: Path, work: Path, size: int, running: str) -> list[dict]:
    rows = []
    for strategy in STRATEGIES:
        runs = {}
        for name, engine in (("local", {"engine": "local"}), ("ray", {"engine": "ray"}),
                             ("ray_joined", {"engine": "ray", "ray_address": running})):
            out = work / f"{pool.name}-{strategy}-{name}"
            config = {"pool": str(pool), "strategy": strategy, "out": str(out), "band_scale": True,
                      "size": size, "metrics": False, **engine}
            runs[name] = measure({"kind": "build", "config": config, "time_selector": False})
        local = runs["local"]
        row = {"pool": str(pool), "strategy": strategy, "typed_rows": local["typed_rows"],
               "local_s": round(local["build_s"], 1), "local_rss_gib": round(local["peak_rss_gib"], 2)}
        for name in ("ray", "ray_joined"):
            run = runs[name]
            row |= {f"{name}_s": round(run["build_s"], 1),
                    f"{name}_ratio": round(run["build_s"] / local["build_s"], 3),
                    f"{name}_same_rows": run["ids_sha256"] == local["ids_sha256"],
                    f"{name}_driver_rss_gib": round(run["peak_rss_gib"], 2),
                    # the part a cluster spreads: the Ray reads and maps, by their progress bars
                    f"{name}_maps_s": sum(seconds for desc, seconds in run["bars_s"].items()
                                          if desc.endswith("(ray)"))}
        rows.append({**row, "bars_s": {name: run["bars_s"] for name, run in runs.items()}})
    return rows


@contextlib.contextmanager
def running_instance(cpus: int) -> Iterator[str]:
    """A local Ray instance on 127.0.0.1 started with Ray's own CLI, as a cluster's head is; its address."""
    ray_cli, temp, port = Path(sys.executable).with_name("ray"), tempfile.mkdtemp(prefix="ray-"), free_port()
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats",
                    f"--temp-dir={temp}"], check=True, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop"], check=False, capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    with running_instance(os.cpu_count()) as running:
        results = [row for pool in pools for row in engines_on(pool, work, args.size, running)]
    print(f"{'pool':>14} {'strategy':>18} {'local s':>8} {'ray s':>6} {'ratio':>6} {'joined s':>8} "
          f"{'ratio':>6} {'same rows':>9} {'ray maps s':>10}")
    for row in results:
        same = row["ray_same_rows"] and row["ray_joined_same_rows"]
        print(f"{Path(row['pool']).name:>14} {row['strategy']:>18} {row['local_s']:>8.1f} "
              f"{row['ray_s']:>6.1f} {row['ray_ratio']:>6.2f} {row['ray_joined_s']:>8.1f} "
              f"{row['ray_joined_ratio']:>6.2f} {same!s:>9} {row['ray_maps_s']:>10}")
    save({"benchmark": "Ray engine vs local engine, micro builds (7 levels, --band-scale, --no-metrics)",
          "target_ratio": TARGET_RATIO, "results": results}, args.out, ("datasets", "ray"))


if __name__ == "__main__":
    main()
