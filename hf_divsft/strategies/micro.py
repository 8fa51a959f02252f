"""Micro level: a sample's types are the mid-frequency tokens of one component.

Tokens are counted with the LLM's own tokenizer over the whole pool. Tokens seen too often are function
words, tokens seen too rarely are names and typos; the paper keeps 10 < count <= 500 in a 117K pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, Features, List, Value

from ..arrays import SMALL_IDS, distinct_pairs, row_pairs, text_blocks, to_list_array
from ..assets import DEFAULT_TOKENIZER
from ..columns import add_columns
from ..config import PAPER_BAND
from ..data import arrow_column
from ..errors import DivsftError
from ..tokenization import TokenizeColumn, load_tokenizer

PAPER_POOL_SIZE = 117_000
FREQUENCIES = ("occurrences", "samples")


class MidBandTypes:
    """Batched map function: each row's distinct token ids that fall inside the fitted mid band.

    Works on plain batches (`ds.map(fn, batched=True)`) and, vectorised, on Arrow batches
    (`ds.with_format("arrow").map(fn, batched=True)`), which `MicroTypes.add_types` uses; either way it
    returns the `types` column alone.
    """

    def __init__(self, token_column: str, band_ids: np.ndarray, dtype: str = "int32"):
        self.token_column = token_column
        self.band_ids = np.sort(np.asarray(band_ids, dtype=np.int64))
        self.dtype = dtype  # the tokenizer's: int32 ids, or the whitespace tokenizer's 63-bit word hashes
        # A vocabulary's ids index a table (one read per token); hashed words need a binary search.
        small = bool(self.band_ids.size) and 0 <= self.band_ids[0] and self.band_ids[-1] < SMALL_IDS
        self._table = np.zeros(int(self.band_ids[-1]) + 2 if small else 0, dtype=bool)
        self._table[self.band_ids if small else []] = True

    def __call__(self, batch):
        if isinstance(batch, pa.Table):
            return pa.table({"types": self.types(batch.column(self.token_column))})
        return {"types": self.types(batch[self.token_column]).to_pylist()}

    def types(self, token_ids) -> pa.ListArray:
        num_rows, rows, tokens = row_pairs(token_ids, dtype=None)
        in_band = self._in_band(tokens)
        rows, tokens = distinct_pairs(rows[in_band], tokens[in_band])
        return to_list_array(num_rows, rows, tokens.astype(self.dtype))

    def _in_band(self, tokens: np.ndarray) -> np.ndarray:
        if self._table.size:  # ids (never negative) past the band's read the table's last entry, False
            return self._table[np.minimum(tokens, self._table.size - 1)]
        slot = np.minimum(np.searchsorted(self.band_ids, tokens), max(len(self.band_ids) - 1, 0))
        return self.band_ids[slot] == tokens if len(self.band_ids) else np.zeros(len(tokens), bool)


@dataclass
class MicroTypes:
    """Type extractor for `{instruction,response}-micro`.

    `band=(low, high)` keeps tokens with low < count <= high; `frequency` counts token occurrences or
    samples containing the token; `scale_band` rescales the bounds from the paper's 117K pool to this one.
    """

    component: str = "response"
    tokenizer: str = DEFAULT_TOKENIZER
    band: tuple[int, int] = PAPER_BAND
    frequency: str = "occurrences"
    scale_band: bool = False

    def __post_init__(self):
        low, high = self.band
        if not 0 <= low < high:
            raise DivsftError(f"--band {low},{high}: need 0 <= low < high")
        if self.frequency not in FREQUENCIES:
            raise DivsftError(f"--frequency {self.frequency}: choose one of {', '.join(FREQUENCIES)}")

    @classmethod
    def from_config(cls, component: str, config) -> MicroTypes:
        return cls(component, config.tokenizer, config.band, config.frequency, config.band_scale)

    def check(self) -> None:
        load_tokenizer(self.tokenizer)

    def plan(self, rows: int) -> list[str]:
        low, high = self.bounds(rows)
        return [f"tokenize the {self.component}s with {self.tokenizer}",
                (f"count token {self.frequency} over the pool; "
                 f"a type is a token with {low:g} < count <= {high:g}"),
                "give each row its distinct mid-band tokens as types"]

    @property
    def tokenize(self) -> TokenizeColumn:
        return TokenizeColumn(self.component, self.tokenizer)

    def bounds(self, pool_size: int) -> tuple[float, float]:
        scale = pool_size / PAPER_POOL_SIZE if self.scale_band else 1.0
        return self.band[0] * scale, self.band[1] * scale

    def fit(self, ds: Dataset) -> MidBandTypes:
        """Count token frequencies over the pool and return the map function that assigns types."""
        column = self.tokenize.output_column
        ids, counts = _token_counts(arrow_column(ds, column), distinct=self.frequency == "samples")
        low, high = self.bounds(ds.num_rows)
        return MidBandTypes(column, ids[(counts > low) & (counts <= high)],
                            load_tokenizer(self.tokenizer).id_dtype)

    def add_types(self, ds: Dataset, num_proc: int | None = None) -> Dataset:
        """Tokenize, fit the band on this pool, and add a `types` column (cached by fingerprint)."""
        ds = self.tokenize.apply(ds, num_proc=num_proc)
        assign = self.fit(ds)
        if assign.band_ids.size == 0:
            low, high = self.bounds(ds.num_rows)
            raise DivsftError(
                f"no {self.component} token has {low:g} < count <= {high:g} in this pool of {ds.num_rows} "
                "rows; widen --band or use --band-scale"
            )
        features = Features({"types": List(Value(assign.dtype))})
        return add_columns(ds, assign, reads=[assign.token_column], arrow=True, num_proc=num_proc,
                           features=features, desc="Assigning micro types")

    def type_labels(self, typed: Dataset) -> dict[int, str]:
        """Each type is a token: its text."""
        ids = _token_counts(arrow_column(typed, "types"), distinct=False)[0].tolist()
        texts = (text for block in text_blocks(arrow_column(typed, self.component)) for text in block)
        return load_tokenizer(self.tokenizer).labels(ids, texts)  # texts are read only for hashed words

    def describe(self) -> dict:
        return {
            "level": "micro",
            "component": self.component,
            "tokenizer": self.tokenizer,
            "band": list(self.band),
            "frequency": self.frequency,
            "scale_band": self.scale_band,
        }


def _token_counts(column: pa.ChunkedArray, distinct: bool,
                  block: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """(sorted token ids, their counts) over a token-id list column, read a few million ids at a time.

    `distinct` counts each token once per row. Small ids (a tokenizer's vocabulary) are counted with a
    bincount; large ones (hashed words) with a merge of per-block counts.
    """
    counts, table = pd.Series(dtype=np.int64), np.zeros(0, dtype=np.int64)
    pending, held = [], 0
    for chunk in column.chunks:
        _, rows, values = row_pairs(chunk, dtype=None)
        values = distinct_pairs(rows, values)[1] if distinct else values
        if len(values) and 0 <= values.min() and values.max() < SMALL_IDS:
            step = np.bincount(values, minlength=len(table))
            step[: len(table)] += table
            table = step
            continue
        pending.append(values.astype(np.int64))
        held += len(pending[-1])
        if held >= block:
            counts = counts.add(pd.Series(np.concatenate(pending)).value_counts(sort=False), fill_value=0)
            pending, held = [], 0
    if pending:
        counts = counts.add(pd.Series(np.concatenate(pending)).value_counts(sort=False), fill_value=0)
    counts = counts.add(pd.Series(table, dtype=np.int64)[table > 0], fill_value=0).sort_index()
    return counts.index.to_numpy(dtype=np.int64), counts.to_numpy(dtype=np.int64)
