"""Vectorised helpers for list columns (a row's token ids, a row's types) held as Arrow list arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SMALL_IDS = 1 << 26  # ids below this (a vocabulary's tokens, cluster or tag ids) index tables directly


def as_list_array(values) -> pa.ListArray:
    """A list column as one Arrow list array, from Arrow (chunked or not) or Python lists."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not isinstance(values, pa.Array):
        values = pa.array([list(v) for v in values], type=pa.list_(pa.int64()))
    return values


def list_lengths(values) -> np.ndarray:
    """Items per row of a list column (Arrow, chunked or not), as int64; nulls count 0. Chunk by chunk, so
    a million rows' token ids are never combined into one array."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [as_list_array(values)]
    lengths = [np.asarray(chunk.value_lengths().fill_null(0), dtype=np.int64) for chunk in chunks]
    return np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)


def row_pairs(values, dtype=np.int64) -> tuple[int, np.ndarray, np.ndarray]:
    """(number of rows, row index of each item, item) for a list column; nulls count as empty rows. Items are
    cast to `dtype`, or kept in the column's own type (no copy) with `dtype=None`."""
    array = as_list_array(values)
    lengths = np.asarray(array.value_lengths().fill_null(0), dtype=np.int64)
    items = np.asarray(array.flatten(), dtype=dtype)
    return len(array), np.repeat(np.arange(len(array), dtype=np.int32), lengths), items


def distinct_pairs(rows: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated (row, item) pairs; the result is sorted by row, then item."""
    if len(rows) and rows.min() >= 0 and rows.max() < 1 << 31 and items.min() >= 0 and items.max() < 1 << 32:
        # both fit one int64 key, and sorting one array in place is about 8x faster than a two-key lexsort
        keys = (rows.astype(np.int64) << 32) | items.astype(np.int64)
        keys.sort()
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
        return (keys >> 32).astype(rows.dtype), (keys & 0xFFFFFFFF).astype(items.dtype)
    order = np.lexsort((items, rows))
    rows, items = rows[order], items[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
    return rows[first], items[first]


def to_list_array(num_rows: int, rows: np.ndarray, items: np.ndarray) -> pa.ListArray:
    """Inverse of `row_pairs` for pairs sorted by row."""
    offsets = np.zeros(num_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=num_rows), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(items, type=pa.int64()))


def take_rows(values, positions: np.ndarray) -> pa.Array:
    """`values[positions]` (in the order given), chunk by chunk: `ChunkedArray.take` first joins every chunk
    into one array, a copy of the whole column (1.5 GB of text took 0.9 s and 1.5 GB per call)."""
    positions = np.asarray(positions, dtype=np.int64)
    if not isinstance(values, pa.ChunkedArray):
        return values.take(pa.array(positions))
    order = np.argsort(positions, kind="stable")
    ends = np.cumsum([len(chunk) for chunk in values.chunks])
    which = np.searchsorted(ends, positions[order], side="right")
    parts = [values.chunk(c).take(pa.array(positions[order][which == c] - (ends[c] - len(values.chunk(c)))))
             for c in np.unique(which)]
    taken = pa.concat_arrays(parts) if parts else pa.array([], type=values.type)
    return taken.take(pa.array(np.argsort(order, kind="stable"))) if len(order) else taken


def text_blocks(texts, rows: int = 10_000):
    """A text column (Arrow, chunked or not) as Python lists of a few thousand strings, never all at once."""
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    for chunk in chunks:
        for start in range(0, len(chunk), rows):
            yield chunk.slice(start, rows).to_pylist()
