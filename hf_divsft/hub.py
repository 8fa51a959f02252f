"""Where a release goes: the Hugging Face Hub (`HfApi`) or a local git repository laid out the same way.

Both take one `Release` (every file of a version):
* `HubRepo`: one `create_commit` with every operation (the Hub applies it atomically), pinned to the
  parent commit that was planned against, then `create_tag` on that commit. Should tagging fail, `main`
  holds the version untagged and republishing it (same version) retries cleanly.
* `LocalGitRepo`: a bare repository (olah's `mirrors-path` serves it as a Hub repo). Blobs and a tree
  are written first, invisibly; then one git ref transaction moves `main` and creates the tag together,
  so the version appears completely or not at all.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .errors import DivsftError, reason

REPO_TYPE = "dataset"
BRANCH = "main"


@dataclass
class Release:
    """One version: the files to add (path in repo -> local file), the paths to delete, the tag."""

    tag: str
    message: str
    files: dict[str, Path] = field(default_factory=dict)
    deletions: list[str] = field(default_factory=list)

    def plan(self) -> list[str]:
        """What would be committed, one sorted line per operation (the `--dry-run` output)."""
        lines = [f"add {path} ({file.stat().st_size:,} bytes)" for path, file in self.files.items()]
        lines += [f"delete {path}" for path in self.deletions]
        return sorted(lines) + [f"tag {self.tag}"]


class Backend(Protocol):
    name: str

    def head(self) -> str | None: ...
    def tags(self) -> set[str]: ...
    def list_files(self) -> list[str]: ...
    def read_text(self, path: str) -> str: ...
    def publish(self, release: Release, parent: str | None) -> str: ...


def repo_id_problem(repo_id: str) -> str | None:
    """Why `repo_id` is not a Hub repo id (the Hub client's own rules), or None if it is one."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        return str(err)
    return None


class LocalGitRepo:
    """A bare git repository standing for a Hub dataset repo (created if missing, default branch main)."""

    def __init__(self, git_dir: str | Path):
        self.path = Path(git_dir)
        self.name = str(self.path)
        if self.path.exists() and not self.is_repo(self.path):
            raise DivsftError(f"{self.path}: not a bare git repository; give a new folder or one made with `git init --bare`")

    @staticmethod
    def is_repo(path: Path) -> bool:
        """Whether `path` is a bare git repository (the one existing thing `--hub-dir` may name)."""
        bare = subprocess.run(["git", f"--git-dir={path}", "rev-parse", "--is-bare-repository"],
                              capture_output=True, text=True, check=False).stdout.strip()
        return bare == "true"

    def _git(self, *args: str, stdin: str | None = None, env: dict | None = None) -> str:
        result = subprocess.run(
            ["git", f"--git-dir={self.path}", *args], input=stdin, capture_output=True, text=True,
            env={**os.environ, **(env or {})}, check=False,
        )
        if result.returncode != 0:
            raise DivsftError(f"{self.path}: git {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def head(self) -> str | None:
        if not self.path.exists():  # created by the first publish, never by a dry run
            return None
        out = subprocess.run(["git", f"--git-dir={self.path}", "rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}"],
                             capture_output=True, text=True, check=False).stdout.strip()
        return out or None

    def tags(self) -> set[str]:
        if not self.path.exists():
            return set()
        return set(self._git("for-each-ref", "--format=%(refname:short)", "refs/tags").split())

    def list_files(self) -> list[str]:
        return self._git("ls-tree", "-r", "--name-only", BRANCH).splitlines() if self.head() else []

    def read_text(self, path: str) -> str:
        return self._git("show", f"{BRANCH}:{path}")

    def publish(self, release: Release, parent: str | None) -> str:
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}")
        commit = self._write_commit(release, parent)
        self._update_refs(commit, parent, release.tag)
        return commit

    def _write_commit(self, release: Release, parent: str | None) -> str:
        """Blobs, tree and commit objects; none is reachable (visible) until the refs move."""
        with tempfile.TemporaryDirectory() as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self._git("read-tree", parent, env=index)
            paths = list(release.files)
            blobs = self._git("hash-object", "-w", "--stdin-paths",
                              stdin="\n".join(str(release.files[p]) for p in paths) + "\n").split()
            entries = [f"0 {'0' * 40}\t{path}" for path in release.deletions]  # mode 0 removes a path
            entries += [f"100644 {blob}\t{path}" for path, blob in zip(paths, blobs)]
            self._git("update-index", "--index-info", stdin="\n".join(entries) + "\n", env=index)
            tree = self._git("write-tree", env=index).strip()
        author = {"GIT_AUTHOR_NAME": "hf-divsft", "GIT_AUTHOR_EMAIL": "hf-divsft@localhost",
                  "GIT_COMMITTER_NAME": "hf-divsft", "GIT_COMMITTER_EMAIL": "hf-divsft@localhost"}
        parents = ["-p", parent] if parent else []
        return self._git("commit-tree", tree, *parents, "-m", release.message, env=author).strip()

    def _update_refs(self, commit: str, parent: str | None, tag: str) -> None:
        """Move main (only if it is still at `parent`) and create the tag in one all-or-nothing transaction."""
        old = parent or "0" * 40
        self._git("update-ref", "--stdin", stdin=(
            f"start\nupdate refs/heads/{BRANCH} {commit} {old}\ncreate refs/tags/{tag} {commit}\nprepare\ncommit\n"
        ))


def _http_errors() -> tuple[type[BaseException], ...]:
    """What a failed Hub call raises: huggingface_hub's HTTP errors and its transport's (httpx, or httpx2 in 2.x)."""
    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError]
    for transport in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(transport).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


@contextlib.contextmanager
def _hub_errors(where: str):
    """HTTP failures as one-line errors; anything else (a bug, an interrupt) keeps its traceback."""
    try:
        yield
    except _http_errors() as err:
        raise DivsftError(f"{where}: the Hub call failed ({reason(err)})") from err


class HubRepo:
    """A dataset repository on the Hub (or any endpoint in HF_ENDPOINT); the token comes from the environment."""

    def __init__(self, repo_id: str, private: bool = False):
        from huggingface_hub import HfApi, constants

        self.api = HfApi()
        self.repo_id = repo_id
        self.private = private
        self.name = f"{constants.ENDPOINT}/datasets/{repo_id}"  # HF_ENDPOINT, when set, is where it goes

    def _refs(self):
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

        with _hub_errors(self.name):
            try:
                return self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE)
            except (RepositoryNotFoundError, EntryNotFoundError):  # a mirror such as olah answers the latter
                return None

    def head(self) -> str | None:
        refs = self._refs()
        branches = {branch.name: branch.target_commit for branch in refs.branches} if refs else {}
        return branches.get(BRANCH)

    def tags(self) -> set[str]:
        refs = self._refs()
        return {tag.name for tag in refs.tags} if refs else set()

    def list_files(self) -> list[str]:
        if not self.head():
            return []
        with _hub_errors(self.name):
            return self.api.list_repo_files(self.repo_id, repo_type=REPO_TYPE, revision=BRANCH)

    def read_text(self, path: str) -> str:
        from huggingface_hub import hf_hub_download

        with _hub_errors(self.name):
            return Path(hf_hub_download(self.repo_id, path, repo_type=REPO_TYPE, revision=BRANCH)).read_text()

    def operations(self, release: Release) -> list:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        adds = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(file)) for path, file in release.files.items()]
        return adds + [CommitOperationDelete(path_in_repo=path) for path in release.deletions]

    def publish(self, release: Release, parent: str | None) -> str:
        with _hub_errors(self.name):
            self.api.create_repo(self.repo_id, repo_type=REPO_TYPE, private=self.private, exist_ok=True)
            info = self.api.create_commit(
                self.repo_id, self.operations(release), commit_message=release.message, repo_type=REPO_TYPE,
                revision=BRANCH, parent_commit=parent,
            )
            self.api.create_tag(self.repo_id, tag=release.tag, revision=info.oid, repo_type=REPO_TYPE)
        return info.oid
