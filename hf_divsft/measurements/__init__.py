"""The six metrics as Hugging Face `evaluate` measurement modules, shipped inside the package.

    import evaluate
    from hf_divsft.measurements import measurement_path

    self_bleu = evaluate.load(measurement_path("self_bleu"))
    self_bleu.compute(data=["a cat sat", "a cat sat", "dogs bark loudly"])

Each module folder holds `<name>.py` (`_info`, `_compute`) and its module card `README.md`; the
computation itself lives in `hf_divsft.metrics`, so modules and `divsft measure` always agree.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import evaluate

from ..errors import DivsftError
from ..metrics import METRICS as MEASUREMENTS
from ..paper import PAPER_CITATION, PAPER_URL


def measurement_path(name: str) -> str:
    """The folder to pass to `evaluate.load` for one of `MEASUREMENTS`."""
    if name not in MEASUREMENTS:
        raise DivsftError(f"unknown measurement {name!r}; choose from {', '.join(MEASUREMENTS)}")
    return str(Path(__file__).parent / name)


class TextMeasurement(evaluate.Measurement):
    """Base of the six modules: texts in (`data`), the paper cited; a module sets `card` and `_compute`.

    Modules import this through the package (`measurements.TextMeasurement`), because `evaluate.load`
    takes the first measurement class it finds in the module's namespace as the module's own.
    """

    card: tuple[str, str] = ("", "")  # (description, inputs description)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__doc__ = "".join(cls.card)

    def _info(self):
        description, inputs_description = self.card
        return evaluate.MeasurementInfo(
            module_type="measurement",
            description=description,
            citation=PAPER_CITATION,
            inputs_description=inputs_description,
            features=datasets.Features({"data": datasets.Value("string")}),
            reference_urls=[PAPER_URL],
        )
