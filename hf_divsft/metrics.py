"""The paper's six post-hoc diversity metrics, each computed over the texts of one component.

The paper scores every subset with n-gram ratio, embedding distance, sequence length, compression
ratio, Self-BLEU and information entropy, on the instructions and on the responses, and correlates
them with model quality (response length r=0.73 and response token entropy r=0.58 correlate best).
Each function here takes plain inputs (texts, token-id lists, an embedding matrix) and returns a dict
whose `value` is the headline number, with the details that make it reproducible beside it.
`measure.py` feeds them from dataset columns; `measurements/` wraps each one as an `evaluate` module.

Words (for n-grams and BLEU) are white-space separated, like `str.split()`; tokens (for length and
entropy) come from the LLM tokenizer, which is the choice the paper's findings depend on.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import as_list_array, text_blocks

MAX_N = 4
SELF_BLEU_SAMPLE = 20_000  # texts; above this Self-BLEU is computed on a seeded sample of this size
BLEU_EPSILON = 0.1  # NLTK's smoothing method 1, as in Texygen's Self-BLEU


@dataclass
class NGrams:
    """Every word n-gram (n = 1..max_n) of a text collection as compact integer ids; none crosses two texts.

    `orders[n - 1]` holds, for each n-gram occurrence, the index of its text and the id of the n-gram.
    """

    lengths: np.ndarray  # words per text
    orders: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, texts, max_n: int = MAX_N) -> NGrams:
        lengths, words = _word_ids(texts)
        text_of = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.arange(len(words))
        grams = words
        orders = [(text_of, grams)]
        for n in range(2, max_n + 1):
            starts = starts[starts + n - 1 < len(words)]
            starts = starts[text_of[starts + n - 1] == text_of[starts]]  # the n words lie in one text
            # an n-gram is its (n-1)-gram prefix plus one word; both are compact ids, so the key fits int64
            key = grams[starts] * (int(words.max(initial=0)) + 1) + words[starts + n - 1]
            codes = pd.factorize(key)[0]
            grams = np.full(len(words), -1, dtype=np.int64)
            grams[starts] = codes
            orders.append((text_of[starts], codes.astype(np.int64)))
        return cls(lengths, orders)

    @property
    def num_texts(self) -> int:
        return len(self.lengths)

    def subset(self, rows: np.ndarray) -> NGrams:
        """The n-grams of the texts `rows` only (sorted indices), renumbered 0..len(rows)-1."""
        new_index = np.full(self.num_texts, -1, dtype=np.int64)
        new_index[rows] = np.arange(len(rows))
        orders = []
        for text_of, grams in self.orders:
            keep = new_index[text_of] >= 0
            orders.append((new_index[text_of[keep]], grams[keep]))
        return NGrams(self.lengths[rows], orders)


def _word_ids(texts) -> tuple[np.ndarray, np.ndarray]:
    """(words per text, a compact id per word occurrence), split on white space inside Arrow."""
    array = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.large_string())
    words = pc.utf8_split_whitespace(array)
    if isinstance(words, pa.ChunkedArray):
        words = words.combine_chunks()
    row_lengths = np.asarray(words.value_lengths().fill_null(0), dtype=np.int64)
    rows = np.repeat(np.arange(len(row_lengths)), row_lengths)
    flat = words.flatten()
    real = np.asarray(pc.not_equal(flat, ""))  # Arrow yields "" at a text's ends, where str.split() yields none
    encoded = pc.dictionary_encode(flat.filter(pa.array(real)))
    lengths = np.bincount(rows[real], minlength=len(row_lengths)).astype(np.int64)
    return lengths, np.asarray(encoded.indices, dtype=np.int64)


def _as_ngrams(texts, max_n: int) -> NGrams:
    return texts if isinstance(texts, NGrams) else NGrams.of(texts, max_n)


def ngram_ratio(texts, max_n: int = MAX_N) -> dict:
    """Distinct n-grams / total n-grams over all texts, for n = 1..max_n (lower = more repetitive).

    `value` is the mean over the n that occur; `by_n` holds each ratio (None where no text has n words).
    Their sum is the "n-gram diversity" score of the `diversity` package (Shaib et al.), which also lets
    n-grams run across text boundaries.
    """
    ngrams = _as_ngrams(texts, max_n)
    by_n = {str(n): len(pd.unique(grams)) / len(grams) if len(grams) else None
            for n, (_, grams) in enumerate(ngrams.orders, start=1)}
    defined = [ratio for ratio in by_n.values() if ratio is not None]  # texts shorter than n have no n-grams
    return {"value": float(np.mean(defined)) if defined else None, "by_n": by_n}


def self_bleu(texts, max_n: int = MAX_N, sample: int | None = SELF_BLEU_SAMPLE, seed: int = 0) -> dict:
    """Mean BLEU-4 of each text scored against all the other texts as references, 0..100 (higher = more alike).

    This is Texygen's Self-BLEU: NLTK's `sentence_bleu` with uniform weights, smoothing method 1 and
    `auto_reweigh` (a text shorter than max_n words is scored on the orders it has), computed exactly and
    in one pass: a multi-reference clip count is the largest count among the
    *other* texts, which is each n-gram's top count unless this text alone holds it (then the
    runner-up). Above `sample` texts a seeded sample of that many texts is scored against itself.
    """
    ngrams = _as_ngrams(texts, max_n)
    total = ngrams.num_texts
    if sample and total > sample:
        ngrams = ngrams.subset(np.sort(np.random.default_rng(seed).choice(total, sample, replace=False)))
    used = ngrams.num_texts
    result = {"texts": used, "of": total, "sampled": used < total}
    if used < 2:
        return {"value": None, **result}
    return {"value": float(np.mean(_bleu_against_others(ngrams)) * 100), **result}


def _bleu_against_others(ngrams: NGrams) -> np.ndarray:
    num_texts, lengths = ngrams.num_texts, ngrams.lengths
    log_precision = np.zeros(num_texts)
    # NLTK's auto_reweigh: a text of L < max_n words is scored on its n <= L orders, weighted 1/L each,
    # so identical short texts score 100 too
    orders = np.maximum(np.minimum(lengths, len(ngrams.orders)), 1)
    for n, (text_of, grams) in enumerate(ngrams.orders, start=1):
        matches = _clipped_matches(text_of, grams, num_texts)
        if n == 1:
            no_unigram_match = matches == 0
        possible = np.maximum(lengths - n + 1, 1)  # NLTK's denominator is at least 1
        precision = np.where(matches > 0, matches, BLEU_EPSILON) / possible
        log_precision += np.where(n <= orders, np.log(precision) / orders, 0.0)
    reference = _closest_other_length(lengths)
    brevity = np.where(lengths > reference, 1.0, np.exp(1 - reference / np.maximum(lengths, 1)))
    bleu = np.where(lengths == 0, 0.0, brevity * np.exp(log_precision))
    bleu[no_unigram_match] = 0.0
    return bleu


def _clipped_matches(text_of: np.ndarray, grams: np.ndarray, num_texts: int) -> np.ndarray:
    """Per text: sum over its n-grams of min(its count, the largest count in any other text)."""
    pair_counts = pd.Series(grams * num_texts + text_of).value_counts(sort=False)
    pairs, counts = pair_counts.index.to_numpy(), pair_counts.to_numpy()
    gram, text = pairs // num_texts, pairs % num_texts
    top = np.zeros(gram.max(initial=0) + 1, dtype=np.int64)
    np.maximum.at(top, gram, counts)
    at_top = counts == top[gram]
    holders = np.bincount(gram[at_top], minlength=len(top))
    runner_up = np.zeros_like(top)
    np.maximum.at(runner_up, gram[~at_top], counts[~at_top])
    sole_holder = at_top & (holders[gram] == 1)
    clipped = np.where(sole_holder, runner_up[gram], counts)
    return np.bincount(text, weights=clipped, minlength=num_texts)


def _closest_other_length(lengths: np.ndarray) -> np.ndarray:
    """BLEU's effective reference length: the other texts' length nearest to each text's (ties: shorter)."""
    values, counts = np.unique(lengths, return_counts=True)
    own = np.searchsorted(values, lengths)
    padded = np.concatenate([[-np.inf], values.astype(float), [np.inf]])
    below, above = padded[own], padded[own + 2]
    nearest = np.where(lengths - below <= above - lengths, below, above)
    return np.where(counts[own] >= 2, lengths, nearest)


def compression_ratio(texts) -> dict:
    """Raw size / gzip size of all texts joined by spaces (higher = more redundant; random bytes give ~1).

    The same definition as the `diversity` package's `compression_ratio` (gzip, level 9), streamed:
    deflate's output does not depend on how its input is split, so no joined copy is held.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container, as gzip.compress
    raw = compressed = 0
    separator = b""
    for block in _byte_blocks(texts):
        data = separator + b" ".join(block)
        separator = b" "
        raw += len(data)
        compressed += len(compressor.compress(data))
    compressed += len(compressor.flush())
    return {"value": raw / compressed, "raw_bytes": raw, "gzip_bytes": compressed}


def _byte_blocks(texts):
    """Texts (Arrow strings, str or bytes) as lists of UTF-8 bytes, a few thousand at a time."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        for block in text_blocks(texts):
            yield [text.encode("utf-8") for text in block]
    else:
        yield [text if isinstance(text, bytes) else text.encode("utf-8") for text in texts]


def sequence_length(token_ids) -> dict:
    """Tokens per text (LLM tokenizer): `value` is the mean, with the spread and quantiles beside it."""
    lengths = np.asarray(as_list_array(token_ids).value_lengths().fill_null(0), dtype=np.int64)
    if not len(lengths):
        return {"value": None, "texts": 0}
    quantiles = np.percentile(lengths, [10, 25, 50, 75, 90])
    return {
        "value": float(lengths.mean()),
        "std": float(lengths.std()),
        "min": int(lengths.min()),
        **{name: float(q) for name, q in zip(("p10", "p25", "median", "p75", "p90"), quantiles)},
        "max": int(lengths.max()),
        "tokens": int(lengths.sum()),
        "texts": len(lengths),
    }


def token_entropy(token_ids) -> dict:
    """Shannon entropy, in bits, of the token distribution pooled over all texts (LLM tokenizer)."""
    ids = np.asarray(as_list_array(token_ids).flatten())
    if not len(ids):
        return {"value": None, "tokens": 0, "distinct_tokens": 0}
    counts = pd.Series(ids).value_counts(sort=False).to_numpy()
    p = counts / counts.sum()
    return {"value": float(-(p * np.log2(p)).sum()), "tokens": len(ids), "distinct_tokens": len(counts)}


def embedding_distance(embeddings: np.ndarray) -> dict:
    """Mean cosine distance over all pairs of texts, computed exactly in O(n * dim).

    For unit vectors the sum of all pairwise similarities is |sum of vectors|^2 minus the self terms,
    so no pairwise matrix (and no sampling) is needed.
    """
    vectors = np.asarray(embeddings, dtype=np.float64)
    n = len(vectors)
    if n < 2:
        return {"value": None, "pairs": 0, "exact": True}
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    total = unit.sum(axis=0)
    pair_similarity = (total @ total - np.einsum("ij,ij->", unit, unit)) / (n * (n - 1))
    # rounding can push identical texts a hair below 0 (e.g. -2e-16); the distance lies in [0, 2]
    return {"value": float(np.clip(1 - pair_similarity, 0.0, 2.0)), "pairs": n * (n - 1) // 2, "exact": True}


@dataclass
class MetricInputs:
    """What the metrics of one component read: its texts, token ids and embeddings; n-grams made once."""

    texts: pa.ChunkedArray | pa.Array
    token_ids: pa.Array | pa.ChunkedArray
    embeddings: np.ndarray
    max_n: int = MAX_N

    @cached_property
    def ngrams(self) -> NGrams:  # shared by the n-gram ratio and Self-BLEU
        return NGrams.of(self.texts, self.max_n)


@dataclass(frozen=True)
class Metric:
    """One metric: its function of the inputs and settings, its short label and its plot axis title."""

    name: str
    label: str
    axis: str
    compute: Callable[[MetricInputs, object], dict]


METRICS = {
    metric.name: metric
    for metric in (
        Metric("ngram_ratio", "n-gram ratio", "n-gram ratio (mean over n)",
               lambda x, s: ngram_ratio(x.ngrams)),
        Metric("embedding_distance", "embedding distance", "embedding distance",
               lambda x, s: embedding_distance(x.embeddings)),
        Metric("sequence_length", "length (tokens)", "length (tokens)",
               lambda x, s: sequence_length(x.token_ids)),
        Metric("compression_ratio", "compression ratio", "compression ratio",
               lambda x, s: compression_ratio(x.texts)),
        Metric("self_bleu", "Self-BLEU", "Self-BLEU",
               lambda x, s: self_bleu(x.ngrams, sample=s.self_bleu_sample or None, seed=s.seed)),
        Metric("token_entropy", "token entropy (bits)", "token entropy (bits)",
               lambda x, s: token_entropy(x.token_ids)),
    )
}

