"""Type extractors, one per level; a strategy is a level applied to one component.

Every extractor has `add_types(ds, num_proc) -> ds` (adds a `types` column) and `describe() -> dict`;
the selector does the rest, whichever the level.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DivsftError
from .macro import MacroTypes
from .meso import MesoTypes, TagNormalizer
from .micro import MicroTypes

COMPONENTS = ("instruction", "response")
EXTRACTORS = {"macro": MacroTypes, "meso": MesoTypes, "micro": MicroTypes}
STRATEGIES = tuple(f"{component}-{level}" for component in COMPONENTS for level in EXTRACTORS)


@dataclass(frozen=True)
class Strategy:
    component: str
    level: str

    @classmethod
    def parse(cls, name: str) -> "Strategy":
        component, _, level = name.partition("-")
        if component not in COMPONENTS or level not in EXTRACTORS:
            raise DivsftError(f"--strategy {name}: unknown; choose one of {', '.join(STRATEGIES)}")
        return cls(component, level)

    @property
    def name(self) -> str:
        return f"{self.component}-{self.level}"

    def config_name(self, level: int) -> str:
        """Hub config name of one diversity level, e.g. `response_micro_d050`."""
        return f"{self.component}_{self.level}_d{level:03d}"


__all__ = ["COMPONENTS", "EXTRACTORS", "STRATEGIES", "MacroTypes", "MesoTypes", "MicroTypes", "Strategy", "TagNormalizer"]
