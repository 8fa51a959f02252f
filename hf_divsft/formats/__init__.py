"""The owners of hf-divsft's file formats: each reads, validates and writes one kind of folder.

* `build_folder`: what `divsft build` writes (manifest, one saved subset per level, type labels);
* `eval_run`: what `divsft eval` writes (summary, generations, judgments) and what a trained model
  records about its subset;
* `results`: a results folder (builds and eval runs at any depth) and an analysis folder.

Every command and the Space read these formats through these modules only, so a bad file always gives
one line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import DivsftError


class Record(BaseModel):
    """A JSON object of one of our formats: strict types, unknown keys kept (newer writers may add some)."""

    model_config = ConfigDict(extra="allow", strict=True)


def validated(model: type[Record], data, path: str | Path, where: str = ""):
    """`model` made from `data`, or one line: `path: where field.sub: what is wrong`."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        detail = err.errors(include_url=False)[0]
        field = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in detail["loc"])
        field = field.replace(".[", "[") or "the top level"
        raise DivsftError(f"{path}: {where}field '{field}': {detail['msg']}") from None
