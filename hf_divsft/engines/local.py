"""The default engine: `datasets.map` in this process (`num_proc` worker processes), cached by fingerprint."""

from __future__ import annotations

from datasets import Dataset

from ..columns import map_batches


class LocalEngine:
    name = "local"
    reads_shards = False  # `datasets` reads the pool's files

    def added_columns(self, inputs: Dataset, fn, **options) -> Dataset:
        """The columns `fn` computes from `inputs`' batches (the input columns are not kept)."""
        return map_batches(inputs, fn, remove_columns=inputs.column_names, **options)

    def describe(self) -> dict:
        return {"name": self.name}
