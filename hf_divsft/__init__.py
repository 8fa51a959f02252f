"""hf-divsft: diversity-controlled SFT subsets after "From Macro to Micro" (AAAI 2026).

The public names below are imported when first used, so `import hf_divsft` (and the CLI's light
commands, and the Space) does not load datasets, scikit-learn or torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"  # the one place the version is written; pyproject.toml reads it

_EXPORTS = {
    "PAPER_LEVELS": "config",
    "BuildConfig": "config",
    "MeasureConfig": "config",
    "PoolColumns": "config",
    "DivsftError": "errors",
    "build": "pipeline",
    "load_pool": "data",
    "measure_dataset": "measure",
    "Selection": "select",
    "TypeSelector": "select",
    "STRATEGIES": "strategies",
    "Strategy": "strategies",
    "MacroTypes": "strategies",
    "MesoTypes": "strategies",
    "MicroTypes": "strategies",
    "TagNormalizer": "strategies",
    "TokenizeColumn": "tokenization",
    "load_tokenizer": "tokenization",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
