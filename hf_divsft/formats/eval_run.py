"""The eval run folder, written by `divsft eval` and read by `divsft analyze` and the Space:

    DIR/summary.json        score, interval, judge, model, the subset it was trained on, versions
    DIR/generations.jsonl   per prompt: id, eval config, prompt, reference answer, output, output tokens
    DIR/judgments.jsonl     per prompt (and order, for pairwise): verdict and score, or the reference NLL

and `training_subset.json`, what `divsft train` records in a model folder about the subset it trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..artifacts import check_output, read_json, staged_dir, write_json, write_jsonl
from ..errors import DivsftError
from . import Record, validated

SUMMARY = "summary.json"
GENERATIONS = "generations.jsonl"
JUDGMENTS = "judgments.jsonl"
TRAINING_SUBSET = "training_subset.json"
WHAT = "an earlier `divsft eval` output (a folder with summary.json)"
ORDERS = ("model_first", "reference_first")


class TrainingSubset(Record):
    """Where a model's training rows came from; `config` and `ids_sha256` place it in a build."""

    source: str
    num_rows: int = Field(ge=0)
    model: str | None = None
    config: str | None = None
    strategy: str | None = None
    level: int | None = None
    pool: str | None = None
    revision: str | None = None
    ids_sha256: str | None = None


class Summary(Record):
    judge: dict
    metric: str
    score: float | None
    ci95: list[float] | None = Field(None, min_length=2, max_length=2)
    n: int = Field(ge=0)
    model: str
    adapter: str | None = None
    subset: TrainingSubset | None = None
    eval_set: str
    configs: list[str]


class Generation(Record):
    id: str
    config: str
    instruction: str
    reference: str | None = None
    output: str
    tokens: int = Field(ge=0)


class NllJudgment(Record):
    id: str
    nll_sum: float
    tokens: int = Field(ge=0)


class PairwiseJudgment(Record):
    id: str
    order: Literal[ORDERS]
    verdict: Literal["A", "B", "C"] | None
    model_score: Literal[0.0, 0.5, 1.0] | None
    reply: str


@dataclass
class EvalRun:
    path: Path
    summary: Summary
    generations: list[Generation]
    judgments: list[NllJudgment | PairwiseJudgment]

    @classmethod
    def read(cls, path: str | Path) -> EvalRun:
        path = Path(path)
        summary = validated(Summary, read_json(path / SUMMARY, "an eval summary"), path / SUMMARY)
        generations = [validated(Generation, row, path / GENERATIONS, f"line {n}: ")
                       for n, row in _jsonl(path / GENERATIONS)]
        judgments = [validated(NllJudgment if "nll_sum" in row else PairwiseJudgment, row, path / JUDGMENTS,
                               f"line {n}: ") for n, row in _jsonl(path / JUDGMENTS)]
        return cls(path, summary, generations, judgments)

    @classmethod
    def holds_run(cls, path: Path) -> bool:
        """Whether `path` is an earlier eval run (the one thing `divsft eval --overwrite` may replace)."""
        try:
            validated(Summary, read_json(path / SUMMARY, "an eval summary"), path / SUMMARY)
        except DivsftError:
            return False
        return True


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) of each non-empty line; a missing file is an empty run part."""
    if not path.is_file():
        return []
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DivsftError(f"{path}: not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DivsftError(f"{path}: line {number}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DivsftError(f"{path}: line {number}: expected a JSON object")
        rows.append((number, row))
    return rows


def check_eval_output(out: str | Path, overwrite: bool, inputs=()) -> Path:
    return check_output(out, overwrite=overwrite, owned=EvalRun.holds_run, what=WHAT, inputs=inputs)


def write_eval_run(out: str | Path, overwrite: bool, generations: list[dict], judgments: list[dict],
                   summary: dict) -> None:
    """The three files, staged and moved into place together; each is checked against its format first."""
    for row in generations:
        validated(Generation, row, GENERATIONS)
    validated(Summary, summary, SUMMARY)
    with staged_dir(out, overwrite=overwrite, owned=EvalRun.holds_run, what=WHAT) as staging:
        write_jsonl(staging / GENERATIONS, generations)
        write_jsonl(staging / JUDGMENTS, judgments)
        write_json(staging / SUMMARY, summary)


def read_training_subset(folder: str | Path | None) -> TrainingSubset | None:
    """What `divsft train` recorded in a model or adapter folder, if anything."""
    path = Path(folder) / TRAINING_SUBSET if folder else None
    if path is None or not path.is_file():
        return None
    return validated(TrainingSubset, read_json(path, "a training subset record"), path)


def write_training_subset(folder: str | Path, record: dict) -> None:
    validated(TrainingSubset, record, TRAINING_SUBSET)
    write_json(Path(folder) / TRAINING_SUBSET, record)
