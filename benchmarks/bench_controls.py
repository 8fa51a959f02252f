"""What `--control` buys and costs (issue: experiments and controls), on the shared pool: response-micro
(N=10,000, the paper's 7 levels, `--band-scale`) built free, with `--control length` and with
`--control source`. Per level: the subset's mean response length (tokens) and the types it covers; the
length control's target is levels 0, 50 and 100 within 15% of each other in mean response length, and its
cost is the coverage it gives up against the free build. One process and cache: the builds share the
typed pool, so the time column is the selection and writing, not typing.

Prints a table and writes benchmarks/results/controls.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import POOL, RESULTS, save

from hf_divsft import BuildConfig, build

CONTROLS = {"free": [], "length": ["length"], "source": ["source"]}
TARGET_SPREAD = 1.15  # max / min mean response length over levels 0, 50 and 100, with --control length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=POOL)
    parser.add_argument("--strategy", default="response-micro")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--out", default=str(RESULTS / "controls.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-controls-"))
    builds = {}
    for name, control in CONTROLS.items():
        start = time.perf_counter()
        manifest = build(BuildConfig(pool=str(args.pool), strategy=args.strategy, size=args.size, band_scale=True,
                                     metrics=False, control=control, out=str(work / name)))
        builds[name] = {"seconds": round(time.perf_counter() - start, 1), "levels": [
            {"level": level["level"], "types_covered": level["types_covered"],
             "mean_response_tokens": level["confounds"]["length_tokens"]["response"]["mean"],
             "source_mix": level["confounds"].get("source_mix")} for level in manifest["levels"]]}
    spread = {}
    for name, record in builds.items():
        means = {level["level"]: level["mean_response_tokens"] for level in record["levels"]}
        spread[name] = round(max(means[p] for p in (0, 50, 100)) / min(means[p] for p in (0, 50, 100)), 3)
    print(f"{'level':>5} " + " ".join(f"{name + ' tokens':>14} {name + ' types':>13}" for name in CONTROLS)
          + f" {'length cost':>11}")
    for i, free in enumerate(builds["free"]["levels"]):
        cells = [f"{builds[name]['levels'][i]['mean_response_tokens']:>14.1f} "
                 f"{builds[name]['levels'][i]['types_covered']:>13,}" for name in CONTROLS]
        cost = 1 - builds["length"]["levels"][i]["types_covered"] / free["types_covered"]
        print(f"{free['level']:>5} " + " ".join(cells) + f" {cost:>10.0%}")
    print("max/min mean response tokens over levels 0, 50, 100: "
          + ", ".join(f"{name} {value:.2f}x" for name, value in spread.items())
          + f" (target with --control length <= {TARGET_SPREAD})")
    save({"benchmark": "--control length/source on the shared pool", "strategy": args.strategy, "size": args.size,
          "target_spread": TARGET_SPREAD, "spread_levels_0_50_100": spread, "builds": builds},
         args.out, ("datasets", "numba"))


if __name__ == "__main__":
    main()
