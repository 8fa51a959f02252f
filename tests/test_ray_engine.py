"""`--engine ray`: Ray Data runs the per-row maps on a real local Ray instance (2 CPUs, 127.0.0.1) and the
build chooses exactly the rows the local engine chooses; a worker killed mid-map costs no rows."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from datasets import Dataset, Features, Value, load_from_disk

from hf_divsft import BuildConfig, build
from hf_divsft.columns import add_columns
from hf_divsft.config import PoolColumns
from hf_divsft.engines import using
from hf_divsft.errors import DivsftError
from hf_divsft.tokenization import TokenizeColumn

from .conftest import hub_env, push_to_mirror, read_manifest
from .test_chat_pools import conversations, write_jsonl

ray = pytest.importorskip("ray", reason="make install installs ray[data]")

SMALL = {"size": 200, "levels": [0, 50, 100], "band": (10, 100), "metrics": False}
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_instance():
    """One local instance for the module, bound to 127.0.0.1, writing nothing outside its temp folder."""
    saved = {name: os.environ.get(name) for name in RAY_ENV}
    os.environ.update(RAY_ENV)
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a 107-byte limit
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=1 << 30,
             _temp_dir=temp, log_to_driver=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
    for name, value in saved.items():
        os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


def test_an_unreachable_cluster_fails_in_one_line(tmp_path, pool_file):
    assert not ray.is_initialized()  # first in the module: the instance fixture has not started yet
    with pytest.raises(DivsftError, match="could not start or join the Ray cluster at 127.0.0.1:1"):
        build(BuildConfig(pool=str(pool_file), strategy="response-micro", engine="ray",
                          ray_address="127.0.0.1:1", out=str(tmp_path / "out"), **SMALL))
    assert not (tmp_path / "out").exists()


def both_engines(tmp_path: Path, **config) -> tuple[dict, dict]:
    manifests = {}
    for engine in ("local", "ray"):
        manifests[engine] = build(BuildConfig(**config, engine=engine, out=str(tmp_path / engine)))
    return manifests["local"], manifests["ray"]


def assert_same_levels(local: dict, on_ray: dict) -> None:
    assert local["engine"] == {"name": "local"}
    assert on_ray["engine"]["name"] == "ray" and on_ray["engine"]["nodes"] == 1 and on_ray["engine"]["cpus"] == 2
    assert on_ray["types_total"] == local["types_total"] > 0
    for mine, theirs in zip(local["levels"], on_ray["levels"], strict=True):
        assert theirs["ids_sha256"] == mine["ids_sha256"] and theirs["rows_sha256"] == mine["rows_sha256"]
        assert theirs["types_covered"] == mine["types_covered"]


@pytest.mark.parametrize("strategy", ["response-micro", "instruction-micro"])
def test_ray_chooses_the_local_engines_rows_for_both_micro_strategies(ray_instance, pool_file, tmp_path,
                                                                      strategy):
    local, on_ray = both_engines(tmp_path, pool=str(pool_file), strategy=strategy, **SMALL)
    assert_same_levels(local, on_ray)
    assert len({level["ids_sha256"] for level in on_ray["levels"]}) == 3  # the levels differ


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_ray_reads_a_chat_pool_the_same_way(ray_instance, pool_file, tmp_path, suffix):
    rows = conversations(pool_file)
    pool = tmp_path / f"chat{suffix}"
    Dataset.from_list(rows).to_parquet(str(pool)) if suffix == ".parquet" else write_jsonl(pool, rows)
    local, on_ray = both_engines(tmp_path, pool=str(pool), strategy="instruction-micro",
                                 **{**SMALL, "size": 150, "band": (5, 200)})
    assert_same_levels(local, on_ray)
    # a local file, in either format, is read by the driver (`datasets`), which sends the workers its columns
    assert on_ray["engine"]["parquet_files_read"] == on_ray["engine"]["maps_reading_files"] == 0
    subset = load_from_disk(str(tmp_path / "ray" / "instruction_micro_d100"))
    assert subset.num_rows == 150 and "messages" in subset.column_names


def hub_build(endpoint: str, tmp_path: Path, repo: str, engine: str, *options: str) -> dict:
    """The manifest of `divsft build` on Hub dataset `repo` (response-micro, small) with `--engine engine`, in
    a process of its own: huggingface_hub reads HF_ENDPOINT when imported, and Ray starts its own instance."""
    out = tmp_path / engine
    command = [Path(sys.executable).with_name("divsft"), "build", "--pool", repo, "--strategy",
               "response-micro", "--engine", engine, "--size", "200", "--levels", "0,50,100", "--band",
               "10,100", "--no-metrics", "--out", out, *options]
    result = subprocess.run(command, env={**hub_env(endpoint, tmp_path / "hf-home"), **RAY_ENV},
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_manifest(out)


def test_ray_reads_a_hub_pool_on_its_workers_and_builds_what_the_local_engine_builds(olah_hub, card_pool,
                                                                                      tmp_path):
    endpoint, mirrors = olah_hub
    repo = "testorg/ray-pool"
    shutil.copytree(card_pool, tmp_path / "pool")
    push_to_mirror(tmp_path / "pool", mirrors / "datasets" / repo)
    local, on_ray = (hub_build(endpoint, tmp_path, repo, engine) for engine in ("local", "ray"))
    assert on_ray["engine"]["parquet_files_read"] == 1 and on_ray["engine"]["maps_reading_files"] == 1
    assert on_ray["pool"] == local["pool"] == repo and on_ray["pool_fingerprint"] == local["pool_fingerprint"]
    for key in ("ids_sha256", "rows_sha256"):
        assert [level[key] for level in on_ray["levels"]] == [level[key] for level in local["levels"]]


@pytest.mark.parametrize(("change", "maps_reading_files"), [("no id column", 1), ("a blank row skipped", 0),
                                                            ("renamed columns", 0), ("an input column", 1)])
def test_maps_read_a_hub_pools_files_only_where_their_rows_and_columns_are_as_read(
        olah_hub, shared_pool, tmp_path, change, maps_reading_files):
    rows = shared_pool.select(range(2000)).remove_columns("id").to_list()
    columns, options = PoolColumns(), ["--skip-invalid"]
    if change == "a blank row skipped":
        rows[7]["response"] = "  "
    if change == "renamed columns":
        rows = [{"prompt": row["instruction"], "completion": row["response"]} for row in rows]
        columns = PoolColumns(instruction="prompt", response="completion")
        options += ["--instruction-column", "prompt", "--response-column", "completion"]
    if change == "an input column":  # appended to the instruction by a map that reads the files
        rows = [{**row, "input": row["source"] if index % 3 else " "} for index, row in enumerate(rows)]
    endpoint, mirrors = olah_hub
    repo = f"testorg/{change.replace(' ', '-')}"
    (tmp_path / "pool" / "data").mkdir(parents=True)
    # a card that names the files: without one, `datasets` could not resolve the repo through olah
    (tmp_path / "pool" / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                                 "  - split: train\n    path: data/train-*.parquet\n---\n")
    for part in range(2):  # two files: a map reads each in a task of its own, and the rows keep their order
        shard = Dataset.from_list(rows[part * 1000:(part + 1) * 1000])
        shard.to_parquet(str(tmp_path / "pool" / "data" / f"train-0000{part}-of-00002.parquet"))
    push_to_mirror(tmp_path / "pool", mirrors / "datasets" / repo)
    on_ray = hub_build(endpoint, tmp_path, repo, "ray", *options)
    Dataset.from_list(rows).to_parquet(str(tmp_path / "pool.parquet"))
    local = build(BuildConfig(pool=str(tmp_path / "pool.parquet"), strategy="response-micro", columns=columns,
                              skip_invalid=True, out=str(tmp_path / "local"), **SMALL))
    assert on_ray["skipped"] == local["skipped"] and on_ray["pool_fingerprint"] == local["pool_fingerprint"]
    for key in ("ids_sha256", "rows_sha256"):
        assert [level[key] for level in on_ray["levels"]] == [level[key] for level in local["levels"]]
    # a map whose rows were filtered, or whose columns were renamed, is sent its columns by the driver:
    # the files' rows would not line up with them (appending the input reads the files; tokenizing the
    # response, a column of the joined table then, does not)
    assert on_ray["engine"]["parquet_files_read"] == 2
    assert on_ray["engine"]["maps_reading_files"] == maps_reading_files


@pytest.mark.parametrize("strategy", ["instruction-macro", "response-meso"])
def test_embedding_and_tagging_run_in_actor_pools_and_choose_the_local_rows(ray_instance, pool_file, tmp_path,
                                                                           strategy):
    # macro: the same vectors give the same fit (seeded); meso: the same tags give the same vocabulary
    local, on_ray = both_engines(tmp_path, pool=str(pool_file), strategy=strategy,
                                 **{**SMALL, "size": 100})
    assert_same_levels(local, on_ray)


class RecordsCalls:
    """A map function that logs (pid, this object, calls it had served) per batch, to show who ran it."""

    def __init__(self, log: Path, holds_model: bool):
        self.log, self.holds_model, self.calls = log, holds_model, 0

    def __call__(self, batch):
        with self.log.open("a") as out:
            out.write(f"{os.getpid()} {id(self)} {self.calls}\n")
        self.calls += 1
        return {"doubled": [2 * value for value in batch["value"]]}


@pytest.mark.parametrize("holds_model", [False, True])
def test_a_map_that_holds_a_model_keeps_it_in_an_actor_between_blocks(ray_instance, tmp_path, holds_model):
    from hf_divsft.engines.ray import BLOCK_ROWS

    rows = Dataset.from_dict({"value": list(range(4 * BLOCK_ROWS))})
    log = tmp_path / "calls.log"
    with using("ray"):
        mapped = add_columns(rows, RecordsCalls(log, holds_model), reads=["value"], batch_size=BLOCK_ROWS,
                             features=Features({"doubled": Value("int64")}), desc="records calls",
                             keep_in_memory=True)
    assert mapped["doubled"] == [2 * value for value in range(4 * BLOCK_ROWS)]
    served_before = [int(line.split()[2]) for line in log.read_text().splitlines()]
    assert len(served_before) == 4
    # a task unpickles a fresh copy per block; an actor (2 at most here) serves several blocks with one copy
    assert (max(served_before) > 0) == holds_model


class DiesOnce:
    """A map function whose first call kills the Ray worker running it (marker: it happened once)."""

    def __init__(self, fn, marker: Path):
        self.fn, self.marker = fn, marker

    def __call__(self, batch):
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.fn(batch)


def test_a_worker_killed_mid_map_changes_nothing(ray_instance, shared_pool, tmp_path):
    rows = Dataset.from_dict(shared_pool.select(range(2500))[:]).select_columns(["id", "instruction"])
    tokenize = TokenizeColumn("instruction", "smollm2")
    features = Features({tokenize.output_column: tokenize.feature()})
    marker = tmp_path / "killed"
    expected = add_columns(rows, tokenize, reads=["instruction"], features=features, desc="local")
    with using("ray"):
        survived = add_columns(rows, DiesOnce(tokenize, marker), reads=["instruction"], features=features,
                               desc="dies once")
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a Ray worker died, not this process
    assert survived[tokenize.output_column] == expected[tokenize.output_column]
    assert survived["id"] == expected["id"]


class DiesAlways:
    """A map function that kills the Ray worker running it, every time: a crash that recurs."""

    def __call__(self, batch):
        os.kill(os.getpid(), signal.SIGKILL)


class EndpointDown:
    """A map function that fails as our own code does when, say, a tagger's endpoint stops answering."""

    def __call__(self, batch):
        raise DivsftError("http://127.0.0.1:9/v1 (model m): the chat request failed (Connection refused)")


@pytest.mark.parametrize(("fn", "error"), [
    (DiesAlways(), r"^dies \(ray\): WorkerCrashedError: The worker died unexpectedly while executing"),
    (EndpointDown(), r"^http://127.0.0.1:9/v1 \(model m\): the chat request failed \(Connection refused\)$")])
def test_a_map_that_cannot_finish_fails_in_one_line_and_writes_no_cache_file(ray_instance, tmp_path,
                                                                             monkeypatch, fn, error):
    # Ray Data retries a block whose worker died forever by default; ours gives up after RETRIES
    monkeypatch.setenv("HF_DIVSFT_CACHE", str(tmp_path / "cache"))
    Dataset.from_dict({"value": list(range(100))}).save_to_disk(str(tmp_path / "rows"))
    rows = load_from_disk(str(tmp_path / "rows"))  # a user's folder: the map's file would go to our cache
    with using("ray"), pytest.raises(DivsftError, match=error) as raised:
        add_columns(rows, fn, reads=["value"], features=Features({"doubled": Value("int64")}), desc="dies")
    assert "\n" not in str(raised.value)
    assert not list((tmp_path / "cache").rglob("*.arrow"))


def test_the_shipped_cluster_config_is_valid_for_ray_up():
    import json

    import jsonschema
    import yaml

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((Path(__file__).parents[1] / "recipes" / "ray_clusters" / "aws.yaml").read_text())
    jsonschema.validate(config, schema)  # the schema `ray up` checks a cluster file against
    assert set(config["available_node_types"]) >= {config["head_node_type"], "cpu_worker", "gpu_worker"}
