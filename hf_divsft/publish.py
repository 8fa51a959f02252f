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

from datasets import Dataset

from . import __version__
from .artifacts import check_output, write_json
from .cards import pool_license, render_subsets_card
from .config import PublishConfig
from .errors import DivsftError
from .formats import validated
from .formats.build_folder import BuildFolder, Manifest
from .hub import Backend, HubRepo, LocalGitRepo, Release, repo_id_problem

VERSION = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")  # semantic versioning: no leading zeros
MAX_SHARD_BYTES = 500 * 2**20  # the Hub's and `push_to_hub`'s usual parquet shard size


def check_request(config: PublishConfig) -> None:
    """The repo id and version, before any build is read."""
    if config.repo.count("/") != 1 or repo_id_problem(config.repo):
        raise DivsftError(f"--repo {config.repo}: give ORG/NAME of letters, digits, '-', '_' or '.', "
                          "e.g. my-org/sft-diversity")
    if not VERSION.fullmatch(config.version):
        raise DivsftError(f"--version {config.version}: give X.Y.Z without leading zeros, e.g. 1.0.0 "
                          "(it is tagged vX.Y.Z)")


@dataclass
class PublishResult:
    destination: str
    tag: str
    plan: list[str]
    license: str
    commit: str | None = None  # None for a dry run
    configs: list[str] = field(default_factory=list)


def publish(config: PublishConfig) -> PublishResult:
    check_request(config)
    builds = [BuildFolder.read(folder) for folder in config.builds]
    for build in builds:
        build.check_subsets(verify=True)  # a stale or edited folder is refused before anything is staged
    if config.hub_dir:
        check_output(config.hub_dir, overwrite=True, owned=LocalGitRepo.is_repo, what="a bare git repository",
                     inputs=config.builds)
    strategies = [build.strategy for build in builds]
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
                               configs=[entry.config for build in builds for entry in build.levels])
        if not config.dry_run:
            result.commit = backend.publish(release, parent)
    return result


def _merge_manifest(previous: str | None, builds: list[BuildFolder], config: PublishConfig,
                    where: str) -> dict:
    """The repository's root manifest: every strategy published so far, the new ones replacing their past."""
    strategies = {}
    if previous is not None:
        try:
            strategies = dict(json.loads(previous)["strategies"])
        except (ValueError, KeyError, TypeError) as err:
            raise DivsftError(f"{where}: manifest.json was not written by divsft publish ({err}); use a new repo") from err
        for name, entry in strategies.items():  # each is rendered into the new card: check it like a build's
            validated(Manifest, entry, f"{where}: manifest.json", f"strategies.{name}: ")
    for build in builds:
        strategies[build.strategy] = {**build.raw, "published_in": config.version}
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
    for build in builds:
        for entry in build.levels:
            subset = build.subset(entry.config)
            for shard in _write_shards(subset, staging / "data" / entry.config):
                release.files[shard.relative_to(staging).as_posix()] = shard
    write_json(staging / "manifest.json", release_manifest)
    (staging / "README.md").write_text(render_subsets_card(release_manifest, config.repo, *license), encoding="utf-8")
    release.files.update({name: staging / name for name in ("manifest.json", "README.md")})
    # shards of republished configs are replaced; configs no strategy lists any more (a rebuilt strategy with
    # fewer levels) go; every other strategy's shards stay as they were
    kept = {e["config"] for b in release_manifest["strategies"].values() for e in b["levels"]}
    kept -= {entry.config for build in builds for entry in build.levels}
    release.deletions = sorted(
        p for p in existing
        if p.startswith("data/") and p not in release.files and p.split("/")[1] not in kept
    )
    return release


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
    names = ", ".join(build.strategy for build in builds)
    return f"v{config.version}: {names} (hf-divsft {__version__})"
