"""`divsft analyze`: score against diversity per strategy (Bayesian linear regression), metric correlations, plots.

Each eval run (a `divsft eval` folder) names the subset its model was trained on; the subset's build
manifest gives its strategy, diversity level and six metrics. Per strategy, score = a + b * level + noise
is fitted with scikit-learn's `BayesianRidge`; the slope is reported like the paper's, in units of 1e-2
score per diversity percent (that is, the score change from 0% to 100%). Pearson's r relates each metric,
on each component, to the score over all runs. Beside each slope stand the score's r with the subsets'
mean response length and the level's r with it: when length rises with the level and the score follows
length, length may explain the slope (build with `--control length` to tell them apart).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import check_output, staged_dir, write_json
from .config import AnalyzeConfig
from .errors import DivsftError
from .formats.build_folder import MANIFEST, BuildFolder
from .formats.eval_run import SUMMARY, EvalRun
from .formats.results import ANALYSIS, ANALYSIS_WHAT, is_analysis
from .metrics import METRICS
from .plots import pyplot
from .strategies import COMPONENTS


@dataclass
class Run:
    folder: str
    strategy: str
    level: int
    score: float
    metrics: dict
    build: str | None = None  # the build folder of its subset
    lengths: dict | None = None  # {component: mean tokens of its subset}, from the manifest's confounds

    @classmethod
    def of(cls, folder: str, build: BuildFolder, entry, score: float) -> Run:
        """The run of a model trained on level `entry` of `build`."""
        lengths = {c: q.mean for c, q in entry.confounds.length_tokens.items()} if entry.confounds else None
        return cls(folder, build.strategy, entry.level, score, entry.metric_values(), str(build.path), lengths)


def read_runs(folders: list[str]) -> tuple[list[Run], list[str]]:
    """Runs joined with their build manifests, and a note for each run that could not be placed."""
    runs, skipped, judges = [], [], set()
    for folder in folders:
        if not (Path(folder) / SUMMARY).is_file():
            raise DivsftError(f"{folder}: not a `divsft eval` output (no {SUMMARY})")
        summary = EvalRun.read(folder).summary
        subset = summary.subset
        if subset is None or subset.config is None or not (Path(subset.source) / MANIFEST).is_file():
            skipped.append(f"{folder}: its model names no `divsft build` subset (trained elsewhere, or the base model)")
            continue
        build = BuildFolder.read(subset.source)
        entry = next((e for e in build.levels if e.config == subset.config), None)
        if entry is None or entry.ids_sha256 != (subset.ids_sha256 or entry.ids_sha256):
            skipped.append(f"{folder}: {build.path / MANIFEST} no longer holds the subset it was trained on "
                           "(rebuilt?)")
            continue
        if summary.score is None:
            skipped.append(f"{folder}: no score (no judge verdict could be read)")
            continue
        judges.add(json.dumps(summary.judge, sort_keys=True))
        runs.append(Run.of(str(folder), build, entry, summary.score))
    if len(judges) > 1:
        raise DivsftError(f"the runs were scored by different judges ({'; '.join(sorted(judges))}); "
                          f"analyze runs of one judge at a time")
    return runs, skipped


def bayesian_slope(levels: np.ndarray, scores: np.ndarray) -> dict:
    """Posterior mean and sd of the slope of score on level (per percent), via BayesianRidge."""
    from sklearn.linear_model import BayesianRidge

    model = BayesianRidge(fit_intercept=True).fit(levels.reshape(-1, 1), scores)
    slope, sd = float(model.coef_[0]), float(np.sqrt(model.sigma_[0, 0]))
    return {"slope": slope, "sd": sd, "slope_x1e-2": slope * 100, "sd_x1e-2": sd * 100,
            "intercept": float(model.intercept_), "noise_sd": float(1 / np.sqrt(model.alpha_)), "n": len(levels),
            "model": model}


def pearson(values: list, scores: list) -> dict | None:
    """Pearson r (and p) of two equally long series; None below 3 points, with a gap, or a constant one."""
    from scipy.stats import pearsonr

    if len(values) < 3 or any(v is None for v in values) or np.ptp(values) == 0 or np.ptp(scores) == 0:
        return None
    r, p = pearsonr(values, scores)
    return {"r": float(r), "p": float(p), "n": len(values)}


def correlations(runs: list[Run]) -> dict:
    """Pearson r (and p) of each metric's value with the score, per component, over all runs."""
    scores = [run.score for run in runs]
    return {component: {metric: pearson([run.metrics.get(component, {}).get(metric, {}).get("value")
                                         for run in runs], scores) for metric in METRICS}
            for component in COMPONENTS}


def length_confound(group: list[Run]) -> dict:
    """r of the score, and of the level, with the runs' mean response length (None without lengths)."""
    lengths = [(run.lengths or {}).get("response") for run in group]
    return {"score_length_r": (pearson(lengths, [run.score for run in group]) or {}).get("r"),
            "level_length_r": (pearson(lengths, [run.level for run in group]) or {}).get("r")}


def fit_strategies(runs: list[Run]) -> tuple[dict[str, list[Run]], dict, list[str]]:
    """Runs grouped by strategy, the slope fit of each group that can have one, and why others have none."""
    by_strategy: dict[str, list[Run]] = {}
    for run in runs:
        by_strategy.setdefault(run.strategy, []).append(run)
    fits, notes = {}, []
    for strategy, group in sorted(by_strategy.items()):
        # two points fit any line exactly, so the noise (and the slope's sd) needs a third
        if len(group) >= 3 and len({run.level for run in group}) >= 2:
            fits[strategy] = bayesian_slope(np.array([r.level for r in group], float), np.array([r.score for r in group]))
        else:
            notes.append(f"{strategy}: {len(group)} run(s); a slope needs at least 3 runs at 2 or more levels")
    return by_strategy, fits, notes


def analyze(config: AnalyzeConfig, missing: list[str] = ()) -> dict:
    """The report (and its folder); `missing` names runs that should exist but do not (an experiment's
    failed or blocked steps), so the report says what its slopes lack."""
    runs, skipped = read_runs(config.runs)  # small files: read (and refused) before the output is checked
    builds = [run.build for run in runs]
    check_output(config.out, overwrite=config.overwrite, owned=is_analysis, what=ANALYSIS_WHAT,
                 inputs=[*config.runs, *builds])
    if not runs:
        raise DivsftError("no run names a `divsft build` subset: evaluate models trained with `divsft train`")
    by_strategy, fits, notes = fit_strategies(runs)
    corr = correlations(runs)
    report = {
        "runs": [{"folder": r.folder, "strategy": r.strategy, "level": r.level, "score": r.score} for r in runs],
        "skipped": skipped + notes,
        "missing": list(missing),
        "slopes": {s: {**{k: v for k, v in fit.items() if k != "model"}, **length_confound(by_strategy[s])}
                   for s, fit in fits.items()},
        "correlations": corr,
    }
    plt = pyplot()
    with staged_dir(config.out, overwrite=config.overwrite, owned=is_analysis, what=ANALYSIS_WHAT) as staging:
        write_json(staging / ANALYSIS, report)
        for figure, name in ((score_figure(by_strategy, fits), "score_vs_diversity.png"),
                             (correlation_figure(corr), "metric_correlations.png")):
            figure.savefig(staging / name, dpi=110)
            plt.close(figure)
        (staging / "results.md").write_text(_results_markdown(report), encoding="utf-8")
    return report


def score_figure(by_strategy: dict, fits: dict):
    """Like the paper's Figure 3: per strategy, scores, the posterior mean line and its 1-sigma band."""
    plt = pyplot()
    names = sorted(by_strategy)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False, constrained_layout=True)
    grid = np.linspace(0, 100, 101)
    for ax, strategy in zip(axes[0], names):
        group = by_strategy[strategy]
        ax.scatter([r.level for r in group], [r.score for r in group], color="black", s=14, zorder=3)
        if strategy in fits:
            mean, sd = fits[strategy]["model"].predict(grid.reshape(-1, 1), return_std=True)
            noise = fits[strategy]["noise_sd"]
            band = np.sqrt(np.maximum(sd**2 - noise**2, 0))  # uncertainty of the line, not of a new point
            ax.plot(grid, mean, color="tab:blue")
            ax.fill_between(grid, mean - band, mean + band, color="tab:blue", alpha=0.25)
            ax.set_title(f"{strategy}\nslope {fits[strategy]['slope_x1e-2']:.2f} ± {fits[strategy]['sd_x1e-2']:.2f} (x1e-2)",
                         fontsize=9)
        else:
            ax.set_title(strategy, fontsize=9)
        ax.set_xlabel("diversity level (%)", fontsize=8)
        ax.set_ylabel("score", fontsize=8)
    return fig


def correlation_figure(corr: dict):
    """Like the paper's Figure 4: Pearson r of each metric with the score, instruction and response side by side."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.4), constrained_layout=True)
    x = np.arange(len(METRICS))
    for offset, component in ((-0.2, "instruction"), (0.2, "response")):
        values = [(corr[component][m] or {}).get("r", 0.0) for m in METRICS]
        ax.bar(x + offset, values, width=0.4, label=component)
    ax.set_xticks(x, [metric.label.replace(" ", "\n", 1) for metric in METRICS.values()], fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("Pearson r with score")
    ax.legend(fontsize=8)
    return fig


def _results_markdown(report: dict) -> str:
    lines = ["# Diversity analysis", "", "## Score against diversity level (Bayesian linear regression)", "",
             ("| strategy | runs | slope (x1e-2) | sd (x1e-2) | intercept | r(score, response length) "
              "| r(level, response length) |"), "|---|---|---|---|---|---|---|"]
    for strategy, fit in report["slopes"].items():
        confound = " | ".join("n/a" if fit[k] is None else f"{fit[k]:.3f}" for k in ("score_length_r", "level_length_r"))
        lines.append(f"| {strategy} | {fit['n']} | {fit['slope_x1e-2']:.3f} | {fit['sd_x1e-2']:.3f} "
                     f"| {fit['intercept']:.3f} | {confound} |")
    lines += ["", "## Pearson r of each metric with the score (all runs)", "",
              "| metric | instruction r | response r |", "|---|---|---|"]
    for metric in METRICS:
        cells = [report["correlations"][c][metric] for c in COMPONENTS]
        lines.append(f"| {metric} | " + " | ".join("n/a" if c is None else f"{c['r']:.3f} (p={c['p']:.2g})" for c in cells) + " |")
    if report["skipped"]:
        lines += ["", "## Left out", ""] + [f"- {note}" for note in report["skipped"]]
    if report["missing"]:
        lines += ["", "## Missing (not run, or failed)", ""] + [f"- {note}" for note in report["missing"]]
    return "\n".join(lines) + "\n"
