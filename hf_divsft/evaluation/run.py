"""`divsft eval`: generate answers to the eval prompts, judge them, write generations, judgments, summary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np

from .. import __version__
from ..artifacts import check_free, staged_dir, write_json
from ..chat import JsonCache
from ..errors import DivsftError
from ..models import DEFAULT_MODEL
from .evalset import DEFAULT_EVAL_SET, EVAL_CONFIGS, load_eval_set
from .generate import generate_answers
from .judges import PairwiseJudge, bootstrap_ci, item_scores, make_chat, reference_nll

JUDGES = ("reference-nll", "pairwise")


@dataclass
class EvalConfig:
    """Every knob of an evaluation; the CLI flags and Python share it."""

    out: str
    model: str = DEFAULT_MODEL
    adapter: str | None = None
    eval_set: str = DEFAULT_EVAL_SET
    configs: list[str] = field(default_factory=lambda: list(EVAL_CONFIGS))
    judge: str = "reference-nll"
    judge_model: str | None = None
    judge_base_url: str | None = None
    judge_max_tokens: int = 512
    judge_retries: int = 1
    judge_cache: str | None = None
    limit: int | None = None
    seed: int = 0
    max_new_tokens: int = 512
    batch_size: int = 8
    overwrite: bool = False

    def __post_init__(self):
        if self.judge not in JUDGES:
            raise DivsftError(f"--judge {self.judge}: choose one of {', '.join(JUDGES)}")
        if self.judge == "pairwise" and not self.judge_model:
            raise DivsftError("--judge pairwise needs --judge-model (and --judge-base-url for a server)")
        if self.limit is not None and self.limit < 1:
            raise DivsftError(f"--limit {self.limit}: give a positive number of prompts")


def evaluate_model(config: EvalConfig) -> dict:
    out = Path(config.out)
    check_free(out, config.overwrite)
    prompts = load_eval_set(config.eval_set, config.configs, config.limit, config.seed)
    items = prompts.to_list()
    answers = generate_answers(config.model, [i["instruction"] for i in items], config.adapter,
                               config.max_new_tokens, config.batch_size)
    for item, answer in zip(items, answers):
        item.update(answer)
    if config.judge == "pairwise":
        cache = JsonCache("judgments", config.judge_cache) if config.judge_cache else None
        chat = make_chat(config.judge_model, config.judge_base_url)
        judge = PairwiseJudge(chat, config.judge_max_tokens, config.judge_retries, cache=cache)
        judgments, result = _pairwise(judge, items, config.seed)
    else:
        judgments, result = _reference_nll(config, items)
    summary = {**result, **_provenance(config, items)}
    with staged_dir(out, overwrite=config.overwrite) as staging:
        fields = ("id", "config", "instruction", "reference", "output", "tokens")
        _write_jsonl(staging / "generations.jsonl", [{key: item[key] for key in fields} for item in items])
        _write_jsonl(staging / "judgments.jsonl", judgments)
        write_json(staging / "summary.json", summary)
    return summary


def _pairwise(judge: PairwiseJudge, items: list[dict], seed: int) -> tuple[list[dict], dict]:
    judgments = judge.judge(items)
    scores = item_scores(judgments)
    values = np.array(list(scores.values())) * 100
    unparsed = sum(j["verdict"] is None for j in judgments)
    result = {
        "judge": judge.describe(),
        "metric": "win rate (%) against the reference answer, both orders averaged; ties count half",
        "score": float(values.mean()) if len(values) else None,
        "ci95": bootstrap_ci(values, np.mean, seed) if len(values) > 1 else None,
        "n": len(values),
        "unparsed_verdicts": unparsed,
    }
    return judgments, result


def _reference_nll(config: EvalConfig, items: list[dict]) -> tuple[list[dict], dict]:
    judgments = reference_nll(config.model, items, config.adapter)
    pairs = np.array([[j["nll_sum"], j["tokens"]] for j in judgments])

    def pooled(rows: np.ndarray) -> float:
        return float(rows[:, 0].sum() / max(rows[:, 1].sum(), 1))

    nll = pooled(pairs)
    low, high = bootstrap_ci(pairs, pooled, config.seed)
    result = {
        "judge": {"judge": "reference-nll"},
        "metric": "PROXY: minus the mean per-token NLL of the reference answer (higher is better); not a judged "
                  "win rate",
        "nll": nll,
        "score": -nll,
        "ci95": [-high, -low],
        "n": len(judgments),
    }
    return judgments, result


def _provenance(config: EvalConfig, items: list[dict]) -> dict:
    return {
        "model": config.model,
        "adapter": config.adapter,
        "subset": _training_subset(config),
        "eval_set": config.eval_set,
        "configs": sorted({item["config"] for item in items}),
        "limit": config.limit,
        "seed": config.seed,
        "max_new_tokens": config.max_new_tokens,
        "mean_output_tokens": float(np.mean([item["tokens"] for item in items])),
        "versions": {name: version(name) for name in ("transformers", "torch", "datasets")} | {"hf_divsft": __version__},
    }


def _training_subset(config: EvalConfig) -> dict | None:
    """What `divsft train` recorded about the subset the model (or adapter) was trained on, if anything."""
    for folder in (config.adapter, config.model):
        record = Path(folder) / "training_subset.json" if folder else None
        if record and record.is_file():
            return json.loads(record.read_text())
    return None


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
