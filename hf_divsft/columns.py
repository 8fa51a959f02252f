"""The base of every batched map function that adds one cached feature column (token ids, embeddings, tags)."""

from __future__ import annotations

from datasets import Dataset, Features

from .errors import DivsftError


class FeatureColumn:
    """`ds.map(fn, batched=True)` adds `<column>_<suffix>`; `fn.apply(ds)` does so once, with typed features.

    Subclasses keep only names and settings as state, so `datasets` fingerprints them stably and caches.
    """

    suffix = ""
    verb = "Computing"
    batch_size = 1000

    def __init__(self, column: str):
        self.column = column
        self.output_column = f"{column}_{self.suffix}"

    def feature(self):
        raise NotImplementedError

    def apply(self, ds: Dataset, num_proc: int | None = None, keep_in_memory: bool = False) -> Dataset:
        """Add the column unless present; `keep_in_memory` keeps cache files out of a source folder."""
        if self.output_column in ds.column_names:
            return ds
        if self.column not in ds.column_names:
            raise DivsftError(f"no column '{self.column}' to read (columns: {', '.join(ds.column_names)})")
        features = Features({**ds.features, self.output_column: self.feature()})
        return ds.map(
            self, batched=True, batch_size=self.batch_size, num_proc=num_proc, features=features,
            keep_in_memory=keep_in_memory, desc=f"{self.verb} {self.column}",
        )
