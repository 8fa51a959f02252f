"""A results folder, read by the Space, and an analysis folder, written by `divsft analyze`.

A results folder is any folder that holds build folders (a `manifest.json` each) and eval runs (a
`summary.json` each), at any depth; `divsft demo-results` and `divsft experiment` write one. An analysis
folder holds `analysis.json`, `results.md` and the two figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..artifacts import read_json
from ..errors import DivsftError
from .build_folder import MANIFEST, BuildFolder
from .eval_run import SUMMARY, EvalRun

ANALYSIS = "analysis.json"
ANALYSIS_WHAT = "an earlier `divsft analyze` output (a folder with analysis.json)"


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
