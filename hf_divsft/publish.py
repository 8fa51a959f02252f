"""`divsft publish`: build folders -> one versioned Hub dataset repo (a config per subset, a card, a tag).

A version is staged completely in a temporary folder (parquet shards, `manifest.json`, `README.md`),
then handed to a backend that makes it visible at once. Earlier versions stay reachable by their tags:
a new version adds strategies (or replaces a strategy's shards) on `main` and is tagged `vX.Y.Z`.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, load_from_disk

from . import __version__
from .artifacts import write_json
from .cards import pool_license, render_subsets_card
from .data import ids_sha256
from .errors import DivsftError
from .hub import Backend, HubRepo, LocalGitRepo, Release

VERSION = re.compile(r"\d+\.\d+\.\d+")
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
MAX_SHARD_BYTES = 500 * 2**20  # the Hub's and `push_to_hub`'s usual parquet shard size


@dataclass
class PublishConfig:
    """Every knob of a publish; the CLI flags and Python share it."""

    builds: list[str]
    repo: str
    version: str
    hub_dir: str | None = None
    dry_run: bool = False
    license: str | None = None
    private: bool = False

    def __post_init__(self):
        if not REPO_ID.fullmatch(self.repo or ""):
            raise DivsftError(f"--repo {self.repo}: give ORG/NAME, e.g. my-org/sft-diversity")
        if not VERSION.fullmatch(self.version or ""):
            raise DivsftError(f"--version {self.version}: give X.Y.Z, e.g. 1.0.0 (it is tagged vX.Y.Z)")
        if not self.builds:
            raise DivsftError("give at least one build folder (the --out of `divsft build`)")


@dataclass
class PublishResult:
    destination: str
    tag: str
    plan: list[str]
    license: str
    commit: str | None = None  # None for a dry run
    configs: list[str] = field(default_factory=list)


def publish(config: PublishConfig) -> PublishResult:
    builds = [_read_build(Path(folder)) for folder in config.builds]
    strategies = [manifest["strategy"] for _, manifest in builds]
    if len(set(strategies)) < len(strategies):
        raise DivsftError(f"two build folders hold the same strategy ({', '.join(strategies)}); give one of each")
    backend: Backend = LocalGitRepo(config.hub_dir) if config.hub_dir else HubRepo(config.repo, config.private)
    tag = f"v{config.version}"
    if tag in backend.tags():
        raise DivsftError(f"{backend.name}: {tag} is already published and a version never changes; "
                          f"choose a new --version")
    parent = backend.head()
    existing = backend.list_files()
    previous = backend.read_text("manifest.json") if "manifest.json" in existing else None
    release_manifest = _merge_manifest(previous, builds, config, backend.name)
    license, license_source = _license(config, release_manifest)
    with tempfile.TemporaryDirectory(prefix="divsft-publish-") as staging:
        release = _stage_release(builds, release_manifest, existing, config, (license, license_source), Path(staging))
        result = PublishResult(backend.name, tag, release.plan(), license,
                               configs=[e["config"] for _, m in builds for e in m["levels"]])
        if not config.dry_run:
            result.commit = backend.publish(release, parent)
    return result


def _read_build(folder: Path) -> tuple[Path, dict]:
    path = folder / "manifest.json"
    if not path.is_file():
        raise DivsftError(f"{folder}: not a build folder (no manifest.json); run `divsft build --out {folder}` first")
    manifest = json.loads(path.read_text())
    for entry in manifest["levels"]:
        if not (folder / entry["config"]).is_dir():
            raise DivsftError(f"{folder}/manifest.json lists '{entry['config']}' but {folder / entry['config']} is missing")
    return folder, manifest


def _merge_manifest(previous: str | None, builds: list[tuple[Path, dict]], config: PublishConfig, where: str) -> dict:
    """The repository's root manifest: every strategy published so far, the new ones replacing their past."""
    strategies = {}
    if previous is not None:
        try:
            strategies = dict(json.loads(previous)["strategies"])
        except (ValueError, KeyError, TypeError) as err:
            raise DivsftError(f"{where}: manifest.json was not written by divsft publish ({err}); use a new repo") from err
    for _, manifest in builds:
        strategies[manifest["strategy"]] = {**manifest, "published_in": config.version}
    return {"repo": config.repo, "version": config.version, "hf_divsft_version": __version__, "strategies": strategies}


def _license(config: PublishConfig, release_manifest: dict) -> tuple[str, str]:
    """(license, where it came from): --license, else the pools' cards when they agree, else `other`."""
    if config.license:
        return config.license, "given with `divsft publish --license`"
    licenses = {pool_license(build["pool"]) for build in release_manifest["strategies"].values()}
    if len(licenses) == 1 and None not in licenses:
        return licenses.pop(), "inherited from the pool's dataset card"
    return "other", "the pool's card states no single license; each source keeps its own terms"


def _stage_release(builds, release_manifest: dict, existing: list[str], config: PublishConfig,
                   license: tuple[str, str], staging: Path) -> Release:
    release = Release(tag=f"v{config.version}", message=_commit_message(builds, config))
    for folder, manifest in builds:
        for entry in manifest["levels"]:
            subset = _verified_subset(folder, entry)
            for shard in _write_shards(subset, staging / "data" / entry["config"]):
                release.files[shard.relative_to(staging).as_posix()] = shard
    write_json(staging / "manifest.json", release_manifest)
    (staging / "README.md").write_text(render_subsets_card(release_manifest, config.repo, *license), encoding="utf-8")
    release.files.update({name: staging / name for name in ("manifest.json", "README.md")})
    # shards of republished configs are replaced; configs no strategy lists any more (a rebuilt strategy with
    # fewer levels) go; every other strategy's shards stay as they were
    kept = {e["config"] for b in release_manifest["strategies"].values() for e in b["levels"]}
    kept -= {e["config"] for _, m in builds for e in m["levels"]}
    release.deletions = sorted(
        p for p in existing
        if p.startswith("data/") and p not in release.files and p.split("/")[1] not in kept
    )
    return release


def _verified_subset(folder: Path, entry: dict) -> Dataset:
    """The saved level, checked against its manifest entry so a stale or edited folder is never published."""
    subset = load_from_disk(str(folder / entry["config"]))
    if ids_sha256(subset) != entry["ids_sha256"]:
        raise DivsftError(f"{folder / entry['config']}: its rows do not match manifest.json (ids_sha256); rebuild it")
    return subset


def _write_shards(subset: Dataset, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    count = max(1, math.ceil(subset.data.nbytes / MAX_SHARD_BYTES))
    shards = []
    for index in range(count):
        path = folder / f"train-{index:05d}-of-{count:05d}.parquet"
        subset.shard(count, index, contiguous=True).to_parquet(str(path))
        shards.append(path)
    return shards


def _commit_message(builds, config: PublishConfig) -> str:
    names = ", ".join(manifest["strategy"] for _, manifest in builds)
    return f"v{config.version}: {names} (hf-divsft {__version__})"
