"""The build folder, written by `divsft build` and read by every other command and the Space:

    DIR/manifest.json      the manifest (DESIGN.md's contract), with digests of every level's ids and rows
    DIR/<config>/          one saved dataset per level (`Dataset.save_to_disk`), e.g. response_micro_d050/
    DIR/type_labels.json   type id -> the token, tag cluster or topic words behind it
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..artifacts import check_output, read_json, staged_dir, write_json
from ..errors import DivsftError, reason
from ..strategies import COMPONENTS, STRATEGIES, Strategy
from . import Record, validated

MANIFEST = "manifest.json"
TYPE_LABELS = "type_labels.json"
WHAT = "an earlier `divsft build` output (a folder with manifest.json)"
SHA256 = r"^[0-9a-f]{64}$"


class MetricValue(Record):
    value: float | None = None


class LengthQuantiles(Record):
    mean: float = Field(ge=0)
    p10: float = Field(ge=0)
    p25: float = Field(ge=0)
    p50: float = Field(ge=0)
    p75: float = Field(ge=0)
    p90: float = Field(ge=0)


class Confounds(Record):
    """What else a level's rows differ in: token lengths per component, and the mix of a source column
    ({"column": NAME, value: share, ...}) when the pool has one."""

    length_tokens: dict[Literal[COMPONENTS], LengthQuantiles]
    source_mix: dict[str, str | float] | None = None


class LevelEntry(Record):
    level: int = Field(ge=0, le=100)
    config: str = Field(pattern=r"^(instruction|response)_(macro|meso|micro)_d\d{3}$")  # also a folder name
    k: int = Field(ge=0)
    candidates: int = Field(ge=0)
    num_rows: int = Field(ge=0)
    types_covered: int = Field(ge=0)
    type_entropy: float
    type_count_ratio: float | None = None
    ids_sha256: str = Field(pattern=SHA256)
    rows_sha256: str | None = Field(None, pattern=SHA256)  # absent in builds of hf-divsft 0.1
    strata_k: list[int] | None = None  # with --control: each stratum's k
    confounds: Confounds | None = None  # absent in older builds
    metrics: dict[Literal[COMPONENTS], dict[str, MetricValue]] | None = None

    def metric_values(self) -> dict:
        """{component: {metric: {"value": v}}} (empty if built with --no-metrics)."""
        return {c: {m: {"value": v.value} for m, v in metrics.items()}
                for c, metrics in (self.metrics or {}).items()}


class Manifest(Record):
    pool: str
    pool_fingerprint: str
    pool_rows: int = Field(ge=1)
    strategy: Literal[STRATEGIES]
    size: int = Field(ge=1)
    seed: int = Field(ge=0)
    types_total: int = Field(ge=0)
    typed_rows: int = Field(ge=0)
    extractor: dict
    hf_divsft_version: str
    levels: list[LevelEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _configs_match_levels(self):
        strategy = Strategy.parse(self.strategy)
        for entry in self.levels:
            if entry.config != strategy.config_name(entry.level):
                raise ValueError(f"level {entry.level} is named {entry.config!r}, not "
                                 f"{strategy.config_name(entry.level)!r}")
        if len({entry.config for entry in self.levels}) < len(self.levels):
            raise ValueError("a level is listed twice")
        return self


def ids_sha256(ds) -> str:
    """sha256 of a subset's ids, one per line, in row order (the contract's `ids_sha256`)."""
    ids = ds.with_format("arrow")["id"].to_pylist()
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def rows_sha256(ds) -> str:
    """sha256 of every column of every row, in row order: an edited text changes it."""
    digest = hashlib.sha256(json.dumps(sorted(ds.column_names)).encode("utf-8"))
    for batch in ds.iter(batch_size=1000):
        for row in zip(*(batch[name] for name in sorted(batch))):
            digest.update(json.dumps(row, ensure_ascii=False, default=str).encode("utf-8") + b"\n")
    return digest.hexdigest()


@dataclass
class BuildFolder:
    """A validated build folder; `raw` is its manifest as written (publish passes it on unchanged)."""

    path: Path
    manifest: Manifest
    raw: dict

    @classmethod
    def read(cls, path: str | Path) -> BuildFolder:
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise DivsftError(f"{path}: not a build folder (no {MANIFEST}); "
                              f"run `divsft build --out {path}` first")
        raw = read_json(path / MANIFEST, "a build manifest")
        return cls(path, validated(Manifest, raw, path / MANIFEST), raw)

    @classmethod
    def holds_build(cls, path: Path) -> bool:
        """Whether `path` is an earlier build (the one thing `divsft build --overwrite` may replace)."""
        try:
            cls.read(path)
        except DivsftError:
            return False
        return True

    @property
    def strategy(self) -> str:
        return self.manifest.strategy

    @property
    def levels(self) -> list[LevelEntry]:
        return self.manifest.levels

    def level(self, config: str) -> LevelEntry:
        for entry in self.levels:
            if entry.config == config:
                return entry
        names = ", ".join(entry.config for entry in self.levels)
        raise DivsftError(f"{self.path}: no subset config {config!r}; choose one of {names}")

    def subset(self, config: str, verify: bool = False):
        """The saved rows of one level; `verify` checks them against the manifest's digests."""
        from datasets import load_from_disk

        entry, folder = self.level(config), self.path / config
        if not (folder / "dataset_info.json").is_file():
            raise DivsftError(f"{self.path / MANIFEST} lists '{config}' but {folder} is not a saved dataset; "
                              "rebuild")
        try:
            rows = load_from_disk(str(folder))
        except Exception as err:  # a corrupt arrow file or state.json: datasets raises many types
            raise DivsftError(f"{folder}: cannot be read as a saved dataset ({reason(err)}); "
                              "rebuild it") from err
        if verify:
            self._verify(entry, rows, folder)
        return rows

    def check_subsets(self, verify: bool = False) -> None:
        """Every level's saved rows are there (and, with `verify`, are the ones the manifest lists)."""
        for entry in self.levels:
            self.subset(entry.config, verify=verify)

    def _verify(self, entry: LevelEntry, rows, folder: Path) -> None:
        if entry.rows_sha256 is None:
            raise DivsftError(f"{self.path / MANIFEST}: built by hf-divsft "
                              f"{self.manifest.hf_divsft_version}, "
                              "which recorded no rows_sha256; rebuild it with this version")
        if rows.num_rows != entry.num_rows or ids_sha256(rows) != entry.ids_sha256:
            raise DivsftError(f"{folder}: its rows are not the ones manifest.json lists (ids_sha256); "
                              "rebuild it")
        if rows_sha256(rows) != entry.rows_sha256:
            raise DivsftError(f"{folder}: its rows were edited after the build (rows_sha256 differs); "
                              "rebuild it")

    def type_labels(self) -> dict[str, str]:
        """type id (as text) -> readable label; empty for a build without a labels file."""
        path = self.path / self.raw.get("type_labels", TYPE_LABELS)
        if not path.is_file():
            return {}
        labels = read_json(path, "a type labels file")
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise DivsftError(f"{path}: expected an object of type id -> label text")
        return labels


def check_build_output(out: str | Path, overwrite: bool, inputs=()) -> Path:
    return check_output(out, overwrite=overwrite, owned=BuildFolder.holds_build, what=WHAT, inputs=inputs)


@dataclass
class BuildWriter:
    """Fills a staged build folder: one saved dataset per level, then the labels and the manifest."""

    staging: Path

    def save_level(self, config: str, subset) -> dict:
        """Save one level's rows; returns the digests its manifest entry records."""
        subset.save_to_disk(str(self.staging / config))
        return {"ids_sha256": ids_sha256(subset), "rows_sha256": rows_sha256(subset)}

    def finish(self, manifest: dict, labels: dict) -> None:
        write_json(self.staging / TYPE_LABELS, {str(t): label for t, label in sorted(labels.items())})
        validated(Manifest, manifest, MANIFEST)  # never write a manifest the readers would refuse
        write_json(self.staging / MANIFEST, {**manifest, "type_labels": TYPE_LABELS})


@contextlib.contextmanager
def staged_build(out: str | Path, overwrite: bool) -> Iterator[BuildWriter]:
    with staged_dir(out, overwrite=overwrite, owned=BuildFolder.holds_build, what=WHAT) as staging:
        yield BuildWriter(staging)
