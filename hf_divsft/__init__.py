"""hf-divsft: diversity-controlled SFT subsets after "From Macro to Micro" (AAAI 2026)."""

__version__ = "0.1.0"

from .build import PAPER_LEVELS, BuildConfig, build  # noqa: E402
from .data import PoolColumns, load_pool  # noqa: E402
from .errors import DivsftError  # noqa: E402
from .measure import MeasureConfig, measure_dataset  # noqa: E402
from .select import Selection, TypeSelector  # noqa: E402
from .strategies import STRATEGIES, MacroTypes, MesoTypes, MicroTypes, Strategy, TagNormalizer  # noqa: E402
from .tokenization import TokenizeColumn, load_tokenizer  # noqa: E402

__all__ = [
    "PAPER_LEVELS",
    "STRATEGIES",
    "BuildConfig",
    "DivsftError",
    "MacroTypes",
    "MeasureConfig",
    "MesoTypes",
    "MicroTypes",
    "PoolColumns",
    "Selection",
    "Strategy",
    "TagNormalizer",
    "TokenizeColumn",
    "TypeSelector",
    "build",
    "load_pool",
    "load_tokenizer",
    "measure_dataset",
]
