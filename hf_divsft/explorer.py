"""What the Space shows: a results folder read into tables, figures and escaped Markdown.

A results folder is any folder that holds `divsft build` outputs (a `manifest.json` each) and `divsft eval`
outputs (a `summary.json` each), at any depth; `divsft demo-results` writes one. It can also be a Hub
dataset repo that holds such a folder, read with `huggingface_hub` (so `HF_ENDPOINT` applies).
Runs are joined to the subsets they were trained on by the subset's `ids_sha256`, not by path, so a
results folder still joins after it has been moved or downloaded.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .analysis import Run, correlation_figure, correlations, fit_strategies, score_figure
from .build import TYPE_LABELS
from .data import TEXT_COLUMNS
from .errors import DivsftError, reason
from .metrics import METRICS
from .plots import pyplot

NO_RESULTS = (
    "**No results to show yet.** Make a small real results folder (about 3 minutes on 2 CPU cores) and point the "
    "app at it:\n\n```bash\ndivsft demo-results --out demo-results\npython app.py --results demo-results\n```\n\n"
    "Or pass your own folder of `divsft build` and `divsft eval` outputs, or a Hub dataset repo holding one."
)
# Fenced code blocks and inline code spans: Markdown shows their content as text already.
CODE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`)", re.DOTALL)


def safe_markdown(text: str) -> str:
    """Untrusted text (model outputs) as Markdown that can hold no raw HTML: `<`, `>`, `&` are escaped
    outside code, so `<script>` shows as text. Code blocks keep their characters (Markdown escapes them)."""
    parts = CODE.split(text)
    return "".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))


@dataclass
class Build:
    folder: Path
    manifest: dict

    @property
    def strategy(self) -> str:
        return self.manifest["strategy"]

    @cached_property
    def labels(self) -> dict[str, str]:
        path = self.folder / self.manifest.get("type_labels", TYPE_LABELS)
        return json.loads(path.read_text()) if path.is_file() else {}

    def level(self, config: str) -> dict:
        return next(entry for entry in self.manifest["levels"] if entry["config"] == config)

    def rows(self, config: str):
        from datasets import load_from_disk

        return load_from_disk(str(self.folder / config))

    def metrics_table(self, config: str) -> list[list]:
        """[metric, instruction value, response value] for one level (empty if built with --no-metrics)."""
        metrics = self.level(config).get("metrics") or {}
        return [[m] + [_value(metrics.get(c, {}).get(m)) for c in TEXT_COLUMNS] for m in METRICS] if metrics else []

    def type_counts(self, config: str, top: int = 25) -> list[tuple[str, int]]:
        """The subset's most frequent types (rows holding each), with their readable labels."""
        counts = Counter(t for types in self.rows(config)["types"] for t in set(types))
        return [(f"{self.labels.get(str(t), '?')!r} ({t})", n) for t, n in counts.most_common(top)]

    def preview(self, config: str, query: str | None = "", limit: int = 100) -> list[list]:
        """[id, instruction, response, types] of up to `limit` rows whose text holds `query`."""
        query, shown = (query or "").strip().lower(), []
        for row in self.rows(config):
            if query in (row["instruction"] + " " + row["response"]).lower():
                labels = ", ".join(self.labels.get(str(t), str(t)) for t in row["types"][:8])
                shown.append([row["id"], _shorten(row["instruction"], 200), _shorten(row["response"], 200), labels])
            if len(shown) == limit:
                break
        return shown


@dataclass
class EvalRun:
    name: str
    summary: dict
    generations: list[dict]
    judgments: list[dict]

    @property
    def subset(self) -> dict:
        return self.summary.get("subset") or {}

    @property
    def label(self) -> str:
        return self.subset.get("config") or f"base model ({Path(str(self.summary.get('model'))).name})"

    def verdict(self, prompt_id: str) -> str:
        """The judge's word on this run's answer to one prompt, as Markdown."""
        mine = [j for j in self.judgments if j["id"] == prompt_id]
        if not mine:
            return "_no judgment for this prompt_"
        if "nll_sum" in mine[0]:
            nll = mine[0]["nll_sum"] / max(mine[0]["tokens"], 1)
            return f"**reference NLL {nll:.3f}** nats/token (a proxy judge: lower is better)"
        outcome = {1.0: "win", 0.5: "tie", 0.0: "loss", None: "no verdict"}
        orders = "; ".join(f"{j['order'].replace('_', ' ')}: {outcome[j['model_score']]}" for j in mine)
        return f"**vs the reference: {orders}**"


@dataclass
class Results:
    root: Path
    builds: list[Build]
    runs: list[EvalRun]

    @property
    def empty(self) -> bool:
        return not (self.builds or self.runs)

    def placed(self, run: EvalRun) -> tuple[Build, dict] | None:
        """The build and level entry a run's model was trained on, matched by the subset's ids."""
        sha = run.subset.get("ids_sha256")
        for build in self.builds:
            for entry in build.manifest["levels"]:
                if sha and entry["ids_sha256"] == sha:
                    return build, entry
        return None

    def scored_runs(self) -> list[Run]:
        runs = []
        for run in self.runs:
            place = self.placed(run)
            if place and run.summary.get("score") is not None:
                build, entry = place
                runs.append(Run(run.name, build.strategy, entry["level"], run.summary["score"], entry.get("metrics") or {}))
        return runs

    def overview(self):
        """Score against diversity per strategy (figure) and the slopes table, or None without runs."""
        runs = self.scored_runs()
        if not runs:
            return None, []
        by_strategy, fits, _ = fit_strategies(runs)
        table = []
        for strategy, group in sorted(by_strategy.items()):
            fit = fits.get(strategy)  # none below 3 runs: the figure shows the points alone
            numbers = [round(fit[key], 3) for key in ("slope_x1e-2", "sd_x1e-2", "intercept")] if fit else [None] * 3
            table.append([strategy, len(group), *numbers])
        return score_figure(by_strategy, fits), table

    def metric_correlations(self):
        """Pearson r of each metric with the score (figure and table), or None with fewer than 3 runs."""
        runs = self.scored_runs()
        if len(runs) < 3:
            return None, []
        corr = correlations(runs)
        table = [[metric] + [None if corr[c][metric] is None else round(corr[c][metric]["r"], 3) for c in TEXT_COLUMNS]
                 for metric in METRICS]
        return correlation_figure(corr), table

    def build(self, strategy: str) -> Build:
        return next(build for build in self.builds if build.strategy == strategy)

    def run(self, name: str) -> EvalRun:
        return next(run for run in self.runs if run.name == name)

    def run_choices(self, strategy: str | None = None, level: int | None = None) -> list[tuple[str, str]]:
        """(label, name) of each run, kept when its subset matches the strategy and level filters."""
        choices = []
        for run in self.runs:
            place = self.placed(run)
            if strategy and (not place or place[0].strategy != strategy):
                continue
            if level is not None and (not place or place[1]["level"] != level):
                continue
            choices.append((f"{run.label} [{run.name}]", run.name))
        return choices

    def prompts(self, query: str | None = "") -> list[tuple[str, str]]:
        """(shortened prompt, id) of every prompt any run answered, filtered by a case-insensitive search."""
        seen: dict[str, str] = {}
        for run in self.runs:
            for row in run.generations:
                seen.setdefault(row["id"], row["instruction"])
        query = (query or "").strip().lower()
        return [(_shorten(text), key) for key, text in seen.items() if query in text.lower()]

    def answers(self, prompt_id: str, names: list[str]) -> tuple[str, list[str]]:
        """The prompt with its reference, and one Markdown block per run: its output and the verdict."""
        runs = [self.run(name) for name in names]
        rows = [next((g for g in run.generations if g["id"] == prompt_id), None) for run in runs]
        first = next((row for row in rows if row), None)
        if first is None:
            return "_no run answered this prompt_", []
        header = f"### Prompt\n\n{safe_markdown(first['instruction'])}"
        if first.get("reference"):
            header += f"\n\n### Reference answer\n\n{safe_markdown(first['reference'])}"
        blocks = [f"### {safe_markdown(run.label)}\n\n{run.verdict(prompt_id)}\n\n---\n\n"
                  + (safe_markdown(row["output"]) if row else "_no answer_") for run, row in zip(runs, rows)]
        return header, blocks


def types_figure(counts: list[tuple[str, int]], title: str):
    """A horizontal bar chart of type counts, the most frequent on top."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(counts) + 1), constrained_layout=True)
    ax.barh([label for label, _ in counts][::-1], [n for _, n in counts][::-1], color="tab:blue")
    ax.set_xlabel("rows holding the type")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    return fig


def _value(metric: dict | None) -> float | None:
    return None if metric is None else round(metric["value"], 4)


def _shorten(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def load_results(source: str | Path | None) -> Results:
    """Read a results folder, or download a Hub dataset repo (`owner/name`) that holds one."""
    if not source:
        return Results(Path("."), [], [])
    root = Path(source)
    if not root.exists():
        root = _download(str(source))
    builds = [Build(path.parent, json.loads(path.read_text())) for path in sorted(root.rglob("manifest.json"))]
    runs = [_read_run(root, path.parent) for path in sorted(root.rglob("summary.json"))]
    return Results(root, builds, runs)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    if repo_id.count("/") != 1:
        raise DivsftError(f"{repo_id}: no such folder, and not a Hub dataset repo id (owner/name)")
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset"))
    except Exception as err:
        raise DivsftError(f"{repo_id}: no such folder, and the Hub dataset repo could not be read ({reason(err)})") from err


def _read_run(root: Path, folder: Path) -> EvalRun:
    def jsonl(name: str) -> list[dict]:
        path = folder / name
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line] if path.is_file() else []

    return EvalRun(str(folder.relative_to(root)), json.loads((folder / "summary.json").read_text()),
                   jsonl("generations.jsonl"), jsonl("judgments.jsonl"))
