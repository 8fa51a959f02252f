"""`divsft publish` into a local bare git repo: versions, cards, refusals, and no half-published versions.

Reading the published repo back through the real Hub client and an olah server is in test_hub_olah.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from datasets import load_dataset, load_from_disk
from huggingface_hub import DatasetCard

import hf_divsft.publish as publish_module
from hf_divsft.cards import validate_card
from hf_divsft.errors import DivsftError
from hf_divsft.hub import HubRepo, LocalGitRepo
from hf_divsft.publish import PublishConfig, publish

from .conftest import error_line, run_divsft

REPO = "testorg/divsft-subsets"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={repo}", *args], capture_output=True, text=True, check=True).stdout


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def test_first_publish_commits_every_config_once_and_tags_it(builds, tmp_path):
    hub_dir = tmp_path / "datasets" / REPO
    result = run_divsft("publish", builds["response-micro"], "--repo", REPO, "--version", "1.0.0", "--hub-dir", hub_dir)
    assert result.returncode == 0, result.stderr
    assert "published 2 configs" in result.stdout and "as v1.0.0" in result.stdout
    assert git(hub_dir, "rev-list", "--count", "main").strip() == "1"
    assert git(hub_dir, "rev-parse", "v1.0.0") == git(hub_dir, "rev-parse", "main")
    files = git(hub_dir, "ls-tree", "-r", "--name-only", "main").split()
    assert files == [
        "README.md",
        "data/response_micro_d000/train-00000-of-00001.parquet",
        "data/response_micro_d100/train-00000-of-00001.parquet",
        "manifest.json",
    ]
    manifest = json.loads(git(hub_dir, "show", "main:manifest.json"))
    assert manifest["version"] == "1.0.0" and list(manifest["strategies"]) == ["response-micro"]
    assert manifest["strategies"]["response-micro"]["published_in"] == "1.0.0"


def test_parquet_shards_hold_exactly_the_built_rows(builds, tmp_path):
    hub_dir = tmp_path / "hub"
    publish(PublishConfig([str(builds["response-micro"])], REPO, "1.0.0", hub_dir=str(hub_dir)))
    for config in ("response_micro_d000", "response_micro_d100"):
        path = f"data/{config}/train-00000-of-00001.parquet"
        shard = tmp_path / f"{config}.parquet"
        shard.write_bytes(subprocess.run(["git", f"--git-dir={hub_dir}", "show", f"main:{path}"],
                                         capture_output=True, check=True).stdout)
        published = load_dataset("parquet", data_files=str(shard), split="train")
        assert published.to_list() == load_from_disk(str(builds["response-micro"] / config)).to_list()


def test_card_parses_validates_and_its_configs_match_the_files(builds, tmp_path):
    hub_dir = tmp_path / "hub"
    paths = [str(builds["response-micro"]), str(builds["instruction-micro"])]
    publish(PublishConfig(paths, REPO, "1.0.0", hub_dir=str(hub_dir)))
    text = git(hub_dir, "show", "main:README.md")
    card = DatasetCard(text)
    validate_card(text)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"  # inherited from the pool folder's own card
    assert data["size_categories"] == ["n<1K"] and data["task_categories"] == ["text-generation"]
    assert data["source_datasets"] == ["card-pool"]
    files = git(hub_dir, "ls-tree", "-r", "--name-only", "main").split()
    for config in data["configs"]:
        [data_files] = config["data_files"]
        folder = data_files["path"].removesuffix("*.parquet")
        assert data_files["split"] == "train" and folder == f"data/{config['config_name']}/"
        assert any(f.startswith(folder) for f in files)
    assert {c["config_name"] for c in data["configs"]} == {
        "response_micro_d000", "response_micro_d100", "instruction_micro_d000", "instruction_micro_d100",
    }
    for needle in ('load_dataset("testorg/divsft-subsets", "instruction_micro_d100", revision="v1.0.0"',
                   "@inproceedings{li2026macro", "| `response_micro_d100` | 100% |", "token entropy (bits)"):
        assert needle in card.text


def test_a_new_version_adds_a_strategy_and_keeps_the_old_tag(builds, tmp_path):
    hub_dir = tmp_path / "hub"
    first = publish(PublishConfig([str(builds["response-micro"])], REPO, "1.0.0", hub_dir=str(hub_dir)))
    second = publish(PublishConfig([str(builds["instruction-micro"])], REPO, "1.1.0", hub_dir=str(hub_dir)))
    assert git(hub_dir, "rev-parse", "v1.0.0").strip() == first.commit
    assert git(hub_dir, "rev-parse", "main").strip() == git(hub_dir, "rev-parse", "v1.1.0").strip() == second.commit
    assert git(hub_dir, "rev-parse", f"{second.commit}^").strip() == first.commit
    old = git(hub_dir, "ls-tree", "-r", "--name-only", "v1.0.0").split()
    new = git(hub_dir, "ls-tree", "-r", "--name-only", "v1.1.0").split()
    assert set(old) - {"README.md", "manifest.json"} < set(new)
    assert list(json.loads(git(hub_dir, "show", "v1.1.0:manifest.json"))["strategies"]) == [
        "response-micro", "instruction-micro",
    ]
    assert "response_micro_d000" in git(hub_dir, "show", "v1.1.0:README.md")


def test_republishing_a_version_is_refused_and_changes_nothing(builds, tmp_path):
    hub_dir = tmp_path / "hub"
    publish(PublishConfig([str(builds["response-micro"])], REPO, "1.0.0", hub_dir=str(hub_dir)))
    before = refs(hub_dir)
    result = run_divsft("publish", builds["instruction-micro"], "--repo", REPO, "--version", "1.0.0", "--hub-dir", hub_dir)
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"error: {hub_dir}: v1.0.0 is already published and a version never changes; choose a new --version"
    )
    assert refs(hub_dir) == before


def test_dry_run_lists_the_commit_and_writes_nothing(builds, tmp_path):
    hub_dir = tmp_path / "hub"
    result = run_divsft("publish", builds["response-micro"], "--repo", REPO, "--version", "1.0.0",
                        "--hub-dir", hub_dir, "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"dry run: would commit to {hub_dir}:"
    assert [line.split(" (")[0].strip() for line in lines[1:]] == [
        "add README.md",
        "add data/response_micro_d000/train-00000-of-00001.parquet",
        "add data/response_micro_d100/train-00000-of-00001.parquet",
        "add manifest.json",
        "tag v1.0.0",
    ]
    assert not hub_dir.exists()


def test_a_failure_while_staging_leaves_no_commit_and_no_tag(builds, tmp_path, monkeypatch):
    hub_dir = tmp_path / "hub"
    publish(PublishConfig([str(builds["response-micro"])], REPO, "1.0.0", hub_dir=str(hub_dir)))
    before = refs(hub_dir)
    real_write, calls = publish_module._write_shards, []

    def crash_on_second_config(subset, folder):
        calls.append(folder)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        return real_write(subset, folder)

    monkeypatch.setattr(publish_module, "_write_shards", crash_on_second_config)
    with pytest.raises(OSError, match="injected"):
        publish(PublishConfig([str(builds["instruction-micro"])], REPO, "1.1.0", hub_dir=str(hub_dir)))
    assert refs(hub_dir) == before and "v1.1.0" not in git(hub_dir, "tag")


def test_a_failure_at_the_ref_update_leaves_no_commit_and_no_tag(builds, tmp_path, monkeypatch):
    """The commit object exists by then, but no ref reaches it: main and the tag move together or not at all."""
    hub_dir = tmp_path / "hub"
    first = publish(PublishConfig([str(builds["response-micro"])], REPO, "1.0.0", hub_dir=str(hub_dir)))
    real_update, new_commits = LocalGitRepo._update_refs, []

    def tag_taken_meanwhile(self, commit, parent, tag):
        new_commits.append(commit)
        git(hub_dir, "update-ref", f"refs/tags/{tag}", parent)  # another publisher tagged first: `create` fails
        return real_update(self, commit, parent, tag)

    monkeypatch.setattr(LocalGitRepo, "_update_refs", tag_taken_meanwhile)
    with pytest.raises(DivsftError, match="update-ref failed"):
        publish(PublishConfig([str(builds["instruction-micro"])], REPO, "1.1.0", hub_dir=str(hub_dir)))
    assert git(hub_dir, "rev-parse", "main").strip() == first.commit
    assert new_commits and git(hub_dir, "for-each-ref", f"--contains={new_commits[0]}") == ""


def test_hub_backend_commits_once_then_tags_that_commit(builds, tmp_path, monkeypatch):
    """A recording stand-in for HfApi's write calls: the public Hub's write API cannot be reached here."""
    from huggingface_hub.errors import RepositoryNotFoundError

    class RecordingHfApi:
        def __init__(self, fail_commit=False):
            self.calls, self.fail_commit = [], fail_commit

        def list_repo_refs(self, repo_id, repo_type):
            url = f"https://huggingface.co/api/datasets/{repo_id}/refs"
            raise RepositoryNotFoundError("new repo", response=httpx.Response(404, request=httpx.Request("GET", url)))

        def create_repo(self, repo_id, **kwargs):
            self.calls.append(("create_repo", repo_id, kwargs["repo_type"]))

        def create_commit(self, repo_id, operations, **kwargs):
            self.calls.append(("create_commit", sorted(op.path_in_repo for op in operations), kwargs["parent_commit"]))
            if self.fail_commit:
                raise RuntimeError("HTTP 500 (injected)")
            return type("CommitInfo", (), {"oid": "c0ffee" * 6 + "abcd"})()

        def create_tag(self, repo_id, tag, revision, repo_type):
            self.calls.append(("create_tag", tag, revision))

    local = publish(PublishConfig([str(builds["response-micro"])], REPO, "1.0.0", hub_dir=str(tmp_path / "h"),
                                  dry_run=True))
    recorder = RecordingHfApi()
    monkeypatch.setattr(HubRepo, "__init__", lambda self, repo_id, private=False: _fake_hub(self, repo_id, recorder))
    result = publish(PublishConfig([str(builds["response-micro"])], REPO, "1.0.0"))
    added = [line.split(" (")[0].removeprefix("add ") for line in local.plan if line.startswith("add ")]
    assert recorder.calls == [
        ("create_repo", REPO, "dataset"),
        ("create_commit", added, None),
        ("create_tag", "v1.0.0", "c0ffee" * 6 + "abcd"),
    ]
    assert result.plan == local.plan and result.commit == "c0ffee" * 6 + "abcd"

    failing = RecordingHfApi(fail_commit=True)
    monkeypatch.setattr(HubRepo, "__init__", lambda self, repo_id, private=False: _fake_hub(self, repo_id, failing))
    with pytest.raises(RuntimeError, match="injected"):
        publish(PublishConfig([str(builds["response-micro"])], REPO, "1.0.0"))
    assert [call[0] for call in failing.calls] == ["create_repo", "create_commit"]  # no tag without its commit


def _fake_hub(hub: HubRepo, repo_id: str, api) -> None:
    hub.api, hub.repo_id, hub.private, hub.name = api, repo_id, False, f"https://huggingface.co/datasets/{repo_id}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--repo", "no-slash", "--version", "1.0.0"),
         "--repo no-slash: give ORG/NAME of letters, digits, '-', '_' or '.', e.g. my-org/sft-diversity"),
        (("--repo", "../..", "--version", "1.0.0"), "--repo ../..: give ORG/NAME"),
        (("--repo", "a/b/c", "--version", "1.0.0"), "--repo a/b/c: give ORG/NAME"),
        (("--repo", REPO, "--version", "1.0"), "--version 1.0: give X.Y.Z without leading zeros, e.g. 1.0.0 "
                                                "(it is tagged vX.Y.Z)"),
        (("--repo", REPO, "--version", "01.0.0"), "--version 01.0.0: give X.Y.Z without leading zeros"),
    ],
)
def test_bad_repo_or_version_fails_in_one_line(builds, tmp_path, args, message):
    result = run_divsft("publish", builds["response-micro"], *args, "--hub-dir", tmp_path / "hub")
    assert result.returncode == 2 and error_line(result.stderr).startswith(f"error: {message}")
    assert not (tmp_path / "hub").exists()


def test_not_a_build_folder_or_not_a_bare_repo_fails_in_one_line(builds, tmp_path):
    result = run_divsft("publish", tmp_path, "--repo", REPO, "--version", "1.0.0", "--hub-dir", tmp_path / "hub")
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"error: {tmp_path}: not a build folder (no manifest.json); run `divsft build --out {tmp_path}` first"
    )
    worktree = tmp_path / "worktree"
    subprocess.run(["git", "init", "-q", str(worktree)], check=True)
    result = run_divsft("publish", builds["response-micro"], "--repo", REPO, "--version", "1.0.0", "--hub-dir", worktree)
    assert result.returncode == 2
    assert "not a bare git repository" in error_line(result.stderr)


@pytest.mark.skipif(
    not (os.environ.get("DIVSFT_HUB_TEST_REPO") and os.environ.get("HF_TOKEN")),
    reason="the real Hub upload runs only where huggingface.co is reachable: set DIVSFT_HUB_TEST_REPO and HF_TOKEN",
)
def test_real_hub_upload_round_trip(builds):
    """The HfApi write path for real (create_repo, one create_commit, create_tag), then load_dataset at the tag."""
    repo = os.environ["DIVSFT_HUB_TEST_REPO"]
    version = f"0.0.{int(time.time())}"
    result = publish(PublishConfig([str(builds["response-micro"])], repo, version, private=True))
    loaded = load_dataset(repo, "response_micro_d100", revision=f"v{version}", split="train")
    assert result.commit and loaded.to_list() == load_from_disk(str(builds["response-micro"] / "response_micro_d100")).to_list()


def test_an_unreachable_hub_fails_in_one_line(builds, tmp_path):
    from .conftest import free_port, hub_env

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = hub_env(endpoint, tmp_path / "hf-home")
    result = subprocess.run([sys.executable, "-m", "hf_divsft.cli", "publish", str(builds["response-micro"]),
                             "--repo", REPO, "--version", "1.0.0"], env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 2
    assert error_line(result.stderr).startswith(f"error: {endpoint}/datasets/{REPO}: the Hub call failed (")


def test_a_rebuilt_strategy_with_fewer_levels_drops_the_old_shards_from_main_only(builds, card_pool, tmp_path):
    from hf_divsft import BuildConfig, build

    hub_dir = tmp_path / "hub"
    publish(PublishConfig([str(builds["response-micro"]), str(builds["instruction-micro"])], REPO, "1.0.0",
                          hub_dir=str(hub_dir)))
    rebuilt = tmp_path / "response-micro"
    build(BuildConfig(pool=str(card_pool), strategy="response-micro", out=str(rebuilt), levels=[100], size=100,
                      band=(10, 100), metrics=False))
    result = publish(PublishConfig([str(rebuilt)], REPO, "1.1.0", hub_dir=str(hub_dir)))
    assert "delete data/response_micro_d000/train-00000-of-00001.parquet" in result.plan
    new = git(hub_dir, "ls-tree", "-r", "--name-only", "v1.1.0").split()
    assert not any(path.startswith("data/response_micro_d000/") for path in new)
    assert "data/instruction_micro_d000/train-00000-of-00001.parquet" in new  # other strategies untouched
    assert "data/response_micro_d000/train-00000-of-00001.parquet" in git(hub_dir, "ls-tree", "-r", "--name-only", "v1.0.0")


def test_a_build_whose_rows_were_edited_after_the_build_is_refused(builds, tmp_path):
    """Only ids were hashed once: an edited text now changes rows_sha256, and publish checks it."""
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(builds["response-micro"], edited)
    level = edited / "response_micro_d100"
    rows = load_from_disk(str(level))
    rows = rows.map(lambda row, i: {"response": row["response"] + " (edited)" if i == 3 else row["response"]},
                    with_indices=True, keep_in_memory=True)
    shutil.rmtree(level)
    rows.save_to_disk(str(level))
    result = run_divsft("publish", edited, "--repo", REPO, "--version", "1.0.0",
                        "--hub-dir", tmp_path / "hub")
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"error: {level}: its rows were edited after the build (rows_sha256 differs); rebuild it"
    )
    assert not (tmp_path / "hub").exists()
