"""Shared fixtures: a seeded sample of the real shared pool, written as a parquet file per session."""

from __future__ import annotations

import json
import subprocess
import sys
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
