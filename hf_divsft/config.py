"""Every knob of every command, declared once: the CLI, YAML files and Python share these dataclasses.

Each field holds its type, default, bounds and help text. pydantic checks types and bounds when a config
is made (a YAML `size: "abc"` or `--num-proc -1` is refused, naming the field), `cli.py` builds each
command's options from the fields, and the library functions take the config objects. This module
imports nothing heavy, so the CLI starts fast.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from .assets import (
    DEFAULT_EMBEDDER,
    DEFAULT_EVAL_SET,
    DEFAULT_MODEL,
    DEFAULT_POOL,
    DEFAULT_TAG_EMBEDDER,
    DEFAULT_TOKENIZER,
)
from .engines import ENGINES
from .errors import DivsftError
from .strategies import COMPONENTS, STRATEGIES

PAPER_LEVELS = (0, 17, 33, 50, 67, 83, 100)
PAPER_BAND = (10, 500)  # a token is a micro type when 10 < count <= 500 in the paper's 117K pool
TAGGERS = ("spacy", "openai", "transformers", "vllm")
JUDGES = ("reference-nll", "pairwise")
EVAL_CONFIGS = ("alpaca_eval", "arena_hard")


class ConfigError(DivsftError):
    """One bad value: `loc` names the field (`("columns", "id")` for a nested one)."""

    def __init__(self, loc: tuple, value: Any, reason: str):
        self.loc, self.value, self.reason = loc, value, reason
        super().__init__(f"{'.'.join(map(str, loc))}={value!r}: {reason}")


def _first_error(err: ValidationError) -> DivsftError:
    detail = err.errors(include_url=False)[0]
    cause = (detail.get("ctx") or {}).get("error")
    if isinstance(cause, DivsftError):  # raised by a __post_init__ check: already says what to do
        return cause
    loc = tuple(part for part in detail["loc"] if not isinstance(part, int)) or ("value",)
    if detail["type"].startswith("missing"):
        return ConfigError(loc, None, "required")
    return ConfigError(loc, detail.get("input"), _plain(detail))


def _plain(detail: dict) -> str:
    """pydantic's message in the words of this CLI (`must be at least 1`, `choose one of ...`)."""
    ctx = detail.get("ctx") or {}
    words = {
        "greater_than_equal": "must be at least {ge}", "greater_than": "must be more than {gt}",
        "less_than_equal": "must be at most {le}", "less_than": "must be less than {lt}",
        "literal_error": "unknown; choose one of {expected}", "int_type": "give a whole number",
        "int_parsing": "give a whole number", "int_from_float": "give a whole number",
        "float_type": "give a number", "float_parsing": "give a number", "bool_type": "give true or false",
        "string_type": "give text", "list_type": "give a list", "too_short": "give at least {min_length}",
        "dict_type": "give a mapping", "string_too_short": "must not be empty",
    }.get(detail["type"])
    return words.format(**ctx) if words else detail["msg"].removeprefix("Value error, ")


def knobs(cls):
    """A config dataclass whose values pydantic checks (strictly: no silent `"1"` -> 1); a bad one is one
    error."""
    cls = pydantic_dataclass(cls, config=ConfigDict(extra="forbid", strict=True))
    init = cls.__init__

    @functools.wraps(init)
    def checked_init(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except ValidationError as err:
            raise _first_error(err) from None

    cls.__init__ = checked_init
    return cls


def _split(value: Any) -> Any:
    """`"0,50,100"` (a flag) or `[0, 50, 100]` (YAML) as a list; each item is then checked for its type."""
    if isinstance(value, str):
        return [_number(part.strip()) for part in value.split(",") if part.strip()]
    return list(value) if isinstance(value, tuple) else value


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text  # not a number: the item's type check names it


def _pair(value: Any) -> Any:
    value = _split(value)
    if isinstance(value, list) and len(value) != 2:
        raise ValueError("give two whole numbers, MIN,MAX")
    return tuple(value) if isinstance(value, list) else value


def _words(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value) if isinstance(value, tuple) else value


def _text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


PathText = Annotated[str, BeforeValidator(_text), Field(min_length=1)]  # a str, or a Path from Python callers
Paths = Annotated[list[PathText], BeforeValidator(_words)]
IntList = Annotated[list[int], BeforeValidator(_split)]
IntPair = Annotated[tuple[int, int], BeforeValidator(_pair)]
Words = Annotated[list[str], BeforeValidator(_words)]
Component = Literal[COMPONENTS]


def _help(text: str, **extra) -> dict:
    return {"description": text, **extra}


@knobs
class PoolColumns:
    """Which pool columns hold each field; the CLI's `--*-column` flags set these."""

    instruction: str = Field("instruction", **_help("Pool column holding the instruction"))
    response: str = Field("response", **_help("Pool column holding the response"))
    input: str = Field("input", **_help("Optional column appended to the instruction after a blank line"))
    messages: str = Field(
        "messages", **_help("Chat column of OpenAI role/content turns (when no instruction/response)"))
    conversations: str = Field("conversations", **_help("Chat column of ShareGPT from/value turns"))
    id: str = Field("id", **_help("Column of unique row ids (generated, by position, if absent)"))


COLUMNS_FLAG = {"json_schema_extra": {"flag": "{}-column"}}  # columns.id is `--id-column`


@knobs
class BuildConfig:
    """Every knob of `divsft build`."""

    pool: PathText = Field(**_help("Hub id, Hub-layout folder, saved dataset, or .jsonl/.json/.parquet file"))
    strategy: Literal[STRATEGIES] = Field(**_help("{instruction,response}-{macro,meso,micro}"))
    out: PathText = Field(**_help("Output folder: one saved dataset per level + manifest.json"))
    levels: IntList = Field(
        default_factory=lambda: list(PAPER_LEVELS), **_help("Diversity levels in percent"))
    size: int = Field(10_000, ge=1, **_help("Samples per subset (N)"))
    seed: int = Field(
        0, ge=0, **_help("Random seed: the same pool, strategy, N and seed give the same subsets"))
    split: str = Field("train", **_help("Split of a Hub or Hub-layout pool"))
    columns: PoolColumns = Field(default_factory=PoolColumns, **COLUMNS_FLAG)
    tokenizer: str = Field(
        DEFAULT_TOKENIZER, **_help("smollm2 (bundled GGUF), whitespace, or a path / Hub id"))
    band: IntPair = Field(PAPER_BAND, **_help("micro: LOW,HIGH; a token is a type when LOW < count <= HIGH"))
    band_scale: bool = Field(False, **_help("micro: scale the band from the paper's 117K pool to this pool"))
    frequency: Literal["occurrences", "samples"] = Field(
        "occurrences", **_help("micro: count token 'occurrences' or 'samples' holding the token"))
    embedder: str = Field(
        DEFAULT_EMBEDDER, **_help("minilm-static (fast), minilm, or a sentence-transformers path"))
    min_cluster_size: int = Field(30, ge=2, **_help("macro: HDBSCAN's smallest cluster"))
    umap_epochs: int = Field(50, ge=0, **_help("macro: UMAP optimisation epochs; 0 = UMAP's own schedule"))
    noise: Literal["drop", "type"] = Field(
        "drop", **_help("macro: HDBSCAN outliers get no type, or share one"))
    macro_sample: int = Field(
        50_000, ge=100, **_help("macro: fit UMAP and HDBSCAN on a seeded sample of this "
                                "many rows; the others take their nearest rows' cluster"))
    tagger: Literal[TAGGERS] = Field(
        "spacy", **_help("meso: spacy (offline), openai (an endpoint), transformers, or vllm (an "
                         "engine in each worker: with --engine ray, one per GPU)"))
    tagger_model: str | None = Field(None, **_help("meso: the model of --tagger openai/transformers"))
    base_url: str | None = Field(None, **_help("meso: OpenAI-compatible base URL; key from OPENAI_API_KEY"))
    tagger_concurrency: int = Field(
        8, ge=1, le=256, **_help("meso: requests the openai tagger has in flight"))
    tag_alpha: int = Field(20, ge=1, **_help("meso: drop tags seen in fewer samples (InsTag's long tail)"))
    tag_embedder: str = Field(
        DEFAULT_TAG_EMBEDDER, **_help("meso: embeds the tag phrases: minilm (float64, the same clusters "
                                      "on every CPU), minilm-static, or a sentence-transformers path"))
    tag_similarity: float = Field(
        0.85, gt=0, le=1, **_help("meso: tags at least this cosine-similar are one type"))
    tag_association: float = Field(
        0.95, gt=0, le=1, **_help("meso: tags implying each other this often merge"))
    response_tokens: IntPair | None = Field(
        None, **_help("Keep only responses of MIN,MAX tokens (length ablation)"))
    control: Words = Field(
        default_factory=list, **_help("Hold these fixed across levels: length[:COMPONENT] (response by "
                                      "default), source[:COLUMN] (column source by default); comma-separated"))
    skip_invalid: bool = Field(
        False, **_help("Skip (and count in the manifest) rows that are not usable samples"))
    metrics: bool = Field(True, **_help("Measure the six metrics of every level into the manifest"))
    num_proc: int | None = Field(None, ge=1, **_help("Processes for datasets.map"))
    engine: Literal[ENGINES] = Field(
        "local", **_help("Where the per-row maps run: local (datasets.map) or ray (Ray Data)"))
    ray_address: str | None = Field(
        None, **_help("ray: the cluster to join (host:port, or auto); none starts a local instance"))
    overwrite: bool = Field(False, **_help("Replace --out if it holds an earlier build"))
    dry_run: bool = Field(False, **_help("Read the pool and print its size and the steps a build would run; "
                                         "write nothing"))

    def __post_init__(self):
        check_levels(self.levels)
        if not 0 <= self.band[0] < self.band[1]:
            raise DivsftError(f"--band {_joined(self.band)}: need 0 <= low < high")
        if self.response_tokens and not 0 <= self.response_tokens[0] <= self.response_tokens[1]:
            raise DivsftError(f"--response-tokens {_joined(self.response_tokens)}: need 0 <= MIN <= MAX")
        from .controls import Control  # numpy and the selector: loaded only once a build is configured

        for spec in self.control:
            Control.parse(spec)
        if self.tagger != "spacy" and not self.tagger_model:
            raise DivsftError(f"--tagger {self.tagger} needs --tagger-model NAME")


@knobs
class MeasureConfig:
    """How the six metrics are computed (`divsft build` uses it too), and for `divsft measure`, of what."""

    source: PathText | None = Field(
        None, **_help("Build folder (every level), saved dataset, Hub id, or data file"))
    out: PathText | None = Field(None, **_help("Where to write the metrics report (JSON)"))
    split: str = Field("train", **_help("Split of a Hub or Hub-layout dataset"))
    columns: PoolColumns = Field(default_factory=PoolColumns, **COLUMNS_FLAG)
    tokenizer: str = Field(
        DEFAULT_TOKENIZER, **_help("smollm2 (bundled GGUF), whitespace, or a path / Hub id"))
    embedder: str = Field(
        DEFAULT_EMBEDDER, **_help("minilm-static (fast), minilm, or a sentence-transformers path"))
    components: Annotated[list[Component], BeforeValidator(_words)] = Field(
        default_factory=lambda: list(COMPONENTS), min_length=1, **_help("Components to measure"))
    max_n: int = Field(4, ge=1, le=8, **_help("Largest n for the n-gram ratio and Self-BLEU"))
    self_bleu_sample: int = Field(
        20_000, ge=0, **_help("Self-BLEU on a seeded sample of this many texts; 0 = all"))
    seed: int = Field(0, ge=0, **_help("Random seed of the Self-BLEU sample"))
    num_proc: int | None = Field(None, ge=1, **_help("Processes for datasets.map"))
    overwrite: bool = Field(False, **_help("Replace --out if it holds an earlier report"))

    SETTINGS = ("tokenizer", "embedder", "components", "max_n", "self_bleu_sample", "seed")

    def settings(self) -> dict:
        """What the numbers depend on (recorded beside them)."""
        return {key: getattr(self, key) for key in self.SETTINGS}


@knobs
class PlotConfig:
    sources: Paths = Field(
        min_length=1, **_help("Build folders or `divsft measure` reports of build folders"))
    out: PathText = Field(**_help("PNG file to write"))
    overwrite: bool = Field(False, **_help("Replace --out if it holds an earlier plot"))


@knobs
class PublishConfig:
    """Every knob of `divsft publish`."""

    builds: Paths = Field(
        min_length=1, **_help("Build folders (the --out of `divsft build`), one per strategy"))
    repo: str = Field(**_help("Hub dataset repo ORG/NAME"))
    version: str = Field(**_help("Release version X.Y.Z, tagged vX.Y.Z; never republished"))
    hub_dir: PathText | None = Field(
        None, **_help("A bare local git repo standing for the Hub repo (created if missing)"))
    dry_run: bool = Field(False, **_help("List what would be committed and tagged; change nothing"))
    license: str | None = Field(None, **_help("Card license (default: the pool card's, else 'other')"))
    private: bool = Field(False, **_help("Create the Hub repo private"))


@knobs
class EvalConfig:
    """Every knob of `divsft eval`."""

    out: PathText = Field(**_help("Output folder: generations.jsonl, judgments.jsonl, summary.json"))
    model: PathText = Field(DEFAULT_MODEL, **_help("smollm2 (bundled), a model folder or a Hub id"))
    adapter: PathText | None = Field(
        None, **_help("A LoRA adapter folder (from divsft train) on top of --model"))
    eval_set: PathText = Field(
        DEFAULT_EVAL_SET, **_help("Hub-layout eval set with alpaca_eval and arena_hard configs"))
    configs: Annotated[list[Literal[EVAL_CONFIGS]], BeforeValidator(_words)] = Field(
        default_factory=lambda: list(EVAL_CONFIGS), min_length=1, **_help("Eval configs"))
    judge: Literal[JUDGES] = Field(
        "reference-nll", **_help("reference-nll (offline proxy) or pairwise (an LLM)"))
    judge_model: str | None = Field(
        None, **_help("pairwise: the judge model (server name, or a local model)"))
    judge_base_url: str | None = Field(
        None, **_help("pairwise: OpenAI-compatible base URL; key from JUDGE_API_KEY"))
    judge_max_tokens: int = Field(512, ge=1, **_help("pairwise: longest judge reply"))
    judge_retries: int = Field(1, ge=0, **_help("pairwise: asks again when a reply has no verdict"))
    judge_cache: PathText | None = Field(
        None, **_help("pairwise: SQLite file of judge replies (default: hf-divsft's)"))
    limit: int | None = Field(
        None, ge=1, **_help("A seeded sample of this many prompts, spread over the configs"))
    seed: int = Field(0, ge=0, **_help("Random seed of the prompt sample"))
    max_new_tokens: int = Field(512, ge=1, **_help("Longest generated answer"))
    batch_size: int = Field(8, ge=1, **_help("Prompts generated together"))
    overwrite: bool = Field(False, **_help("Replace --out if it holds an earlier eval run"))

    def __post_init__(self):
        if self.judge == "pairwise" and not self.judge_model:
            raise DivsftError("--judge pairwise needs --judge-model (and --judge-base-url for a server)")
        repeated = sorted({c for c in self.configs if self.configs.count(c) > 1})
        if repeated:
            raise DivsftError(f"--configs {','.join(self.configs)}: {','.join(repeated)} repeated; "
                              "give each once")


@knobs
class AnalyzeConfig:
    runs: Paths = Field(min_length=1, **_help("`divsft eval` output folders of models trained on subsets"))
    out: PathText = Field(**_help("Output folder: analysis.json, results.md and two PNG plots"))
    overwrite: bool = Field(False, **_help("Replace --out if it holds an earlier analysis"))


@knobs
class DemoConfig:
    """`divsft demo-results`: every size is small so the loop runs on a CPU in minutes."""

    out: PathText = Field("demo-results", **_help("Output folder (builds/, models/, runs/, analysis/)"))
    pool: PathText = Field(DEFAULT_POOL, **_help("The pool to sample"))
    eval_set: PathText = Field(DEFAULT_EVAL_SET, **_help("The eval set (Hub layout)"))
    pool_rows: int = Field(1000, ge=1, **_help("Pool rows sampled"))
    levels: IntList = Field(default_factory=lambda: [0, 50, 100], min_length=2, **_help("Diversity levels"))
    size: int = Field(32, ge=1, **_help("Samples per subset"))
    prompts: int = Field(4, ge=1, **_help("Eval prompts per model"))
    train_steps: int = Field(3, ge=1, **_help("LoRA steps per subset"))
    max_new_tokens: int = Field(40, ge=1, **_help("Longest generated answer"))
    seed: int = Field(0, ge=0, **_help("Random seed"))
    overwrite: bool = Field(False, **_help("Replace --out if it holds earlier demo results"))

    STRATEGIES = ("response-micro", "instruction-micro")

    def __post_init__(self):
        check_levels(self.levels)


STAGES = ("build", "train", "eval", "analyze")
# options of each stage that an experiment sets from its grid and folder
SET_BY_EXPERIMENT = {"build": ("pool", "strategy", "out", "levels", "size", "seed", "overwrite", "dry_run"),
                     "eval": ("out", "model", "adapter", "overwrite")}


@knobs
class ExperimentTrain:
    """The `train:` block of an experiment file: the recipe every subset is trained with."""

    recipe: PathText = Field(**_help("A `divsft train` recipe YAML (e.g. recipes/smollm2-135m/sft/config_lora.yaml)"))
    overrides: dict[str, Any] = Field(
        default_factory=dict, **_help("Recipe options to change, e.g. {max_steps: 3}"))
    accelerate_config: PathText | None = Field(
        None, **_help("Launch each run with `accelerate launch --config_file` this file (else one process)"))
    tokens_per_second: float | None = Field(
        None, gt=0, **_help("The recipe's measured training throughput, for --dry-run's time estimate"))


@knobs
class ExperimentSpec:
    """An experiment file: the pool, the grid of subsets, how each is trained and evaluated."""

    pool: PathText = Field(**_help("The pool (any `divsft build --pool`)"))
    strategies: Annotated[list[Literal[STRATEGIES]], BeforeValidator(_words)] = Field(
        min_length=1, **_help("Strategies to build"))
    train: ExperimentTrain = Field(**_help("The train recipe and its overrides"))
    levels: IntList = Field(default_factory=lambda: list(PAPER_LEVELS), **_help("Diversity levels"))
    size: int = Field(10_000, ge=1, **_help("Samples per subset (N)"))
    seeds: IntList = Field(default_factory=lambda: [0], min_length=1,
                           **_help("Repeats: each seed builds, trains and evaluates the grid once"))
    pool_rows: int | None = Field(None, ge=1, **_help("Use a seeded sample of this many pool rows"))
    build: dict[str, Any] = Field(default_factory=dict, **_help("Other `divsft build` options, e.g. {control: [length]}"))
    eval: dict[str, Any] = Field(default_factory=dict, **_help("`divsft eval` options, e.g. {limit: 300}"))
    evaluate_base: bool = Field(True, **_help("Evaluate the untrained base model too"))
    eval_seconds_per_model: float | None = Field(
        None, gt=0, **_help("Measured eval time per model, for --dry-run's time estimate"))

    def __post_init__(self):
        check_levels(self.levels)
        for block, keys in SET_BY_EXPERIMENT.items():
            taken = sorted(set(getattr(self, block)) & set(keys))
            if taken:
                raise DivsftError(f"{block}: {taken[0]} is set by the experiment itself; remove it "
                                  f"(the experiment's own keys: {', '.join(keys)})")


@knobs
class ExperimentConfig:
    """Every knob of `divsft experiment`."""

    config: PathText = Field(**_help("The experiment file (YAML), e.g. recipes/experiments/smoke-cpu.yaml"))
    out: PathText = Field(**_help("The results folder (builds/, models/, runs/, analysis/); rerun to resume"))
    only: Annotated[list[Literal[STAGES]], BeforeValidator(_words)] = Field(
        default_factory=lambda: list(STAGES), min_length=1, **_help("Run only these stages"))
    dry_run: bool = Field(False, **_help("Print the plan (steps, subsets, tokens, time); write nothing"))


@knobs
class RecipesCopyConfig:
    dest: PathText = Field(
        **_help("Folder to copy the recipes into (recipes/ of a checkout, laid out the same)"))
    overwrite: bool = Field(False, **_help("Replace DEST if it holds an earlier copy of the recipes"))


def _joined(values) -> str:
    return ",".join(map(str, values))


def check_levels(levels: list[int]) -> None:
    """Diversity levels: whole percentages, each once."""
    if not levels or any(not 0 <= level <= 100 for level in levels):
        raise DivsftError(f"--levels {_joined(levels)}: give whole numbers between 0 and 100")
    repeated = sorted({level for level in levels if levels.count(level) > 1})
    if repeated:
        raise DivsftError(f"--levels {_joined(levels)}: {_joined(repeated)} repeated; give each level once")


def nested_configs(cls) -> dict[str, type]:
    """Fields of `cls` that are config dataclasses themselves (e.g. `columns`)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])}


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a file, or one line naming the file and where its syntax breaks."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DivsftError(f"{path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise DivsftError(f"{path}: not UTF-8 text; save the config as UTF-8 YAML") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DivsftError(f"{path}: {where}invalid YAML ({problem})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise DivsftError(f"{path}: expected a mapping of option names to values, "
                          f"got {type(values).__name__}")
    return values


def from_mapping(cls, values: dict, where: str):
    """`cls(**values)` with nested configs made from their own mappings; errors say `where: key`."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, values)) - known)
    if unknown:
        raise DivsftError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    values = dict(values)
    try:
        for name, kind in nested_configs(cls).items():
            inner = values.get(name)
            if isinstance(inner, dict):
                values[name] = from_mapping(kind, inner, f"{where}: {name}")
            elif inner is not None and not isinstance(inner, kind):
                raise ConfigError((name,), inner, "expected a mapping")
        return cls(**values)
    except ConfigError as err:
        raise DivsftError(f"{where}: {'.'.join(map(str, err.loc))}: {err.value!r}: {err.reason}") from None


def from_yaml(cls, path: str | Path, **overrides):
    """A config from a YAML file of option names; `overrides` (given flags) win, nested ones key by key."""
    values = read_yaml(path)
    for name, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(name), dict):
            values[name] = {**values[name], **value}
        else:
            values[name] = value
    return from_mapping(cls, values, str(path))
