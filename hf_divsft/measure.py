"""`divsft measure`: the six metrics on both components of a dataset, a build folder, a Hub id or a file.

Token ids and embeddings are the same cached `.map()` columns the extractors use, so a build measures
its levels from features computed once for the whole pool. This module also owns the metrics report
that `divsft measure` writes and `divsft plot` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from datasets import Dataset
from pydantic import Field
from tqdm.auto import tqdm

from . import __version__
from .artifacts import check_output, read_json, write_json
from .config import MeasureConfig
from .data import arrow_column, load_pool
from .embedding import EmbedColumn, embedding_matrix, load_embedder
from .errors import DivsftError
from .formats import Record, validated
from .formats.build_folder import BuildFolder, MetricValue
from .metrics import METRICS, MetricInputs
from .strategies import COMPONENTS, STRATEGIES
from .tokenization import TokenizeColumn, load_tokenizer

REPORT_WHAT = "an earlier `divsft measure` report"


def add_metric_features(ds: Dataset, config: MeasureConfig, keep_in_memory: bool = False) -> Dataset:
    """Token ids and embeddings of every measured component, as cached columns (skipped when present)."""
    for component in config.components:
        for column in (TokenizeColumn(component, config.tokenizer), EmbedColumn(component, config.embedder)):
            ds = column.apply(ds, num_proc=config.num_proc, keep_in_memory=keep_in_memory)
    return ds


def measure_dataset(ds: Dataset, config: MeasureConfig, keep_in_memory: bool = False) -> dict:
    """{component: {metric: {"value": ..., details}}} for one dataset."""
    ds = add_metric_features(ds, config, keep_in_memory)
    report = {}
    for component in config.components:
        inputs = MetricInputs(arrow_column(ds, component), arrow_column(ds, f"{component}_token_ids"),
                              embedding_matrix(ds, f"{component}_embedding"), config.max_n)
        report[component] = {name: metric.compute(inputs, config) for name, metric in METRICS.items()}
    return report


def is_report(path: Path) -> bool:
    """Whether `path` holds a report this module wrote (the one thing `measure --overwrite` replaces)."""
    try:
        report = read_json(path, REPORT_WHAT)
    except DivsftError:
        return False
    return isinstance(report, dict) and {"source", "settings", "hf_divsft_version"} <= set(report)


def measure(config: MeasureConfig) -> dict:
    """Metrics of a build folder (every level) or of one dataset; written to `config.out` when it is set."""
    if config.source is None:
        raise DivsftError("give the dataset to measure (a build folder, saved dataset, Hub id or data file)")
    if config.out:
        check_output(config.out, overwrite=config.overwrite, owned=is_report, what=REPORT_WHAT,
                     inputs=[config.source, config.tokenizer, config.embedder])
    build = BuildFolder.read(config.source) if (Path(config.source) / "manifest.json").is_file() else None
    if build:
        build.check_subsets()  # a missing level fails now, not after the others were measured
    load_tokenizer(config.tokenizer)  # a bad --tokenizer or --embedder fails before any data is read
    load_embedder(config.embedder)
    report = {"source": config.source, "settings": config.settings(), "hf_divsft_version": __version__}
    if build:
        report["strategy"] = build.strategy
        report["levels"] = [
            {"level": entry.level, "config": entry.config,
             "metrics": measure_dataset(build.subset(entry.config), config, keep_in_memory=True)}
            for entry in tqdm(build.levels, desc="Measuring levels", unit="level")
        ]
    else:
        ds = load_pool(config.source, config.columns, config.split)
        report["num_rows"] = ds.num_rows
        report["metrics"] = measure_dataset(ds, config, keep_in_memory=True)
    if config.out:
        write_json(config.out, report)
    return report


class MeasuredLevel(Record):
    level: int = Field(ge=0, le=100)
    config: str
    metrics: dict[Literal[COMPONENTS], dict[str, MetricValue]]


class LevelReport(Record):
    strategy: Literal[STRATEGIES]
    levels: list[MeasuredLevel] = Field(min_length=1)


def read_level_metrics(source: str | Path) -> tuple[str, list[MeasuredLevel]]:
    """(strategy, levels with metrics, by level) from a build folder or a `divsft measure` report of one."""
    path = Path(source)
    if path.is_dir():
        build = BuildFolder.read(path)
        data, where = build.raw, path / "manifest.json"
    else:
        data, where = read_json(path, "a build folder or a `divsft measure` report"), path
        if not is_report(path):
            raise DivsftError(f"{source}: not a build folder or a `divsft measure` report")
    if not isinstance(data, dict) or not all(isinstance(e, dict) and e.get("metrics")
                                             for e in data.get("levels") or []):
        raise DivsftError(f"{where}: has no per-level metrics; "
                          f"run `divsft measure {source} --out metrics.json`")
    report = validated(LevelReport, data, where)
    return report.strategy, sorted(report.levels, key=lambda entry: entry.level)
