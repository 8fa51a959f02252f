"""A results folder, read by the Space, and an analysis folder, written by `divsft analyze`.

A results folder is any folder that holds build folders (a `manifest.json` each) and eval runs (a
`summary.json` each), at any depth; `divsft demo-results` and `divsft experiment` write one. An analysis
folder holds `analysis.json`, `results.md` and the two figures. An experiment's results folder also holds
`experiment.json`: its spec and each step's state (the key of the inputs it ran with, done or failed and
why, seconds), which a rerun reads to skip what is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..artifacts import read_json, write_json
from ..errors import DivsftError
from . import Record, validated
from .build_folder import MANIFEST, BuildFolder
from .eval_run import SUMMARY, EvalRun

ANALYSIS = "analysis.json"
ANALYSIS_WHAT = "an earlier `divsft analyze` output (a folder with analysis.json)"
EXPERIMENT = "experiment.json"
EXPERIMENT_WHAT = "an earlier `divsft experiment` results folder (a folder with experiment.json)"


@dataclass
class ResultsFolder:
    root: Path
    builds: list[BuildFolder]
    runs: list[EvalRun]

    @classmethod
    def read(cls, root: str | Path) -> ResultsFolder:
        """Every build and eval run under `root`, each validated (a bad file is one line naming it)."""
        root = Path(root)
        if not root.is_dir():
            raise DivsftError(f"{root}: not a folder")
        builds = [BuildFolder.read(path.parent) for path in sorted(root.rglob(MANIFEST))
                  if _outside_subsets(path)]
        runs = [EvalRun.read(path.parent) for path in sorted(root.rglob(SUMMARY))]
        return cls(root, builds, runs)

    def placed(self, run: EvalRun):
        """(build, level entry) whose subset the run's model was trained on, matched by the subset's ids."""
        sha = run.summary.subset.ids_sha256 if run.summary.subset else None
        for build in self.builds:
            for entry in build.levels:
                if sha and entry.ids_sha256 == sha:
                    return build, entry
        return None


def _outside_subsets(path: Path) -> bool:
    """A manifest.json inside a saved dataset is not a build's (datasets writes none; be safe)."""
    return not (path.parent / "dataset_info.json").is_file()


def is_analysis(path: Path) -> bool:
    try:
        return isinstance(read_json(path / ANALYSIS, "an analysis"), dict)
    except DivsftError:
        return False


class StepState(Record):
    key: str  # sha256 of the inputs the step ran with
    status: Literal["done", "failed"]
    seconds: float = Field(ge=0)
    reason: str | None = None  # why it failed, one line


class ExperimentState(Record):
    spec: dict
    steps: dict[str, StepState] = Field(default_factory=dict)

    @classmethod
    def read(cls, root: str | Path) -> ExperimentState | None:
        path = Path(root) / EXPERIMENT
        return validated(cls, read_json(path, EXPERIMENT_WHAT), path) if path.is_file() else None

    def write(self, root: str | Path) -> None:
        write_json(Path(root) / EXPERIMENT, self.model_dump(mode="json"))


def is_experiment(path: Path) -> bool:
    return (path / EXPERIMENT).is_file()
