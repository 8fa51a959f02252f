"""Shared fixtures: a seeded sample of the real shared pool, written as a parquet file per session."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from datasets import load_dataset
from typer.testing import CliRunner

from hf_divsft.cli import app

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
POOL_DIR = SHARED / "data" / "open-sft-pool"
SAMPLE_ROWS = 3000


@pytest.fixture(scope="session")
def shared_pool():
    if not POOL_DIR.exists():
        pytest.fail(f"{POOL_DIR} is missing: the tests read the real shared pool beside the repository")
    return load_dataset(str(POOL_DIR), split="train")


@pytest.fixture(scope="session")
def pool_file(shared_pool, tmp_path_factory) -> Path:
    """A few thousand real pool rows (seeded shuffle, so every source is represented)."""
    path = tmp_path_factory.mktemp("pool") / "pool-sample.parquet"
    shared_pool.shuffle(seed=1234).select(range(SAMPLE_ROWS)).to_parquet(str(path))
    return path


@pytest.fixture(scope="session")
def card_pool(pool_file, tmp_path_factory) -> Path:
    """The pool sample as a Hub-layout folder whose card names a license (publish inherits it)."""
    folder = tmp_path_factory.mktemp("pools") / "card-pool"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train-00000-of-00001.parquet").write_bytes(pool_file.read_bytes())
    (folder / "README.md").write_text(
        "---\nlicense: apache-2.0\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: train\n    path: data/train-*.parquet\n---\n# card pool\n"
    )
    return folder


@pytest.fixture(scope="session")
def builds(card_pool, tmp_path_factory) -> dict[str, Path]:
    """Two small real builds (levels 0 and 100, 100 rows each) to publish: response- and instruction-micro."""
    from hf_divsft import BuildConfig, build

    root = tmp_path_factory.mktemp("builds")
    for strategy in ("response-micro", "instruction-micro"):
        build(BuildConfig(pool=str(card_pool), strategy=strategy, out=str(root / strategy), levels=[0, 100],
                          size=100, band=(10, 100)))
    return {strategy: root / strategy for strategy in ("response-micro", "instruction-micro")}


@pytest.fixture
def cli():
    """Run `divsft` in-process; returns the click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def run_divsft(*args, cwd: Path | None = None, env: dict | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """The installed `divsft` console script in a real process, as a user runs it (`env` adds variables)."""
    script = Path(sys.executable).with_name("divsft")
    return subprocess.run([str(script), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout, check=False)


def error_line(stderr: str) -> str:
    """The last line of stderr, which must be the one-line error (progress bars come before it)."""
    return stderr.rstrip("\n").split("\n")[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(command: list[str], probe_url: str, log_path: Path, timeout: float, **popen):
    """Run a server in its own process group until `probe_url` answers (any HTTP status); stop it after."""
    log = open(log_path, "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen)
    name = Path(command[0]).name
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                pytest.fail(f"{name} exited with {server.returncode}; see {log_path}")
            try:
                urllib.request.urlopen(probe_url, timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not answer within {timeout:.0f} s; see {log_path}")
                time.sleep(0.3)
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory):
    """A real OpenAI-compatible server (`transformers serve`) for SmolLM2-135M on 127.0.0.1.

    One thread: on a 2-core machine a second OpenMP thread makes decoding several times slower.
    Yields (base_url, model name); the server is stopped when the session ends.
    """
    from hf_divsft.models import smollm2_model_dir

    folder = str(smollm2_model_dir())
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [str(Path(sys.executable).with_name("transformers")), "serve", folder,
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    base_url = f"http://127.0.0.1:{port}/v1"
    log = tmp_path_factory.mktemp("server") / "transformers-serve.log"
    with served(command, f"{base_url}/models", log, timeout=180, env=env):
        yield base_url, folder


@pytest.fixture(scope="module")
def olah_hub(tmp_path_factory):
    """A real Hub API on 127.0.0.1: olah, offline, serving the bare git repos under `mirrors/<type>/<org>/<name>`.

    Yields (endpoint URL, mirrors folder); the server's process group is stopped when the module ends.
    """
    root = tmp_path_factory.mktemp("olah")
    mirrors = root / "mirrors"
    (mirrors / "datasets").mkdir(parents=True)
    port = free_port()
    config = root / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{root / "repos"}"\n'
        f'mirrors-path = ["{mirrors}"]\n\n[accessibility]\noffline = true\n'
    )
    command = [str(Path(sys.executable).with_name("olah-cli")), "-c", str(config), "--log-path", str(root / "logs")]
    endpoint = f"http://127.0.0.1:{port}"
    # `/` answers 500 in olah 0.5, so probe a repo API route (404 for an unknown repo means it is up)
    with served(command, f"{endpoint}/api/datasets/probe/probe/refs", root / "olah.log", timeout=60, cwd=root):
        yield endpoint, mirrors


def push_to_mirror(folder: Path, bare: Path) -> None:
    """Commit `folder`'s files to a new bare repository `bare` (branch `main`), which olah then serves."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(folder)], check=True)
    subprocess.run([*git, "-C", str(folder), "add", "."], check=True)
    subprocess.run([*git, "-C", str(folder), "commit", "-q", "-m", "files"], check=True)
    subprocess.run([*git, "-C", str(folder), "push", "-q", str(bare), "main"], check=True)


def hub_env(endpoint: str, home: Path) -> dict:
    """Environment for a process that talks to `endpoint` as the Hub, with its own empty cache.

    HF_ENDPOINT is read when huggingface_hub is imported, so Hub clients run in a fresh process; a fresh
    HF_HOME keeps `datasets` from answering a failed lookup with an older cached revision.
    """
    env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
    return {**env, "HF_ENDPOINT": endpoint, "HF_HOME": str(home)}
