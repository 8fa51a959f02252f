"""The evaluation prompts: AlpacaEval 2.0 and Arena-Hard with their reference answers (a Hub-layout folder)."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, concatenate_datasets

from ..assets import DEFAULT_EVAL_SET
from ..config import EVAL_CONFIGS
from ..data import local_or_hub, read_dataset
from ..errors import DivsftError


def load_eval_set(source: str = DEFAULT_EVAL_SET, configs=EVAL_CONFIGS, limit: int | None = None,
                  seed: int = 0) -> Dataset:
    """Rows `id`, `config`, `instruction`, `reference`; with `limit`, a seeded sample spread over the configs."""
    parts = []
    try:
        local_or_hub(source)
    except DivsftError as err:
        raise DivsftError(f"--eval-set {err}") from None
    for config in configs:
        try:
            part = read_dataset(source, "test", config)
        except DivsftError as err:
            raise DivsftError(f"--eval-set {source}: cannot load config {config!r} ({err})") from None
        missing = {"id", "instruction", "reference"} - set(part.column_names)
        if missing:
            raise DivsftError(f"--eval-set {source}/{config}: missing column(s) {', '.join(sorted(missing))}")
        part = part.select_columns(["id", "instruction", "reference"]).add_column("config", [config] * part.num_rows)
        parts.append(part)
    if limit:
        shares = np.diff(np.linspace(0, limit, len(parts) + 1).round().astype(int))  # as even as possible
        rng = np.random.default_rng(seed)
        parts = [p.select(np.sort(rng.choice(p.num_rows, min(n, p.num_rows), replace=False))) for p, n in zip(parts, shares)]
    return concatenate_datasets(parts)
