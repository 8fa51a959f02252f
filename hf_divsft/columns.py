"""The one way hf-divsft maps over a dataset, and the base of every cached feature column.

`map_batches` is `Dataset.map(batched=True)` with one difference: a dataset read from a user's folder (a
`save_to_disk` pool, a build's subset) keeps its cache files in our cache, not beside the user's files,
so no command ever adds files to its inputs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

from datasets import Dataset, Features
from datasets import config as datasets_config
from datasets.fingerprint import Hasher

from .assets import cache_dir
from .errors import DivsftError


def _in_user_folder(ds: Dataset) -> bool:
    if not ds.cache_files:
        return False
    home = Path(ds.cache_files[0]["filename"]).resolve()
    caches = (Path(datasets_config.HF_DATASETS_CACHE).resolve(), cache_dir().resolve())
    return not any(home.is_relative_to(cache) for cache in caches)


@functools.lru_cache(maxsize=64)
def _module_digest(module: str) -> str:
    """The source of the module that defines a map function: editing it invalidates cached results."""
    spec = importlib.util.find_spec(module)
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest() if spec and spec.origin else module


def map_batches(ds: Dataset, fn, *, desc: str, features: Features | None = None, with_indices: bool = False,
                batch_size: int = 1000, num_proc: int | None = None, keep_in_memory: bool = False) -> Dataset:
    """`ds.map(fn, batched=True, ...)`, cached by fingerprint, never inside the folder the data came from.

    The fingerprint covers the function's settings and its module's code (a callable object's state alone
    would hide a changed method), the input's fingerprint, format and the map's options.
    """
    module = getattr(fn, "__module__", None) or type(fn).__module__
    fingerprint = Hasher.hash([ds._fingerprint, ds.format, fn, _module_digest(module), features, with_indices,
                               batch_size])
    options = dict(batched=True, batch_size=batch_size, with_indices=with_indices, num_proc=num_proc,
                   features=features, keep_in_memory=keep_in_memory, desc=desc, new_fingerprint=fingerprint)
    if not keep_in_memory and _in_user_folder(ds):
        folder = cache_dir() / "maps"
        folder.mkdir(parents=True, exist_ok=True)
        options["cache_file_name"] = os.fspath(folder / f"cache-{fingerprint}.arrow")
    return ds.map(fn, **options)


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
        """Add the column unless present."""
        if self.output_column in ds.column_names:
            return ds
        if self.column not in ds.column_names:
            raise DivsftError(f"no column '{self.column}' to read (columns: {', '.join(ds.column_names)})")
        features = Features({**ds.features, self.output_column: self.feature()})
        return map_batches(ds, self, features=features, batch_size=self.batch_size, num_proc=num_proc,
                           keep_in_memory=keep_in_memory, desc=f"{self.verb} {self.column}")
