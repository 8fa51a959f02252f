"""The LLM taggers end to end: a real OpenAI-compatible server on 127.0.0.1, a local transformers model, and
vLLM's offline engine API (vLLM needs a GPU: here a stand-in module serves that API from the same model).

SmolLM2-135M rarely answers the InsTag prompt with valid JSON, which is what these tests need: the run must
record such replies (after retries) instead of crashing, and a rerun must come from the cache.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import types
from dataclasses import dataclass
from typing import ClassVar

import pytest

from hf_divsft.chat import JsonCache
from hf_divsft.errors import DivsftError
from hf_divsft.tagging import OpenAITagger, TransformersTagger, VllmTagger

TEXTS = [
    "Write a Python function that reverses a string.",
    "What is the capital of France?",
    "Summarize the plot of Hamlet in two sentences.",
]


def cached_rows(cache: JsonCache) -> list[tuple[list[str], bool, str]]:
    with sqlite3.connect(cache.path) as db:
        entries = [json.loads(value) for (value,) in db.execute(f"SELECT value FROM {cache.table}")]
    return [(entry["tags"], entry["ok"], entry["reply"]) for entry in entries]


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def test_openai_tagger_against_a_real_server(chat_server, tmp_path):
    base_url, model = chat_server
    cache = JsonCache("tags", tmp_path / "llm.sqlite")
    tagger = OpenAITagger(model, base_url=base_url, max_tags=3, retries=1, max_tokens=48, cache=cache)
    tags = tagger.tag_batch(TEXTS)
    assert len(tags) == len(TEXTS) and all(isinstance(t, list) and len(t) <= 3 for t in tags)
    rows = cached_rows(cache)
    assert len(rows) == len(TEXTS) and all(reply for _, _, reply in rows)  # every reply is recorded
    assert any(not is_json(reply) for _, _, reply in rows), "expected at least one malformed reply"
    for stored, ok, _ in rows:
        assert ok == bool(stored)  # failures are recorded as no tags, not as an exception
    offline = OpenAITagger(model, base_url="http://127.0.0.1:9/v1", max_tags=3, retries=1, max_tokens=48,
                           cache=cache)
    assert offline.tag_batch(TEXTS) == tags  # a rerun pays nothing: the dead endpoint is never called


def test_transformers_tagger_with_the_local_model(tmp_path):
    cache = JsonCache("tags", tmp_path / "llm.sqlite")
    tagger = TransformersTagger("smollm2", max_tags=3, retries=0, max_tokens=24, cache=cache)
    tags = tagger.tag_batch(TEXTS[:1])
    (stored, ok, reply), = cached_rows(cache)
    assert reply.strip() and tags == [stored] and ok == bool(tags[0])


@dataclass
class SamplingParams:
    temperature: float = 1.0
    max_tokens: int = 16


class StandInLLM:
    """`vllm.LLM`'s offline chat API, answered by the real SmolLM2 through transformers, because vLLM itself
    cannot run on these CPU-only machines. It records every call: how many conversations, what temperature."""

    loaded: ClassVar[list[str]] = []
    calls: ClassVar[list[tuple[int, float]]] = []

    def __init__(self, model: str):
        self.model = model
        StandInLLM.loaded.append(model)

    def chat(self, conversations, sampling_params, use_tqdm=True):
        from hf_divsft.models import chat_generate

        StandInLLM.calls.append((len(conversations), sampling_params.temperature))
        texts = [chat_generate(self.model, messages, sample=sampling_params.temperature > 0,
                               max_new_tokens=sampling_params.max_tokens) for messages in conversations]
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text)]) for text in texts]


@pytest.fixture
def stand_in_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = StandInLLM, SamplingParams
    module.__spec__ = types.SimpleNamespace(name="vllm")  # importlib.util.find_spec reads it
    monkeypatch.setitem(sys.modules, "vllm", module)
    StandInLLM.loaded, StandInLLM.calls = [], []
    return StandInLLM


def test_vllm_tagger_generates_a_batch_together_and_retries_only_the_unparsed(stand_in_vllm, tmp_path):
    options = {"max_tags": 3, "max_tokens": 24}
    greedy = TransformersTagger("smollm2", retries=0, cache=JsonCache("tags", tmp_path / "local.sqlite"),
                                **options)
    expected = greedy.tag_batch(TEXTS), cached_rows(greedy.cache)
    unparsed = sum(not ok for _, ok, _ in expected[1])
    assert unparsed, "SmolLM2-135M's greedy replies to these texts are not JSON: the retry round needs one"
    tagger = VllmTagger("smollm2", retries=0, cache=JsonCache("tags", tmp_path / "vllm.sqlite"), **options)
    tagger.check()
    # every text in one greedy call to one engine; the prompt and the parsing are the other taggers'
    assert (tagger.tag_batch(TEXTS), cached_rows(tagger.cache)) == expected
    assert stand_in_vllm.loaded == ["smollm2"] and stand_in_vllm.calls == [(len(TEXTS), 0.0)]
    assert tagger.tag_batch(TEXTS) == expected[0] and len(stand_in_vllm.calls) == 1  # a rerun: the cache
    # with a retry, only the replies that did not parse are asked again, together, sampled
    retrying = VllmTagger("smollm2", retries=1, cache=JsonCache("tags", tmp_path / "retry.sqlite"), **options)
    retrying.tag_batch(TEXTS)
    assert stand_in_vllm.calls[1:] == [(len(TEXTS), 0.0)] + ([(unparsed, 0.7)] if unparsed else [])


def test_vllm_tagger_without_vllm_fails_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    with pytest.raises(DivsftError, match=r"--tagger vllm needs vLLM where the tagger runs: pip install"):
        VllmTagger("smollm2").check()
