"""`divsft build`: pool -> types -> one selector -> a saved subset per diversity level + manifest.json."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import yaml
from datasets import Dataset
from tqdm.auto import tqdm

from . import __version__
from .artifacts import check_free, staged_dir, write_json
from .data import PoolColumns, arrow_column, ids_sha256, load_pool, pool_fingerprint
from .embedding import DEFAULT_EMBEDDER
from .errors import DivsftError
from .measure import MeasureConfig, add_metric_features, measure_dataset
from .select import Selection, TypeSelector
from .strategies import MacroTypes, MesoTypes, MicroTypes, Strategy, TagNormalizer
from .strategies.micro import PAPER_BAND
from .tagging import make_tagger
from .tokenization import DEFAULT_TOKENIZER, TokenizeColumn

PAPER_LEVELS = (0, 17, 33, 50, 67, 83, 100)
TYPE_LABELS = "type_labels.json"  # type id -> readable label, beside the manifest


@dataclass
class BuildConfig:
    """Every knob of a build; the CLI flags, a YAML file (`--config`) and Python share it."""

    pool: str
    strategy: str
    out: str
    levels: list[int] = field(default_factory=lambda: list(PAPER_LEVELS))
    size: int = 10_000
    seed: int = 0
    split: str = "train"
    columns: PoolColumns = field(default_factory=PoolColumns)
    tokenizer: str = DEFAULT_TOKENIZER
    band: tuple[int, int] = PAPER_BAND
    band_scale: bool = False
    frequency: str = "occurrences"
    embedder: str = DEFAULT_EMBEDDER
    min_cluster_size: int = 30
    umap_epochs: int = 50
    noise: str = "drop"
    tagger: str = "spacy"
    tagger_model: str | None = None
    base_url: str | None = None
    tag_alpha: int = 20
    tag_similarity: float = 0.85
    tag_association: float = 0.95
    response_tokens: tuple[int, int] | None = None
    metrics: bool = True
    num_proc: int | None = None
    overwrite: bool = False

    def __post_init__(self):
        if isinstance(self.columns, dict):
            self.columns = PoolColumns(**self.columns)
        self.band = tuple(self.band)
        self.response_tokens = tuple(self.response_tokens) if self.response_tokens else None
        Strategy.parse(self.strategy)
        if self.size < 1:
            raise DivsftError(f"--size {self.size}: must be a positive number of samples")
        if not self.levels or any(not 0 <= level <= 100 for level in self.levels):
            raise DivsftError(f"--levels {self.levels}: give whole numbers between 0 and 100")
        if self.response_tokens and not 0 <= self.response_tokens[0] <= self.response_tokens[1]:
            raise DivsftError(f"--response-tokens {self.response_tokens}: need 0 <= MIN <= MAX")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "BuildConfig":
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise DivsftError(f"{path}: cannot read the build config ({err})") from err
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DivsftError(f"{path}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        return cls(**{**values, **overrides})


def build(config: BuildConfig) -> dict:
    """Build every level of one strategy into `config.out`; returns the manifest it wrote."""
    strategy = Strategy.parse(config.strategy)
    out = Path(config.out)
    check_free(out, config.overwrite)  # fail before the expensive part, not after it
    pool = load_pool(config.pool, config.columns, config.split)
    pool_rows = pool.num_rows
    if config.response_tokens:
        pool = _length_band(pool, config)
    extractor = make_extractor(strategy, config)
    typed = extractor.add_types(pool, num_proc=config.num_proc)
    measuring = _measure_config(config)
    if measuring:
        typed = add_metric_features(typed, measuring)  # once for the pool; every level reads it
    selector = TypeSelector(arrow_column(typed, "types"), seed=config.seed)
    helper_suffixes = ("_token_ids", "_embedding")  # big per-row features stay in the cache, not the subsets
    subsets = typed.remove_columns([c for c in typed.column_names if c.endswith(helper_suffixes)])

    manifest = {
        "pool": config.pool,
        "pool_fingerprint": pool_fingerprint(pool),
        "pool_rows": pool_rows,
        "strategy": strategy.name,
        "size": config.size,
        "seed": config.seed,
        "types_total": selector.num_types,
        "typed_rows": selector.typed_rows,
        "extractor": extractor.describe(),
        "response_tokens": list(config.response_tokens) if config.response_tokens else None,
        "metrics_settings": measuring.settings() if measuring else None,
        "hf_divsft_version": __version__,
        "type_labels": TYPE_LABELS,
        "levels": [],
    }
    with staged_dir(out, overwrite=config.overwrite) as staging:
        for level in tqdm(sorted(config.levels), desc=f"Selecting {strategy.name} levels", unit="level"):
            selection = selector.select(level, config.size)
            name = strategy.config_name(level)
            subset = subsets.select(selection.indices)
            subset.save_to_disk(str(staging / name))
            entry = _level_entry(name, selection, subset)
            if measuring:
                entry["metrics"] = measure_dataset(typed.select(selection.indices), measuring)
            manifest["levels"].append(entry)
        labels = extractor.type_labels(typed)  # what each type id stands for, for people browsing the subsets
        write_json(staging / TYPE_LABELS, {str(t): label for t, label in sorted(labels.items())})
        write_json(staging / "manifest.json", manifest)
    return manifest


def make_extractor(strategy: Strategy, config: BuildConfig) -> MicroTypes | MacroTypes | MesoTypes:
    """The type extractor of the strategy's level, with the config's knobs for it."""
    component = strategy.component
    if strategy.level == "micro":
        return MicroTypes(component, config.tokenizer, config.band, config.frequency, config.band_scale)
    if strategy.level == "macro":
        return MacroTypes(
            component, config.embedder, min_cluster_size=config.min_cluster_size,
            umap_epochs=config.umap_epochs or None, noise=config.noise, seed=config.seed,
        )
    options = {"model": config.tagger_model} if config.tagger != "spacy" else {}
    if config.tagger == "openai":
        options["base_url"] = config.base_url
    normalizer = TagNormalizer(config.tag_alpha, config.tag_similarity, config.tag_association, config.embedder)
    return MesoTypes(component, make_tagger(config.tagger, **options), normalizer)


def _measure_config(config: BuildConfig) -> MeasureConfig | None:
    """The metrics use the build's own tokenizer and embedder, so their feature columns are shared."""
    if not config.metrics:
        return None
    return MeasureConfig(tokenizer=config.tokenizer, embedder=config.embedder, seed=config.seed, num_proc=config.num_proc)


def _length_band(pool: Dataset, config: BuildConfig) -> Dataset:
    """Keep rows whose response has MIN..MAX tokens (the paper's length-control ablation)."""
    low, high = config.response_tokens
    tokenized = TokenizeColumn("response", config.tokenizer).apply(pool, num_proc=config.num_proc)
    lengths = np.asarray(arrow_column(tokenized, "response_token_ids").combine_chunks().value_lengths())
    keep = np.flatnonzero((lengths >= low) & (lengths <= high))
    if keep.size == 0:
        raise DivsftError(f"--response-tokens {low},{high}: no pool response has that many tokens")
    return tokenized.select(keep)


def _level_entry(name: str, selection: Selection, subset: Dataset) -> dict:
    return {
        "level": int(selection.level),
        "config": name,
        "k": selection.k,
        "candidates": selection.candidates,
        "num_rows": subset.num_rows,
        "types_covered": selection.types_covered,
        "type_entropy": round(selection.type_entropy, 6),
        "type_count_ratio": selection.type_count_ratio,
        "ids_sha256": ids_sha256(subset),
    }
