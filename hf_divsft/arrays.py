"""Vectorised helpers for list columns (a row's token ids, a row's types) held as Arrow list arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


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


def row_pairs(values) -> tuple[int, np.ndarray, np.ndarray]:
    """(number of rows, row index of each item, item) for a list column; nulls count as empty rows."""
    array = as_list_array(values)
    lengths = np.asarray(array.value_lengths().fill_null(0), dtype=np.int64)
    items = np.asarray(array.flatten(), dtype=np.int64)
    return len(array), np.repeat(np.arange(len(array), dtype=np.int32), lengths), items


def distinct_pairs(rows: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated (row, item) pairs; the result is sorted by row, then item."""
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


def text_blocks(texts, rows: int = 10_000):
    """A text column (Arrow, chunked or not) as Python lists of a few thousand strings, never all at once."""
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    for chunk in chunks:
        for start in range(0, len(chunk), rows):
            yield chunk.slice(start, rows).to_pylist()
