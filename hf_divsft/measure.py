"""`divsft measure`: the six metrics on both components of a dataset, a build folder, a Hub id or a file.

Token ids and embeddings are the same cached `.map()` columns the extractors use, so a build measures
its levels from features computed once for the whole pool.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
from datasets import Dataset
from tqdm.auto import tqdm

from . import __version__
from .data import TEXT_COLUMNS, PoolColumns, arrow_column, load_pool
from .embedding import DEFAULT_EMBEDDER, EmbedColumn, embedding_matrix
from .errors import DivsftError
from .metrics import (
    MAX_N,
    SELF_BLEU_SAMPLE,
    NGrams,
    compression_ratio,
    embedding_distance,
    ngram_ratio,
    self_bleu,
    sequence_length,
    token_entropy,
)
from .tokenization import DEFAULT_TOKENIZER, TokenizeColumn


@dataclass
class MeasureConfig:
    """How the metrics are computed; `divsft measure` flags, `divsft build` and Python share it."""

    tokenizer: str = DEFAULT_TOKENIZER
    embedder: str = DEFAULT_EMBEDDER
    components: list[str] = field(default_factory=lambda: list(TEXT_COLUMNS))
    max_n: int = MAX_N
    self_bleu_sample: int | None = SELF_BLEU_SAMPLE
    seed: int = 0
    num_proc: int | None = None

    def __post_init__(self):
        unknown = sorted(set(self.components) - set(TEXT_COLUMNS))
        if unknown or not self.components:
            raise DivsftError(f"--components {','.join(self.components)}: choose from {', '.join(TEXT_COLUMNS)}")
        if self.max_n < 1:
            raise DivsftError(f"--max-n {self.max_n}: must be at least 1")

    def settings(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "num_proc"}


def add_metric_features(ds: Dataset, config: MeasureConfig, keep_in_memory: bool = False) -> Dataset:
    """Token ids and embeddings of every measured component, as cached columns (skipped when present)."""
    for component in config.components:
        for column in (TokenizeColumn(component, config.tokenizer), EmbedColumn(component, config.embedder)):
            ds = column.apply(ds, num_proc=config.num_proc, keep_in_memory=keep_in_memory)
    return ds


def measure_dataset(ds: Dataset, config: MeasureConfig, keep_in_memory: bool = False) -> dict:
    """{component: {metric: {"value": ..., details}}} for one dataset."""
    ds = add_metric_features(ds, config, keep_in_memory)
    return {
        component: measure_component(
            arrow_column(ds, component),
            arrow_column(ds, f"{component}_token_ids"),
            embedding_matrix(ds, f"{component}_embedding"),
            config,
        )
        for component in config.components
    }


def measure_component(texts: pa.ChunkedArray, token_ids, embeddings, config: MeasureConfig) -> dict:
    ngrams = NGrams.of(texts, config.max_n)  # shared by the n-gram ratio and Self-BLEU
    return {
        "ngram_ratio": ngram_ratio(ngrams),
        "embedding_distance": embedding_distance(embeddings),
        "sequence_length": sequence_length(token_ids),
        "compression_ratio": compression_ratio(texts.to_pylist()),
        "self_bleu": self_bleu(ngrams, sample=config.self_bleu_sample, seed=config.seed),
        "token_entropy": token_entropy(token_ids),
    }


def measure(
    source: str, config: MeasureConfig, columns: PoolColumns | None = None, split: str = "train"
) -> dict:
    """Metrics of a build folder (every level) or of one dataset (saved folder, Hub id, data file)."""
    report = {"source": str(source), "settings": config.settings(), "hf_divsft_version": __version__}
    manifest_path = Path(source) / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        report["strategy"] = manifest["strategy"]
        report["levels"] = [
            {
                "level": entry["level"],
                "config": entry["config"],
                "metrics": measure_dataset(_load_level(Path(source), entry["config"]), config, keep_in_memory=True),
            }
            for entry in tqdm(manifest["levels"], desc="Measuring levels", unit="level")
        ]
        return report
    ds = load_pool(source, columns, split)
    report["num_rows"] = ds.num_rows
    report["metrics"] = measure_dataset(ds, config, keep_in_memory=True)
    return report


def _load_level(folder: Path, name: str) -> Dataset:
    if not (folder / name).is_dir():
        raise DivsftError(f"{folder}/manifest.json lists level '{name}' but {folder / name} is missing")
    return load_pool(str(folder / name))
