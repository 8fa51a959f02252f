"""The Ray engine: the local engine's batch functions, run by Ray Data's `map_batches` on a local Ray
instance or a cluster.

A Hub pool's Parquet files (the `hf://` files of one commit) are read by the workers, one task per file,
and streamed in file order into a cached Arrow file on the driver; a map over columns read that way,
unchanged, reads them from the files again on the workers, each node from its own copy. A local pool is
read by the driver (`datasets`), and any map over it, or over columns changed since they were read, is put
into Ray's object store in blocks by the driver: a local file's bytes come from the driver's node either
way, and reading them again in tasks of their own only added work. Ray runs the batch function as tasks
(a task whose worker dies is retried on another, so a lost worker costs time, not rows) and the driver
streams the results back, in order, into the same kind of cached Arrow file a local map writes. The fits
and the selector then read those files on the driver, exactly as on the local engine.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetInfo, Features
from datasets.arrow_writer import ArrowWriter
from datasets.fingerprint import Hasher
from datasets.table import ConcatenationTable, InMemoryTable, MemoryMappedTable, table_cast
from tqdm.auto import tqdm

from ..artifacts import staged_file
from ..assets import cache_dir
from ..columns import cache_path, map_fingerprint
from ..errors import DivsftError, last_raised

BLOCK_ROWS = 10_000  # rows per object-store block: Ray's unit of scheduling and of retry
RETRIES = 3  # times a block is run again after its worker died
ROW_INDEX = "__hf_divsft_row__"  # the row positions a map `with_indices` reads, sent with its block
CONNECT_TIMEOUT_S = 10
# The Hub's address and token go to the workers too: they read a Hub pool's files themselves.
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_TOKEN")
PROJECTIONS = {"select", "drop", "replace_schema_metadata"}  # table edits that keep a file's columns as read


class RayEngine:
    name = "ray"
    reads_shards = True  # `data.read_dataset` hands it a Hub pool's Parquet files to read

    def __init__(self, address: str | None = None):
        self.address = address
        self._shards: dict[str, ParquetShards] = {}  # the Arrow file a read of shards wrote -> the shards
        self._maps_reading_files = 0

    @classmethod
    @contextlib.contextmanager
    def connected(cls, address: str | None = None, while_starting: Callable[[], None] = lambda: None,
                  ) -> Iterator[RayEngine]:
        """The engine on Ray: the instance already running in this process, the cluster at `address`, or
        a new local instance (on 127.0.0.1, all CPUs), which is shut down on exit. `while_starting` runs
        in a thread while Ray starts and warms up (a few seconds, mostly waiting on its processes)."""
        if address is None:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local node binds 127.0.0.1
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray = _ray()
        started = not ray.is_initialized()
        with ThreadPoolExecutor(1) as meanwhile:
            waiting = meanwhile.submit(while_starting)
            if started:
                _start(ray, address)  # Ray's own start stays on this thread: it needs the main one
            try:
                _configure_data(ray)
                if started:
                    _warm_up(ray)
                waiting.result()
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
            _write(path, features, self._mapped(inputs, fn, features, batch_size, with_indices, desc))
        return Dataset(MemoryMappedTable.from_file(str(path)), fingerprint=fingerprint)

    def read_parquet(self, files: list[str], features: Features | None) -> Dataset:
        """The rows of Parquet `files` (`hf://` URLs of a Hub commit) as `datasets` would build them (cast to
        `features`, else to the first file's), read by the workers, one task per file, and streamed in file
        order into a cached Arrow file here."""
        ray = _ray()
        features = features or Features.from_arrow_schema(_first_schema(ray, files[0]))
        shards = ParquetShards(files, features)
        fingerprint = Hasher.hash(["parquet shards", shards.files, features])  # each URL names its commit
        path = cache_dir() / "maps" / f"shards-{fingerprint}.arrow"
        if not path.exists():
            rows = _map_batches(shards.listed(ray), read_shards, batch_size=1,
                                fn_kwargs={"schema": shards.schema()})
            _write(path, features, _streamed(rows, None, f"Reading {len(files)} Parquet file(s)"))
        self._shards[str(path)] = shards
        return Dataset(MemoryMappedTable.from_file(str(path)), info=DatasetInfo(features=features),
                       fingerprint=fingerprint)

    def _mapped(self, inputs: Dataset, fn, features: Features, batch_size: int, with_indices: bool,
                desc: str) -> Iterator[pa.Table]:
        ray = _ray()
        shards = None if with_indices else self._shards_of(inputs)
        options = {"fn": fn, "features": features, "arrow": inputs.format["type"] == "arrow",
                   "with_indices": with_indices, "batch_size": batch_size}
        if shards:  # a task per file, which reads the file's columns where it runs
            blocks, per_task, desc = shards.listed(ray), 1, f"{desc}, from the Parquet files"
            options["reads"] = shards.schema(inputs.column_names)
            self._maps_reading_files += 1
        else:
            blocks = ray.data.from_arrow_refs([ray.put(block) for block in _blocks(inputs, with_indices)])
            per_task = batch_size
        if getattr(fn, "holds_model", False):
            mapped = _map_batches(blocks, ModelBatches, batch_size=per_task, fn_constructor_kwargs=options,
                                  **_actor_pool(ray))
        else:
            mapped = _map_batches(blocks, apply_batches, batch_size=per_task, fn_kwargs=options)
        yield from _streamed(mapped, inputs.num_rows, desc)

    def _shards_of(self, inputs: Dataset) -> ParquetShards | None:
        """The Hub Parquet files `inputs` was read from, when its columns are theirs as read (selected or
        dropped, not renamed, sliced or filtered): the workers then read them there, and this process sends
        nothing."""
        table = inputs.data
        parts = [table] if not isinstance(table, ConcatenationTable) else (
            [block for block in table.blocks[0] if block.num_columns] if len(table.blocks) == 1 else [])
        if inputs._indices is not None or len(parts) != 1 or not isinstance(parts[0], MemoryMappedTable):
            return None
        shards = self._shards.get(parts[0].path)
        as_read = all(name in PROJECTIONS for name, *_ in parts[0].replays)
        return shards if shards and as_read and set(inputs.column_names) <= set(shards.features) else None

    def describe(self) -> dict:
        """The engine and the cluster it ran on, for the manifest."""
        ray = _ray()
        resources = ray.cluster_resources()
        return {"name": self.name, "ray_version": ray.__version__, "address": self.address or "local",
                "nodes": sum(1 for node in ray.nodes() if node["Alive"]),
                "cpus": int(resources.get("CPU", 0)), "gpus": int(resources.get("GPU", 0)),
                "parquet_files_read": sum(len(shards.files) for shards in self._shards.values()),
                "maps_reading_files": self._maps_reading_files}


class ParquetShards:
    """A Hub pool's Parquet files and the features `datasets` casts their rows to."""

    def __init__(self, files: list[str], features: Features):
        self.files, self.features = list(files), features

    def listed(self, ray):
        """The files as a Ray Dataset, one per block, in order: a map over it runs a task per file."""
        return ray.data.from_items([{"file": file} for file in self.files],
                                   override_num_blocks=len(self.files))

    def schema(self, columns: list[str] | None = None) -> pa.Schema:
        """The Arrow schema of their rows (or `columns` of them) as `datasets` casts them."""
        return Features({name: self.features[name] for name in columns or self.features}).arrow_schema


def read_shards(batch: pa.Table, schema: pa.Schema, rows: int = BLOCK_ROWS) -> Iterator[pa.Table]:
    """The rows of each Parquet file in `batch`, `rows` at a time, cast to `schema` as `datasets` does."""
    for file in batch.column("file").to_pylist():
        for records in pq.ParquetFile(_downloaded(file)).iter_batches(rows, columns=schema.names):
            yield table_cast(pa.Table.from_batches([records]), schema)


def _downloaded(file: str) -> str:
    """The local path of Hub `file`, downloaded whole into this node's Hub cache (the Hub's own client, so a
    second read, or a rerun, downloads nothing)."""
    from huggingface_hub import HfFileSystem, hf_hub_download

    where = HfFileSystem().resolve_path(file)
    return hf_hub_download(where.repo_id, where.path_in_repo, repo_type=where.repo_type,
                           revision=where.revision)


def _first_schema(ray, file: str) -> pa.Schema:
    return ray.get(ray.remote(lambda hub_file: pq.read_schema(_downloaded(hub_file))).remote(file))


def _map_batches(blocks, fn, **options):
    """`blocks.map_batches(fn)` on Arrow batches, where a block whose worker dies runs again `RETRIES` times,
    not forever (Ray Data's default), so a crash that recurs fails the build instead of looping."""
    retries = ({"max_restarts": RETRIES, "max_task_retries": RETRIES} if "compute" in options
               else {"max_retries": RETRIES})
    with warnings.catch_warnings():  # Ray 2.60 sets retries only this way; pyproject keeps Ray below 2.64
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return blocks.map_batches(fn, batch_format="pyarrow", **options, **retries)


def _streamed(mapped, rows: int | None, desc: str) -> Iterator[pa.Table]:
    """A Ray Dataset's blocks, in order, as they come back, counted by a progress bar."""
    ray = _ray()
    with tqdm(total=rows, desc=f"{desc} (ray)", unit=" rows") as bar:
        try:
            for table in mapped.iter_batches(batch_format="pyarrow", batch_size=None):
                bar.update(table.num_rows)
                yield table
        except ray.exceptions.RayError as error:
            raise _one_line(desc, error) from None


def _one_line(desc: str, error: BaseException) -> DivsftError:
    """A worker's failure as one line. Ray sends the batch function's exception back as traceback text
    only: its last `Name: message` line that is not Ray's own is what the function raised (our own errors
    are given as they read); without one, Ray gave up (a worker that died `RETRIES` times)."""
    raised = last_raised(str(error), skip="ray.")
    if raised is None:
        first = (str(error).strip().splitlines() or [""])[0]
        return DivsftError(f"{desc} (ray): {type(error).__name__}: {first}")
    name, message = raised
    return DivsftError(message if name.startswith("hf_divsft.") else f"{desc} (ray): {name}: {message}")


def _write(path, features: Features, tables: Iterator[pa.Table]) -> None:
    """Stream `tables` into the Arrow file `path`, which appears only once complete."""
    with staged_file(path) as staging:
        writer = ArrowWriter(features=features, path=str(staging))
        for table in tables:
            writer.write_table(table)
        writer.finalize()


def apply_batches(batch: pa.Table, batch_size: int, reads: pa.Schema | None = None,
                  **options) -> Iterator[pa.Table]:
    """`apply_batch` on one Ray batch, or, where the batch lists Parquet files (`reads` the columns to read),
    on their rows, `batch_size` at a time."""
    for table in [batch] if reads is None else read_shards(batch, reads, batch_size):
        yield apply_batch(table, **options)


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

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        yield from apply_batches(batch, **self.options)


def _actor_pool(ray) -> dict:
    """One actor per GPU when the cluster has GPUs (each asks for one), else one per CPU."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus:
        return {"compute": ray.data.ActorPoolStrategy(size=gpus), "num_gpus": 1}
    return {"compute": ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus)), "num_cpus": 1}


def _blocks(inputs: Dataset, with_indices: bool) -> Iterator[pa.Table]:
    """`inputs`' rows in blocks of `BLOCK_ROWS`, with their positions if the map reads them."""
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
                 logging_level=logging.WARNING, runtime_env={"env_vars": env} if env else None)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise _unreachable(address, error) from None


def _configure_data(ray) -> None:
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in the order they were sent
    context.enable_progress_bars = False  # our bars count the rows that came back
    # each of our pipelines has one operator that uses CPUs, so Ray Data's reserving a share of the cluster
    # for each operator only held CPUs back (on 2 CPUs, one task ran at a time for the first second)
    context.op_resource_reservation_enabled = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # two log lines a map; our bars say it


def _warm_up(ray) -> None:
    """Start, while the models load, what the first map would otherwise wait for: Ray Data's own actors,
    and one worker per CPU that has imported this module (seconds, on a small machine)."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    blocks = ray.data.range(cpus, override_num_blocks=cpus)
    blocks.map_batches(_unchanged, batch_format="pyarrow").materialize()


def _unchanged(batch):
    return batch


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
