"""The LLM taggers end to end: a real OpenAI-compatible server on 127.0.0.1 and a local transformers model.

SmolLM2-135M rarely answers the InsTag prompt with valid JSON, which is what these tests need: the run must
record such replies (after retries) instead of crashing, and a rerun must come from the cache.
"""

from __future__ import annotations

import json
import sqlite3

from hf_divsft.chat import JsonCache
from hf_divsft.tagging import OpenAITagger, TransformersTagger

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
