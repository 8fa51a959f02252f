"""The Ray engine: the local engine's batch functions, run by Ray Data's `map_batches` on a local Ray
instance or a cluster.

The driver puts the columns a step reads into Ray's object store in blocks; Ray runs the batch function
on them as tasks (a task whose worker dies is retried on another, so a lost worker costs time, not rows)
and the driver streams the results back, in order, into the same kind of cached Arrow file a local map
writes. The fits and the selector then read that file on the driver, exactly as on the local engine.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features
from datasets.arrow_writer import ArrowWriter
from datasets.table import InMemoryTable, MemoryMappedTable
from tqdm.auto import tqdm

from ..artifacts import staged_file
from ..columns import cache_path, map_fingerprint
from ..errors import DivsftError

BLOCK_ROWS = 10_000  # rows per object-store block: Ray's unit of scheduling and of retry
ROW_INDEX = "__hf_divsft_row__"  # the row positions a map `with_indices` reads, sent with its block
CONNECT_TIMEOUT_S = 10
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    @classmethod
    @contextlib.contextmanager
    def connected(cls, address: str | None = None) -> Iterator[RayEngine]:
        """The engine on Ray: the instance already running in this process, the cluster at `address`, or
        a new local instance (on 127.0.0.1, all CPUs), which is shut down on exit."""
        if address is None:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local node binds 127.0.0.1
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray = _ray()
        started = not ray.is_initialized()
        if started:
            _start(ray, address)
        try:
            yield cls(address)
        finally:
            if started:
                ray.shutdown()

    def added_columns(self, inputs: Dataset, fn, *, features: Features, desc: str, batch_size: int = 1000,
                      with_indices: bool = False, keep_in_memory: bool = False,
                      num_proc: int | None = None) -> Dataset:
        """The columns `fn` computes from `inputs`' batches, cached by fingerprint like a local map.
        `num_proc` is the local engine's: Ray sizes its own pool of workers."""
        fingerprint = map_fingerprint(inputs, fn, features=features, with_indices=with_indices,
                                      batch_size=batch_size, engine=self.name)
        path = None if keep_in_memory else cache_path(inputs, fingerprint)
        if path is None:
            tables = self._mapped(inputs, fn, features, batch_size, with_indices, desc)
            table = pa.concat_tables(list(tables)) if inputs.num_rows else features.arrow_schema.empty_table()
            return Dataset(InMemoryTable(table), fingerprint=fingerprint)
        if not path.exists():
            with staged_file(path) as staging:
                writer = ArrowWriter(features=features, path=str(staging))
                for table in self._mapped(inputs, fn, features, batch_size, with_indices, desc):
                    writer.write_table(table)
                writer.finalize()
        return Dataset(MemoryMappedTable.from_file(str(path)), fingerprint=fingerprint)

    def _mapped(self, inputs: Dataset, fn, features: Features, batch_size: int, with_indices: bool,
                desc: str) -> Iterator[pa.Table]:
        ray = _ray()
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows come back in the order they were sent
        context.enable_progress_bars = False  # the bar below counts the rows that came back
        blocks = ray.data.from_arrow_refs([ray.put(block) for block in _blocks(inputs, with_indices)])
        options = {"fn": fn, "features": features, "arrow": inputs.format["type"] == "arrow",
                   "with_indices": with_indices}
        if getattr(fn, "holds_model", False):
            mapped = blocks.map_batches(ModelBatches, batch_format="pyarrow", batch_size=batch_size,
                                        fn_constructor_kwargs=options, **_actor_pool(ray))
        else:
            mapped = blocks.map_batches(apply_batch, batch_format="pyarrow", batch_size=batch_size,
                                        fn_kwargs=options)
        with tqdm(total=inputs.num_rows, desc=f"{desc} (ray)", unit=" rows") as bar:
            for table in mapped.iter_batches(batch_format="pyarrow", batch_size=None):
                bar.update(table.num_rows)
                yield table

    def describe(self) -> dict:
        """The engine and the cluster it ran on, for the manifest."""
        ray = _ray()
        resources = ray.cluster_resources()
        return {"name": self.name, "ray_version": ray.__version__, "address": self.address or "local",
                "nodes": sum(1 for node in ray.nodes() if node["Alive"]),
                "cpus": int(resources.get("CPU", 0)), "gpus": int(resources.get("GPU", 0))}


def apply_batch(batch: pa.Table, fn, features: Features, arrow: bool, with_indices: bool) -> pa.Table:
    """One Ray batch through a local-engine map function, given what `datasets.map` would give it."""
    args = []
    if with_indices:
        args.append(batch.column(ROW_INDEX).to_pylist())
        batch = batch.drop_columns([ROW_INDEX])
    out = fn(batch if arrow else batch.to_pydict(), *args)
    if isinstance(out, pa.Table):
        return out.select(list(features)).cast(features.arrow_schema)
    return pa.Table.from_pydict(features.encode_batch(out), schema=features.arrow_schema)


class ModelBatches:
    """A Ray actor's copy of a map function that loads a model (an embedder, a tagger): the actor keeps the
    model loaded from one batch to the next, where a task would load it again for every block."""

    def __init__(self, **options):
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        return apply_batch(batch, **self.options)


def _actor_pool(ray) -> dict:
    """One actor per GPU when the cluster has GPUs (each asks for one), else one per CPU."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus:
        return {"compute": ray.data.ActorPoolStrategy(size=gpus), "num_gpus": 1}
    return {"compute": ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus)), "num_cpus": 1}


def _blocks(inputs: Dataset, with_indices: bool) -> Iterator[pa.Table]:
    table = inputs.data.table
    for start in range(0, inputs.num_rows, BLOCK_ROWS):
        block = table.slice(start, BLOCK_ROWS)
        if with_indices:
            positions = np.arange(start, start + block.num_rows, dtype=np.int64)
            block = block.append_column(ROW_INDEX, pa.array(positions))
        yield block


def _start(ray, address: str | None) -> None:
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    if address and address != "auto":
        _check_reachable(address)  # ray.init would retry a dead address for minutes
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env} if env else None)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise _unreachable(address, error) from None


def _check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as error:
        raise _unreachable(address, error) from None


def _unreachable(address: str | None, error: Exception) -> DivsftError:
    if not address:
        return DivsftError(f"--engine ray: could not start a local Ray instance: {error}")
    return DivsftError(f"--engine ray: could not start or join the Ray cluster at {address}: {error}; "
                       "check --ray-address (host:port of the head node, or auto)")


def _ray():
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError:
        raise DivsftError("--engine ray needs Ray Data: pip install 'ray[data]' (make install does)") from None
    return ray
