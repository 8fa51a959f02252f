"""What every benchmark shares: a timer and one way to save a record (with the machine and versions)."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "open-sft-pool"


def timed(fn):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def save(record: dict, out: str | Path, packages: tuple[str, ...]) -> None:
    record = {
        **record,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": {name: version(name) for name in packages},
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
