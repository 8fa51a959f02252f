"""Valid files of our formats, written by hand for tests that need many runs without training models.

Each follows the format owners in `hf_divsft.formats` exactly; tests that check refusals start from these.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def level_entry(strategy: str, level: int, metrics: dict | None = None, rows: int = 100) -> dict:
    config = f"{strategy.replace('-', '_')}_d{level:03d}"
    return {"level": level, "config": config, "k": level + 1, "candidates": rows, "num_rows": rows,
            "types_covered": level + 1, "type_entropy": 1.0, "type_count_ratio": 1.0,
            "ids_sha256": digest(f"ids of {config}"), "rows_sha256": digest(f"rows of {config}"),
            "metrics": metrics}


def manifest(strategy: str, levels: list[dict]) -> dict:
    return {"pool": "synthetic-pool", "pool_fingerprint": digest("pool"), "pool_rows": 1000,
            "strategy": strategy, "size": 100, "seed": 0, "types_total": 101, "typed_rows": 900,
            "extractor": {"level": "synthetic"}, "response_tokens": None, "metrics_settings": None,
            "hf_divsft_version": "0.1.0",
            "type_labels": "type_labels.json", "levels": levels}


def summary(score: float | None, subset: dict | None, judge: str = "reference-nll") -> dict:
    return {"judge": {"judge": judge}, "metric": "synthetic", "score": score, "ci95": None, "n": 4,
            "model": "smollm2", "adapter": None, "subset": subset, "eval_set": "synthetic-eval",
            "configs": ["alpaca_eval"]}


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path
