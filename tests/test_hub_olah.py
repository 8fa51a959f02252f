"""Published repos read back through the real `datasets` / `huggingface_hub` clients, with olah as the Hub.

olah serves the bare git repository that `divsft publish --hub-dir` writes, over the Hub's HTTP API on
127.0.0.1; every client runs in its own process with HF_ENDPOINT pointing there.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from datasets import load_from_disk

from .conftest import hub_env, run_divsft

REPO = "testorg/divsft-subsets"
CLIENT = """
import hashlib, json, sys
from datasets import load_dataset
from huggingface_hub import HfApi

repo, checks = sys.argv[1], json.loads(sys.argv[2])
refs = HfApi().list_repo_refs(repo, repo_type="dataset")
out = {"tags": sorted(t.name for t in refs.tags), "branches": sorted(b.name for b in refs.branches), "loads": {}}
for config, revision in checks:
    try:
        rows = load_dataset(repo, config, revision=revision, split="train").to_list()
        out["loads"][f"{config}@{revision}"] = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    except Exception as err:
        out["loads"][f"{config}@{revision}"] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
"""


def digest(folder) -> str:
    rows = load_from_disk(str(folder)).to_list()
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def read_back(endpoint, home, checks) -> dict:
    result = subprocess.run([sys.executable, "-c", CLIENT, REPO, json.dumps(checks)], env=hub_env(endpoint, home),
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def published(builds, olah_hub):
    endpoint, mirrors = olah_hub
    hub_dir = mirrors / "datasets" / REPO
    for strategy, version in (("response-micro", "1.0.0"), ("instruction-micro", "1.1.0")):
        result = run_divsft("publish", builds[strategy], "--repo", REPO, "--version", version, "--hub-dir", hub_dir)
        assert result.returncode == 0, result.stderr
    return endpoint, hub_dir


def test_every_config_loads_exactly_at_its_version_and_old_tags_stay(published, builds, tmp_path):
    endpoint, _ = published
    response = {c: digest(builds["response-micro"] / c) for c in ("response_micro_d000", "response_micro_d100")}
    instruction = {c: digest(builds["instruction-micro"] / c) for c in ("instruction_micro_d000", "instruction_micro_d100")}
    checks = [(c, v) for c in response for v in ("v1.0.0", "v1.1.0")]
    checks += [(c, "v1.1.0") for c in instruction] + [("instruction_micro_d100", "v1.0.0")]
    out = read_back(endpoint, tmp_path / "hf-home", checks)
    assert out["tags"] == ["v1.0.0", "v1.1.0"] and out["branches"] == ["main"]
    for config, expected in response.items():
        assert out["loads"][f"{config}@v1.0.0"] == expected  # v1.0.0 unchanged after v1.1.0
        assert out["loads"][f"{config}@v1.1.0"] == expected
    for config, expected in instruction.items():
        assert out["loads"][f"{config}@v1.1.0"] == expected
    assert "BuilderConfig 'instruction_micro_d100' not found" in out["loads"]["instruction_micro_d100@v1.0.0"]


def test_hub_backend_plans_the_same_commit_as_the_local_backend(published, builds, tmp_path):
    """HfApi reads the repo's state through olah; the plans (files, sizes, deletions, tag) must be identical."""
    endpoint, hub_dir = published
    args = ("publish", builds["response-micro"], "--repo", REPO, "--version", "1.2.0", "--dry-run")
    env = hub_env(endpoint, tmp_path / "hf-home")
    hub = subprocess.run([sys.executable, "-m", "hf_divsft.cli", *map(str, args)], env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    local = run_divsft(*args, "--hub-dir", hub_dir)
    assert hub.returncode == 0 and local.returncode == 0, hub.stderr + local.stderr
    assert hub.stdout.splitlines()[0] == f"dry run: would commit to {endpoint}/datasets/{REPO}:"
    assert hub.stdout.splitlines()[1:] == local.stdout.splitlines()[1:]
    assert "  tag v1.2.0" in local.stdout and "add data/response_micro_d100/" in local.stdout
