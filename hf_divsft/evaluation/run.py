"""`divsft eval`: generate answers to the eval prompts, judge them, write generations, judgments, summary."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np

from .. import __version__
from ..chat import JsonCache
from ..config import EvalConfig
from ..formats.eval_run import check_eval_output, read_training_subset, write_eval_run
from ..models import check_adapter, check_model
from .evalset import load_eval_set
from .generate import generate_answers
from .judges import PairwiseJudge, bootstrap_ci, item_scores, make_chat, reference_nll


def evaluate_model(config: EvalConfig) -> dict:
    check_eval_output(config.out, config.overwrite, inputs=[config.model, config.adapter, config.eval_set])
    check_model(config.model)
    if config.adapter:
        check_adapter(config.adapter)
    subset = read_training_subset(config.adapter) or read_training_subset(config.model)
    prompts = load_eval_set(config.eval_set, config.configs, config.limit, config.seed)
    judge = None
    if config.judge == "pairwise":
        cache = JsonCache("judgments", config.judge_cache) if config.judge_cache else None
        chat = make_chat(config.judge_model, config.judge_base_url)
        chat.check()  # an endpoint that is down or refuses the key: one line now, not after generating
        judge = PairwiseJudge(chat, config.judge_max_tokens, config.judge_retries, cache=cache)
    items = prompts.to_list()
    answers = generate_answers(config.model, [i["instruction"] for i in items], config.adapter,
                               config.max_new_tokens, config.batch_size)
    for item, answer in zip(items, answers):
        item.update(answer)
    if judge:
        judgments, result = _pairwise(judge, items, config.seed)
    else:
        judgments, result = _reference_nll(config, items)
    summary = {**result, **_provenance(config, items), "subset": subset.model_dump() if subset else None}
    fields = ("id", "config", "instruction", "reference", "output", "tokens")
    write_eval_run(config.out, config.overwrite, [{key: item[key] for key in fields} for item in items],
                   judgments,
                   summary)
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
        "eval_set": config.eval_set,
        "configs": sorted({item["config"] for item in items}),
        "limit": config.limit,
        "seed": config.seed,
        "max_new_tokens": config.max_new_tokens,
        "mean_output_tokens": float(np.mean([item["tokens"] for item in items])),
        "versions": {name: version(name) for name in ("transformers", "torch", "datasets")} | {"hf_divsft": __version__},
    }
