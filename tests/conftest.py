"""Shared fixtures: a seeded sample of the real shared pool, written as a parquet file per session."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
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


@pytest.fixture
def cli():
    """Run `divsft` in-process; returns the click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def run_divsft(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed `divsft` console script in a real process, as a user runs it."""
    script = Path(sys.executable).with_name("divsft")
    return subprocess.run(
        [str(script), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600, check=False
    )


def error_line(stderr: str) -> str:
    """The last line of stderr, which must be the one-line error (progress bars come before it)."""
    return stderr.rstrip("\n").split("\n")[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    log = open(tmp_path_factory.mktemp("server") / "transformers-serve.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"transformers serve exited with {server.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"transformers serve did not answer within 180 s; see {log.name}")
                time.sleep(0.5)
        yield base_url, folder
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
