"""The levels registry: one type extractor per level; a strategy is a level applied to one component.

Every extractor has `from_config(component, config)`, `add_types(ds, num_proc) -> ds` (adds a `types`
column), `type_labels(ds)` and `describe() -> dict`; the selector does the rest, whichever the level.
A new level is one entry in `LEVELS` and one module. Extractors are imported only when used, so reading
the registry (the CLI, the card) costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

COMPONENTS = ("instruction", "response")


@dataclass(frozen=True)
class Level:
    """One granularity of type: the extractor class (imported when used) and how a card describes a type."""

    name: str
    extractor: str  # "module:Class", relative to this package
    unit: str

    def extractor_class(self):
        module, _, name = self.extractor.partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)


LEVELS = {
    level.name: level
    for level in (
        Level("macro", "macro:MacroTypes", "semantic clusters of sentence embeddings (one type per sample)"),
        Level("meso", "meso:MesoTypes",
              "clusters of intention tags (InsTag-style normalisation; several types per sample)"),
        Level("micro", "micro:MicroTypes",
              "mid-frequency tokens (LLM tokenizer; a token is a type when its pool count lies in the band)"),
    )
}
STRATEGIES = tuple(f"{component}-{level}" for component in COMPONENTS for level in LEVELS)


@dataclass(frozen=True)
class Strategy:
    component: str
    level: str

    @classmethod
    def parse(cls, name: str) -> Strategy:
        from ..errors import DivsftError

        component, _, level = name.partition("-")
        if component not in COMPONENTS or level not in LEVELS:
            raise DivsftError(f"--strategy {name}: unknown; choose one of {', '.join(STRATEGIES)}")
        return cls(component, level)

    @property
    def name(self) -> str:
        return f"{self.component}-{self.level}"

    def config_name(self, level: int) -> str:
        """Hub config name of one diversity level, e.g. `response_micro_d050`."""
        return f"{self.component}_{self.level}_d{level:03d}"

    def extractor(self, config):
        """This strategy's type extractor, with the build config's knobs for its level."""
        return LEVELS[self.level].extractor_class().from_config(self.component, config)


_LAZY = {"MacroTypes": "macro", "MesoTypes": "meso", "TagNormalizer": "meso", "MicroTypes": "micro"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["COMPONENTS", "LEVELS", "STRATEGIES", "Level", "Strategy", *_LAZY]
