"""One way to ask a chat model, and one cache for what it answered.

The LLM tagger (meso types) and the pairwise judge (evaluation) both send chat messages and read the
reply, from an OpenAI-compatible endpoint (vLLM, TGI, OpenAI, `transformers serve`), a local
`transformers` model, or a vLLM engine in this process. Answers are kept in SQLite, keyed by model and
request, so a rerun pays nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import threading
from pathlib import Path

from .assets import cache_dir
from .errors import DivsftError, reason

LLM_CACHE = "llm_cache.sqlite"


class Chat:
    """A chat model: `complete` answers one conversation; `complete_many` answers several, one at a time
    unless the backend batches them."""

    batches = False  # True where `complete_many` generates the conversations together

    def complete(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 256) -> str:
        raise NotImplementedError

    def complete_many(self, conversations: list[list[dict]], temperature: float = 0.0,
                      max_tokens: int = 256) -> list[str]:
        return [self.complete(messages, temperature, max_tokens) for messages in conversations]


class OpenAIChat(Chat):
    """An OpenAI-compatible chat endpoint; the key comes from `api_key_env` and is never logged."""

    backend = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0):
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self._client = None

    def __getstate__(self) -> dict:  # the HTTP client is neither picklable nor part of the identity
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    @property
    def client(self):
        if getattr(self, "_client", None) is None:
            from openai import OpenAI

            key = os.environ.get(self.api_key_env) or ("unused" if self.base_url else None)
            if key is None:
                raise DivsftError(f"set {self.api_key_env} or pass the base URL of a local OpenAI-compatible server")
            self._client = OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout, max_retries=2)
        return self._client

    @property
    def where(self) -> str:
        return f"{self.base_url or 'the OpenAI API'} (model {self.model})"

    def complete(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 256) -> str:
        """The reply's text; an endpoint that is down, refuses the key or answers no completion is one
        line."""
        import openai

        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens,
            )
            content = reply.choices[0].message.content
        except openai.APIError as err:
            raise DivsftError(f"{self.where}: the chat request failed ({reason(err)})") from None
        except (AttributeError, IndexError, KeyError, TypeError) as err:  # e.g. an HTML page instead of JSON
            raise DivsftError(f"{self.where}: the answer is not an OpenAI chat completion ({reason(err)}); "
                              "give the server's OpenAI-compatible base URL (often ending in /v1)") from None
        if content is not None and not isinstance(content, str):
            raise DivsftError(f"{self.where}: the completion's content is not text")
        return content or ""

    def check(self) -> None:
        """One tiny request, so a bad endpoint fails before any work rather than after it."""
        self.complete([{"role": "user", "content": "Say OK."}], max_tokens=1)

    def describe(self) -> dict:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url}


class LocalChat(Chat):
    """A local `transformers` chat model (a path, a Hub id, or the bundled `smollm2`)."""

    backend = "transformers"

    def __init__(self, model: str):
        self.model = model

    def complete(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 256) -> str:
        from .models import chat_generate

        return chat_generate(self.model, messages, sample=temperature > 0, max_new_tokens=max_tokens)

    def check(self) -> None:
        from .models import load_causal_lm

        load_causal_lm(self.model)

    def describe(self) -> dict:
        return {"backend": self.backend, "model": self.model}


class VllmChat(Chat):
    """A vLLM engine loaded in this process (in a Ray actor: one per GPU), loaded at the first request; a
    list of conversations is generated together, as vLLM batches them on the GPU."""

    backend = "vllm"
    batches = True

    def __init__(self, model: str):
        self.model = model
        self._engine = None

    def __getstate__(self) -> dict:  # the engine holds a GPU: each process loads its own
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    @property
    def engine(self):
        if getattr(self, "_engine", None) is None:
            self.check()
            from vllm import LLM

            self._engine = LLM(model=self.model)
        return self._engine

    def complete(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 256) -> str:
        return self.complete_many([messages], temperature, max_tokens)[0]

    def complete_many(self, conversations: list[list[dict]], temperature: float = 0.0,
                      max_tokens: int = 256) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=temperature, max_tokens=max_tokens)
        return [output.outputs[0].text for output in self.engine.chat(conversations, params, use_tqdm=False)]

    def check(self) -> None:
        """vLLM is installed; the model itself loads where the maps run (a GPU actor), not here."""
        if importlib.util.find_spec("vllm") is None:
            raise DivsftError("--tagger vllm needs vLLM where the tagger runs: pip install vllm (on GPU "
                              "machines), or serve the model and use --tagger openai --base-url URL")

    def describe(self) -> dict:
        return {"backend": self.backend, "model": self.model}


def ask_until_parsed(chat: Chat, messages: list[dict], parse, retries: int, max_tokens: int):
    """(last reply, its parse or None): greedy first, then sampled retries, so a retry can answer differently.

    `parse` returns None for a reply it cannot use; the tagger and the judge both ask this way.
    """
    return ask_many_until_parsed(chat, [messages], parse, retries, max_tokens)[0]


def ask_many_until_parsed(chat: Chat, conversations: list[list[dict]], parse, retries: int,
                          max_tokens: int) -> list[tuple[str, object]]:
    """`ask_until_parsed` for each conversation, each round asking again only those not parsed yet, all
    in one `complete_many` (one generation pass on a batching engine)."""
    replies, parsed = [""] * len(conversations), [None] * len(conversations)
    pending = list(range(len(conversations)))
    for attempt in range(retries + 1):
        if not pending:
            break
        answers = chat.complete_many([conversations[i] for i in pending],
                                     temperature=0.0 if attempt == 0 else 0.7, max_tokens=max_tokens)
        for i, reply in zip(pending, answers, strict=True):
            replies[i], parsed[i] = reply, parse(reply)
        pending = [i for i in pending if parsed[i] is None]
    return list(zip(replies, parsed))


class JsonCache:
    """JSON values by key in one table of a SQLite file (default: the hf-divsft cache); thread-safe writes."""

    def __init__(self, table: str, path: str | Path | None = None):
        self.table = table
        self.path = Path(path or cache_dir() / LLM_CACHE)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT)")

    def __getstate__(self) -> dict:
        return {"table": self.table, "path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get_many(self, keys: list[str]) -> dict:
        found = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in db.execute(f"SELECT key, value FROM {self.table} WHERE key IN ({marks})", chunk):
                    found[key] = json.loads(value)
        return found

    def put_many(self, items: dict) -> None:
        with self._lock, self._connect() as db:
            db.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?)",
                           [(key, json.dumps(value)) for key, value in items.items()])
