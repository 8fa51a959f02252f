"""Make a large multi-turn chat pool from the shared pool, deterministically: `make_large_pool.py ROWS OUT`.

Each of the ROWS conversations joins 1 to 4 shared rows (seeded draws) into `messages` turns, user then
assistant; ids are `large-00000000`, ... and `source` is the first row's. OUT becomes a Hub-layout folder
(README + `data/train-*.parquet` shards of 100,000 rows), so `divsft build --pool OUT` reads it. The pool is
generated, never committed: it holds the shared pool's rows.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import POOL

SHARD_ROWS = 100_000
README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---
# large chat pool

{rows:,} multi-turn conversations of 1 to 4 rows of the shared open-sft-pool each (seed {seed}), made by
hf-divsft's `benchmarks/make_large_pool.py` for benchmarks.
"""


def shared_rows() -> pa.Table:
    from datasets import load_dataset

    return (load_dataset(str(POOL), split="train")
            .select_columns(["source", "instruction", "response"]).data.table)


def conversations(pool: pa.Table, first: int, rows: int, rng: np.random.Generator) -> pa.Table:
    """`rows` conversations with ids from `first`; each takes 1-4 shared rows as user/assistant turn pairs."""
    pairs = rng.integers(1, 5, rows)
    picks = rng.integers(0, pool.num_rows, int(pairs.sum()))
    user, assistant = pool.column("instruction").take(picks), pool.column("response").take(picks)
    contents = pa.concat_arrays([c.combine_chunks() for c in (user, assistant)])
    # u, a, u, a
    order = np.stack([np.arange(len(picks)), np.arange(len(picks)) + len(picks)], axis=1).ravel()
    roles = pa.array(np.tile(["user", "assistant"], len(picks)))
    turns = pa.StructArray.from_arrays([roles, contents.take(pa.array(order))], names=["role", "content"])
    offsets = np.concatenate([[0], np.cumsum(2 * pairs)]).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(pairs)[:-1]])
    ids = pa.array([f"large-{first + i:08d}" for i in range(rows)])
    return pa.table({"id": ids, "source": pool.column("source").take(picks[starts]),
                     "messages": pa.ListArray.from_arrays(pa.array(offsets), turns)})


def make_pool(rows: int, out: Path, seed: int = 0) -> Path:
    if out.exists():
        raise SystemExit(f"error: {out}: already exists; choose a new OUT")
    pool = shared_rows()
    rng = np.random.default_rng(seed)
    shards = -(-rows // SHARD_ROWS)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "data").mkdir(parents=True)
    for index in range(shards):
        first = index * SHARD_ROWS
        table = conversations(pool, first, min(SHARD_ROWS, rows - first), rng)
        pq.write_table(table, partial / "data" / f"train-{index:05d}-of-{shards:05d}.parquet")
    (partial / "README.md").write_text(README.format(rows=rows, seed=seed))
    partial.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", type=int, help="conversations to make")
    parser.add_argument("out", type=Path, help="a new folder (Hub layout)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote {make_pool(args.rows, args.out, args.seed)}")


if __name__ == "__main__":
    main()
