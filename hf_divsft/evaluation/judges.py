"""Judges: a pairwise LLM judge against the reference answer, and the reference-NLL proxy.

* `PairwiseJudge` (AlpacaEval / Arena-Hard style): the judge sees the prompt and two answers, the model's
  and the reference, and names the better one as [[A]], [[B]] or [[C]] (tie). Every pair is judged in both
  orders to cancel position bias; a reply with no verdict is retried once, then recorded as unparsed.
* `reference_nll`: the mean per-token negative log-likelihood the model assigns to the reference answer
  after the prompt (chat template, answer tokens only). Deterministic and judge-free, but a proxy.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from ..chat import JsonCache, LocalChat, OpenAIChat, ask_until_parsed

JUDGE_SYSTEM = (
    "You are an impartial judge of AI assistants. Compare the two answers to the user's prompt below for "
    "helpfulness, correctness, relevance, depth and clarity. Do not let the order of the answers, their "
    "length or the assistants' names sway you. Explain briefly, then give your final verdict on the last "
    'line, exactly one of: "[[A]]" if answer A is better, "[[B]]" if answer B is better, "[[C]]" for a tie.'
)
JUDGE_TURN = "[Prompt]\n{prompt}\n\n[Answer A]\n{a}\n[End of answer A]\n\n[Answer B]\n{b}\n[End of answer B]"
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
ARENA_LABEL = re.compile(r"\[\[\s*(A>>B|A>B|A=B|B>A|B>>A)\s*\]\]")
MODEL_SCORE = {  # the model's score for a verdict, by the order its answer was shown in
    "model_first": {"A": 1.0, "C": 0.5, "B": 0.0},
    "reference_first": {"A": 0.0, "C": 0.5, "B": 1.0},
}


def parse_verdict(reply: str) -> str | None:
    """"A", "B" or "C" (tie) from a judge reply: the last [[X]] wins; Arena-Hard's [[A>B]] labels count too."""
    labels = [(m.start(), m.group(1)) for m in VERDICT.finditer(reply)]
    labels += [(m.start(), {"A>>B": "A", "A>B": "A", "A=B": "C", "B>A": "B", "B>>A": "B"}[m.group(1)])
               for m in ARENA_LABEL.finditer(reply)]
    return max(labels)[1] if labels else None


def make_chat(model: str, base_url: str | None) -> OpenAIChat | LocalChat:
    """An OpenAI-compatible endpoint when a base URL is given, else a local transformers model."""
    return OpenAIChat(model, base_url, api_key_env="JUDGE_API_KEY") if base_url else LocalChat(model)


class PairwiseJudge:
    def __init__(self, chat: OpenAIChat | LocalChat, max_tokens: int = 512, retries: int = 1,
                 concurrency: int = 8, cache: JsonCache | None = None):
        self.chat = chat
        self.max_tokens = max_tokens
        self.retries = retries
        self.concurrency = concurrency if isinstance(chat, OpenAIChat) else 1
        self.cache = cache or JsonCache("judgments")

    def judge(self, items: list[dict]) -> list[dict]:
        """One judgment per item and order: items carry `id`, `instruction`, `output`, `reference`."""
        requests = [(item, order) for item in items for order in MODEL_SCORE]
        keys = [self._key(self._messages(item, order)) for item, order in requests]
        known = self.cache.get_many(keys)
        todo = [(key, item, order) for key, (item, order) in zip(keys, requests) if key not in known]
        with ThreadPoolExecutor(self.concurrency) as pool:
            replies = list(tqdm(pool.map(lambda job: self._ask(self._messages(job[1], job[2])), todo),
                                total=len(todo), desc="Judging", unit="judgment"))
        self.cache.put_many({key: reply for (key, _, _), reply in zip(todo, replies)})
        known.update({key: reply for (key, _, _), reply in zip(todo, replies)})
        judgments = []
        for key, (item, order) in zip(keys, requests):
            verdict = parse_verdict(known[key])
            score = MODEL_SCORE[order][verdict] if verdict else None
            judgments.append({"id": item["id"], "order": order, "verdict": verdict, "model_score": score,
                              "reply": known[key]})
        return judgments

    def _messages(self, item: dict, order: str) -> list[dict]:
        a, b = (item["output"], item["reference"]) if order == "model_first" else (item["reference"], item["output"])
        return [{"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": JUDGE_TURN.format(prompt=item["instruction"], a=a, b=b)}]

    def _key(self, messages: list[dict]) -> str:
        return hashlib.sha256(json.dumps([self.chat.model, self.max_tokens, messages]).encode("utf-8")).hexdigest()

    def _ask(self, messages: list[dict]) -> str:
        return ask_until_parsed(self.chat, messages, parse_verdict, self.retries, self.max_tokens)[0]

    def describe(self) -> dict:
        return {"judge": "pairwise", **self.chat.describe(), "max_tokens": self.max_tokens}


def item_scores(judgments: list[dict]) -> dict[str, float]:
    """Per prompt, the model's mean score over the orders that got a verdict (prompts with none are left out)."""
    scores: dict[str, list[float]] = {}
    for judgment in judgments:
        if judgment["model_score"] is not None:
            scores.setdefault(judgment["id"], []).append(judgment["model_score"])
    return {key: float(np.mean(values)) for key, values in scores.items()}


def reference_nll(model: str, items: list[dict], adapter: str | None = None, max_length: int = 2048) -> list[dict]:
    """Per item: summed NLL of the reference answer's tokens after the chat-templated prompt, and their count."""
    import torch

    from ..models import load_causal_lm

    tokenizer, lm = load_causal_lm(model, adapter)
    results = []
    for item in tqdm(items, desc="Scoring references", unit="prompt"):
        prompt = [{"role": "user", "content": item["instruction"]}]
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]
        full = prompt + [{"role": "assistant", "content": item["reference"]}]
        ids = tokenizer.apply_chat_template(full, return_dict=True)["input_ids"][:max_length]
        labels = torch.tensor([-100] * len(prompt_ids) + ids[len(prompt_ids):])[:len(ids)]
        with torch.inference_mode():
            logits = lm(input_ids=torch.tensor([ids], device=lm.device)).logits[0, :-1].float().cpu()
        targets = labels[1:]
        nll = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
        results.append({"id": item["id"], "nll_sum": float(nll), "tokens": int((targets != -100).sum())})
    return results


def bootstrap_ci(values: np.ndarray, statistic, seed: int = 0, resamples: int = 1000) -> list[float]:
    """A 95% percentile bootstrap interval of `statistic` over resampled rows of `values`."""
    rng = np.random.default_rng(seed)
    stats = [statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(resamples)]
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]
