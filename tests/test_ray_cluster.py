"""`--engine ray --ray-address` on a cluster shaped like `recipes/ray_clusters/aws.yaml`: a head that offers
no CPUs to tasks (the driver's memory is its own) and a worker node that runs the maps. Both nodes are real
Ray nodes on 127.0.0.1, started by Ray's own test cluster and stopped after the test."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from hf_divsft import BuildConfig, build

from .test_ray_engine import RAY_ENV, SMALL, ray


@pytest.fixture
def two_nodes(monkeypatch):
    from ray.cluster_utils import Cluster

    for name, value in RAY_ENV.items():
        monkeypatch.setenv(name, value)
    assert not ray.is_initialized()  # the engine must join the cluster, not an instance of this process
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a 107-byte limit
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": 1 << 29, "temp_dir": temp})
    cluster.add_node(num_cpus=2, object_store_memory=1 << 29)
    cluster.wait_for_nodes()
    yield cluster.address
    cluster.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.timeout(600)  # a task that cannot be placed waits forever: fail within minutes instead
def test_a_local_pool_is_read_by_the_driver_on_a_cpu_less_head_and_mapped_on_the_workers(two_nodes, pool_file,
                                                                                         tmp_path):
    local = build(BuildConfig(pool=str(pool_file), strategy="instruction-micro", out=str(tmp_path / "local"),
                              **SMALL))
    on_ray = build(BuildConfig(pool=str(pool_file), strategy="instruction-micro", out=str(tmp_path / "ray"),
                               engine="ray", ray_address=two_nodes, **SMALL))
    assert not ray.is_initialized()  # joined, then left; the cluster itself keeps running
    engine = on_ray["engine"]
    assert (engine["address"], engine["nodes"], engine["cpus"]) == (two_nodes, 2, 2)
    assert engine["parquet_files_read"] == engine["maps_reading_files"] == 0  # the driver sent the columns
    assert [level["ids_sha256"] for level in on_ray["levels"]] == [level["ids_sha256"] for level in local["levels"]]
