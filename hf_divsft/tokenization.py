"""LLM tokenizers for type extraction and metrics, plus the paper's whitespace ablation.

`TokenizeColumn` is a batched `Dataset.map` function that adds `<column>_token_ids`; every feature that
needs token ids (micro types, the length band, later the metrics) reads that one cached column.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Protocol

from datasets import List, Value

from .assets import DEFAULT_TOKENIZER
from .columns import FeatureColumn
from .errors import DivsftError, reason
from .models import smollm2_tokenizer_dir

WHITESPACE_TOKENIZER = "whitespace"


class TextTokenizer(Protocol):
    id_dtype: str

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def count_batch(self, texts: list[str]) -> list[int]: ...

    def labels(self, ids: list[int], texts) -> dict[int, str]: ...


class WhitespaceTokenizer:
    """Splits on white space; a word's id is a stable 63-bit hash, so no vocabulary has to be fitted."""

    id_dtype = "int64"

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [[_word_id(word) for word in text.split()] for text in texts]

    def count_batch(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]

    def labels(self, ids: list[int], texts) -> dict[int, str]:
        """The word behind each id (hashes cannot be inverted, so `texts` are scanned for them)."""
        wanted, found = set(ids), {}
        for text in texts:
            for word in text.split():
                if (word_id := _word_id(word)) in wanted:
                    found.setdefault(word_id, word)
            if len(found) == len(wanted):
                break
        return found


@functools.lru_cache(maxsize=1 << 18)
def _word_id(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little") >> 1


class HFTokenizer:
    """A `transformers` tokenizer or a bare `tokenizers.Tokenizer`, encoded through the Rust tokenizer
    without special tokens."""

    id_dtype = "int32"

    def __init__(self, tokenizer):
        from tokenizers import Tokenizer

        self.tokenizer = tokenizer
        bare = isinstance(tokenizer, Tokenizer)
        self._backend = tokenizer if bare else getattr(tokenizer, "backend_tokenizer", None)
        self._decode_options = {"skip_special_tokens": False} if bare else {}  # transformers' default

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self._backend is not None:
            return [enc.ids for enc in self._backend.encode_batch_fast(texts, add_special_tokens=False)]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def count_batch(self, texts: list[str]) -> list[int]:
        """Tokens per text, without building each text's list of ids (a third of encoding's time)."""
        if self._backend is not None:
            return [len(enc) for enc in self._backend.encode_batch_fast(texts, add_special_tokens=False)]
        return [len(ids) for ids in self.encode_batch(texts)]

    def labels(self, ids: list[int], texts=None) -> dict[int, str]:
        return {i: self.tokenizer.decode([i], **self._decode_options) for i in ids}


@functools.lru_cache(maxsize=8)
def load_tokenizer(spec: str = DEFAULT_TOKENIZER) -> TextTokenizer:
    """`smollm2` (the bundled SmolLM2-135M-Instruct GGUF), `whitespace`, or a local path / Hub id."""
    if spec == WHITESPACE_TOKENIZER:
        return WhitespaceTokenizer()
    if spec == DEFAULT_TOKENIZER:
        from tokenizers import Tokenizer

        # our own conversion's tokenizer.json is the whole tokenizer (same ids and labels as transformers'):
        # no transformers import, which costs each process (each Ray worker) about 2 s
        return HFTokenizer(Tokenizer.from_file(str(smollm2_tokenizer_dir() / "tokenizer.json")))
    from transformers import AutoTokenizer

    try:
        return HFTokenizer(AutoTokenizer.from_pretrained(spec))
    except Exception as err:
        raise DivsftError(f"--tokenizer {spec}: cannot be loaded ({reason(err)})") from err


class TokenizeColumn(FeatureColumn):
    """Batched map function: `ds.map(TokenizeColumn("response"), batched=True)` adds `response_token_ids`."""

    suffix = "token_ids"
    verb = "Tokenizing"

    def __init__(self, column: str, tokenizer: str = DEFAULT_TOKENIZER):
        super().__init__(column)
        self.tokenizer = tokenizer

    def __call__(self, batch: dict) -> dict:
        return {self.output_column: load_tokenizer(self.tokenizer).encode_batch(batch[self.column])}

    def feature(self):
        return List(Value(load_tokenizer(self.tokenizer).id_dtype))
