"""`divsft build`: pool -> types -> one selector -> a saved subset per diversity level + manifest.json."""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from tqdm.auto import tqdm

from . import __version__
from .arrays import list_lengths
from .config import BuildConfig, MeasureConfig
from .controls import Control, StratifiedSelector, level_confounds, stratify
from .conversations import chat_format, turn_counts
from .data import Pool, arrow_column, pool_fingerprint, read_pool, remapped, selected_rows
from .embedding import load_embedder
from .engines import using
from .errors import DivsftError
from .formats.build_folder import check_build_output, staged_build
from .measure import add_metric_features, measure_dataset
from .select import Selection, TypeSelector
from .strategies import COMPONENTS, Strategy
from .tokenization import TokenizeColumn, load_tokenizer

HELPER_SUFFIXES = ("_token_ids", "_embedding")  # big per-row features stay in the cache, not in subsets


def build(config: BuildConfig) -> dict:
    """Build every level of one strategy into `config.out`; returns the manifest it wrote (or the dry run's
    plan). The per-row maps run on `config.engine`; a dry run reads the pool locally and starts nothing."""
    strategy = Strategy.parse(config.strategy)
    extractor = _extractor(strategy, config)
    engine_name = "local" if config.dry_run else config.engine
    # models load (and endpoints answer) while the engine starts: a Ray instance takes seconds
    with using(engine_name, config.ray_address, lambda: _check_models(extractor, config)) as engine:
        if config.dry_run:
            return plan(config, _read(config), extractor)
        return _build(config, strategy, extractor, engine)


def _read(config: BuildConfig) -> Pool:
    return read_pool(config.pool, config.columns, config.split, config.skip_invalid)


def _build(config: BuildConfig, strategy: Strategy, extractor, engine) -> dict:
    controls = [Control.parse(spec) for spec in config.control]
    typed, origin = _typed_pool(config, extractor, controls)
    selections, selected_from = _select_levels(typed, config, strategy, controls)
    measuring = _measure_config(config)
    metrics = _measure_levels(typed, selections, measuring) if measuring else [None] * len(selections)
    confounds = level_confounds(typed, selections, config.tokenizer, _source_column(controls, typed))
    manifest = _manifest(config, strategy, origin, selected_from, extractor, measuring, engine.describe())
    helpers = [c for c in typed.column_names if c.endswith(HELPER_SUFFIXES)]
    subsets = remapped(typed.remove_columns(helpers))  # pages in only the rows that are written
    del typed
    with staged_build(config.out, config.overwrite) as writer:
        for selection, measured, confound in zip(selections, metrics, confounds):
            name = strategy.config_name(int(selection.level))
            # each level read through maps of its own, dropped with it: the pages its rows touched leave
            # memory instead of piling up over the levels
            rows = selected_rows(remapped(subsets), selection.indices)
            entry = _level_entry(name, selection, **writer.save_level(name, rows))
            entry["confounds"] = confound  # lengths and source mix: what else the level's rows differ in
            manifest["levels"].append({**entry, "metrics": measured} if measured else entry)
        writer.finish(manifest, extractor.type_labels(subsets))  # what each type id stands for
    return manifest


def _typed_pool(config: BuildConfig, extractor, controls: list[Control]) -> tuple[Dataset, dict]:
    """The pool with its types, through fresh memory maps, and what the manifest records of the pool.

    A memory map keeps every page read through it in this process's RSS while it lives (GBs at 1M rows):
    the pool is read here, so that on return its maps, and those typing read through, are dropped; the
    fingerprint, which reads every text, reads through maps of its own, dropped at once.
    """
    source = _read(config)
    for control in controls:
        control.check(source.rows.column_names)  # before typing, which can take a while
    pool = _length_band(source.rows, config) if config.response_tokens else source.rows
    origin = {"pool_fingerprint": pool_fingerprint(remapped(pool)), "pool_rows": source.source_rows,
              "chat_column": source.chat_column, "skipped": source.skipped}
    return remapped(extractor.add_types(pool, num_proc=config.num_proc)), origin


def _extractor(strategy: Strategy, config: BuildConfig):
    """The extractor, once the output location is known to be writable; it has loaded nothing yet."""
    # local models are inputs too
    inputs = [config.pool, config.tokenizer, config.embedder, config.tag_embedder, config.tagger_model]
    check_build_output(config.out, config.overwrite, inputs=inputs)  # before any expensive step
    return strategy.extractor(config)


def _check_models(extractor, config: BuildConfig) -> None:
    """Load every model and reach every endpoint the build needs, so that one that fails does so before
    the pool is read."""
    extractor.check()
    if config.metrics or config.response_tokens:
        load_tokenizer(config.tokenizer)
    if config.metrics:
        load_embedder(config.embedder)


def _select_levels(typed: Dataset, config: BuildConfig, strategy: Strategy,
                   controls: list[Control]) -> tuple[list[Selection], dict]:
    """Every level's rows, and what the manifest records of what they were selected from. The selector's
    arrays (several per (row, type) pair) are freed on return, before the subsets are written."""
    types = arrow_column(typed, "types")
    control = None
    if controls:
        strata, names = stratify(typed, controls, config.tokenizer, config.num_proc)
        selector = StratifiedSelector(types, strata, names, seed=config.seed)
        control = {"controls": [str(c) for c in controls], "strata": [
            {"name": name, "typed_rows": len(rows), "quota": int(quota)}
            for name, rows, quota in zip(names, selector.rows, selector.quotas(config.size))]}
    else:
        selector = TypeSelector(types, seed=config.seed)
    selector.k_min(config.size)  # a pool too small for --size fails here, not under a progress bar
    with tqdm(sorted(config.levels), desc=f"Selecting {strategy.name} levels", unit="level") as bar:
        selections = [selector.select(level, config.size) for level in bar]
    return selections, {"types_total": selector.num_types, "typed_rows": selector.typed_rows,
                        "control": control}


def _source_column(controls: list[Control], typed: Dataset) -> str | None:
    """The column whose mix each level records: a source control's, else the pool's `source`, if any."""
    column = next((control.column for control in controls if control.kind == "source"), "source")
    return column if column in typed.column_names else None


def _measure_levels(typed: Dataset, selections: list[Selection], measuring: MeasureConfig) -> list[dict]:
    """The six metrics of every level, from features computed once for the rows any level holds."""
    union = np.unique(np.concatenate([selection.indices for selection in selections]))
    measured = add_metric_features(selected_rows(typed, union), measuring, keep_in_memory=True)
    return [measure_dataset(measured.select(np.searchsorted(union, selection.indices)), measuring,
                            keep_in_memory=True) for selection in selections]


def _manifest(config: BuildConfig, strategy: Strategy, origin: dict, selected_from: dict, extractor,
              measuring: MeasureConfig | None, engine: dict) -> dict:
    return {
        "pool": config.pool,
        **origin,  # pool_fingerprint, pool_rows, chat_column, skipped
        "strategy": strategy.name,
        "size": config.size,
        "seed": config.seed,
        **selected_from,  # types_total, typed_rows, control (its strata, or None)
        "extractor": extractor.describe(),
        "response_tokens": list(config.response_tokens) if config.response_tokens else None,
        "metrics_settings": measuring.settings() if measuring else None,
        "hf_divsft_version": __version__,
        "engine": engine,  # where the maps ran: {"name": "local"}, or Ray, its cluster, the files it read
        "levels": [],
    }


def plan(config: BuildConfig, source: Pool, extractor, sample_rows: int = 2000) -> dict:
    """What a build would do with this pool, from the pool and a seeded sample of it; nothing is written."""
    pool = source.rows
    tokenizer = load_tokenizer(config.tokenizer)
    sample = pool.select(np.sort(np.random.default_rng(config.seed).permutation(pool.num_rows)[:sample_rows]))
    components = {}
    turns = (turn_counts(arrow_column(pool, source.chat_column), chat_format(
        pool.features.arrow_schema.field(source.chat_column).type)) if source.chat_column else {})
    for component in COMPONENTS:
        lengths = tokenizer.count_batch(sample[component][:])
        components[component] = {"turns": turns.get(component, pool.num_rows),
                                 "tokens_estimate": round(np.mean(lengths) * pool.num_rows)}
    steps = [f"read {config.pool}: {source.source_rows:,} rows"
             + (f", {source.skipped['rows']:,} skipped" if source.skipped["rows"] else "")
             + (f", conversations in '{source.chat_column}'" if source.chat_column else "")]
    if config.response_tokens:
        steps.append("keep rows whose response has {}..{} tokens".format(*config.response_tokens))
    steps += extractor.plan(pool.num_rows)
    if config.metrics:
        steps.append(f"tokenize and embed both components for the six metrics ({config.embedder})")
    if config.control:
        steps.append(f"split the typed rows into strata by {', '.join(config.control)} and select within each "
                     "stratum its share of every level")
    steps += ["prune types once (Algorithm 1)",
              (f"select {len(config.levels)} levels ({_joined(sorted(config.levels))}%) "
              f"of {config.size:,} rows each (Algorithm 2)"),
              f"write {config.out}/<config>/ for each level, type_labels.json and manifest.json"]
    return {"dry_run": True, "pool": config.pool, "rows": pool.num_rows, "source_rows": source.source_rows,
            "skipped": source.skipped, "chat_column": source.chat_column, "components": components,
            "tokens_estimated_from": sample.num_rows, "steps": steps}


def _joined(values) -> str:
    return ",".join(map(str, values))


def _measure_config(config: BuildConfig) -> MeasureConfig | None:
    """The metrics use the build's own tokenizer and embedder, so their feature columns are shared."""
    if not config.metrics:
        return None
    return MeasureConfig(tokenizer=config.tokenizer, embedder=config.embedder, seed=config.seed,
                         num_proc=config.num_proc)


def _length_band(pool: Dataset, config: BuildConfig) -> Dataset:
    """Keep rows whose response has MIN..MAX tokens (the paper's length-control ablation)."""
    low, high = config.response_tokens
    tokenized = TokenizeColumn("response", config.tokenizer).apply(pool, num_proc=config.num_proc)
    lengths = list_lengths(arrow_column(tokenized, "response_token_ids"))
    keep = np.flatnonzero((lengths >= low) & (lengths <= high))
    if keep.size == 0:
        raise DivsftError(f"--response-tokens {low},{high}: no pool response has that many tokens")
    return tokenized.select(keep)


def _level_entry(name: str, selection: Selection, ids_sha256: str, rows_sha256: str) -> dict:
    return {
        "level": int(selection.level),
        "config": name,
        "k": selection.k,
        "candidates": selection.candidates,
        "num_rows": len(selection.indices),
        "types_covered": selection.types_covered,
        "type_entropy": round(selection.type_entropy, 6),
        "type_count_ratio": selection.type_count_ratio,
        **({"strata_k": list(selection.strata_k)} if selection.strata_k else {}),
        "ids_sha256": ids_sha256,
        "rows_sha256": rows_sha256,
    }
