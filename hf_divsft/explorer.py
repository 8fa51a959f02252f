"""What the Space shows: a results folder read into tables, figures and safe HTML.

A results folder is any folder that holds `divsft build` outputs (a `manifest.json` each) and `divsft eval`
outputs (a `summary.json` each), at any depth; `divsft demo-results` writes one. It can also be a Hub
dataset repo that holds such a folder, read with `huggingface_hub` (so `HF_ENDPOINT` applies).
Runs are joined to the subsets they were trained on by the subset's `ids_sha256`, not by path, so a
results folder still joins after it has been moved or downloaded.
Every file of a results folder can be edited by anyone, so all text read from it is untrusted: the Compare
view renders it with `untrusted_html` alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

from .analysis import Run, correlation_figure, correlations, fit_strategies, length_confound, score_figure
from .errors import DivsftError, reason
from .formats.build_folder import BuildFolder
from .formats.eval_run import EvalRun, NllJudgment
from .formats.results import ResultsFolder
from .metrics import METRICS
from .plots import pyplot
from .strategies import COMPONENTS

NO_RESULTS = (
    "**No results to show yet.** Make a small real results folder (about 3 minutes on 2 CPU cores) and point the "
    "app at it:\n\n```bash\ndivsft demo-results --out demo-results\npython app.py --results demo-results\n```\n\n"
    "Or pass your own folder of `divsft build` and `divsft eval` outputs, or a Hub dataset repo holding one."
)
# CommonMark without raw HTML and without links, autolinks, images or link reference definitions: model
# output must neither become markup nor make the browser fetch or navigate anywhere.
MARKDOWN = MarkdownIt("commonmark", {"html": False}).disable(
    ["html_block", "html_inline", "link", "image", "autolink", "reference"])


def untrusted_html(text: str, inline: bool = False) -> str:
    """Untrusted text (model outputs, prompts, run labels, judge fields) as HTML made on the server.

    It is rendered as CommonMark with markdown-it-py, which escapes every `<`, `>`, `&` and `"` of the text
    (in code spans and blocks too), so `<script>` shows as text. The only elements it can hold are
    markdown-it's own formatting ones: p, em, strong, code, pre, ul, ol, li, h1-h6, blockquote, hr and br.
    None carries an attribute except `start="N"` (N digits) on an ordered list that does not start at 1:
    a fence's info string (```` ```lang ````) is dropped rather than written into `class`.
    `inline=True` renders one line's worth (em, strong, code, br; no `<p>`), to sit inside a heading.
    """
    tokens = MARKDOWN.parseInline(text) if inline else MARKDOWN.parse(text)
    for token in tokens:
        if token.type == "fence":
            token.info = ""
    return MARKDOWN.renderer.render(tokens, MARKDOWN.options, {})


def run_label(run: EvalRun) -> str:
    subset = run.summary.subset
    return subset.config if subset and subset.config else f"base model ({Path(run.summary.model).name})"


def verdict(run: EvalRun, prompt_id: str) -> str:
    """The judge's word on this run's answer to one prompt, as Markdown: its fields come from an editable
    file, so it is shown through `untrusted_html`."""
    mine = [j for j in run.judgments if j.id == prompt_id]
    if not mine:
        return "_no judgment for this prompt_"
    if isinstance(mine[0], NllJudgment):
        nll = mine[0].nll_sum / max(mine[0].tokens, 1)
        return f"**reference NLL {nll:.3f}** nats/token (a proxy judge: lower is better)"
    outcome = {1.0: "win", 0.5: "tie", 0.0: "loss", None: "no verdict"}
    orders = "; ".join(f"{j.order.replace('_', ' ')}: {outcome[j.model_score]}" for j in mine)
    return f"**vs the reference: {orders}**"


def metrics_table(build: BuildFolder, config: str) -> list[list]:
    """[metric, instruction value, response value] for one level (empty if built with --no-metrics)."""
    metrics = build.level(config).metrics or {}
    return [[m] + [_value(metrics.get(c, {}).get(m)) for c in COMPONENTS] for m in METRICS] if metrics else []


LENGTH_COLUMNS = ("mean", "p10", "p25", "p50", "p75", "p90")


def length_table(build: BuildFolder, config: str) -> list[list]:
    """[component, mean, p10 .. p90 tokens] for one level (empty for builds that did not record them)."""
    confounds = build.level(config).confounds
    if confounds is None:
        return []
    return [[component, *(getattr(confounds.length_tokens[component], q) for q in LENGTH_COLUMNS)]
            for component in COMPONENTS]


def source_table(build: BuildFolder, config: str) -> list[list]:
    """[value of the source column, share of the level's rows], largest first (empty without one)."""
    confounds = build.level(config).confounds
    mix = dict(confounds.source_mix or {}) if confounds else {}
    column = mix.pop("column", "source")
    return [[f"{column} = {value}", share] for value, share in mix.items()]


def type_counts(build: BuildFolder, config: str, top: int = 25) -> list[tuple[str, int]]:
    """The subset's most frequent types (rows holding each), with their readable labels."""
    labels = build.type_labels()
    counts = Counter(t for types in build.subset(config)["types"] for t in set(types))
    return [(f"{labels.get(str(t), '?')!r} ({t})", n) for t, n in counts.most_common(top)]


def preview(build: BuildFolder, config: str, query: str | None = "", limit: int = 100) -> list[list]:
    """[id, instruction, response, types] of up to `limit` rows whose text holds `query`."""
    query, shown, labels = (query or "").strip().lower(), [], build.type_labels()
    for row in build.subset(config):
        if query in (row["instruction"] + " " + row["response"]).lower():
            names = ", ".join(labels.get(str(t), str(t)) for t in row["types"][:8])
            shown.append([row["id"], _shorten(row["instruction"], 200), _shorten(row["response"], 200),
                          names])
        if len(shown) == limit:
            break
    return shown


@dataclass
class Results:
    """A results folder as the Space shows it; runs are named by their folder, relative to the root."""

    folder: ResultsFolder

    @property
    def root(self) -> Path:
        return self.folder.root

    @property
    def builds(self) -> list[BuildFolder]:
        return self.folder.builds

    @property
    def runs(self) -> list[EvalRun]:
        return self.folder.runs

    @property
    def empty(self) -> bool:
        return not (self.builds or self.runs)

    def name(self, run: EvalRun) -> str:
        return run.path.relative_to(self.root).as_posix()

    def placed(self, run: EvalRun):
        return self.folder.placed(run)

    def scored_runs(self) -> list[Run]:
        runs = []
        for run in self.runs:
            place = self.placed(run)
            if place and run.summary.score is not None:
                runs.append(Run.of(self.name(run), *place, run.summary.score))
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
            confound = [None if r is None else round(r, 3) for r in length_confound(group).values()]
            table.append([strategy, len(group), *numbers, *confound])
        return score_figure(by_strategy, fits), table

    def metric_correlations(self):
        """Pearson r of each metric with the score (figure and table), or None with fewer than 3 runs."""
        runs = self.scored_runs()
        if len(runs) < 3:
            return None, []
        corr = correlations(runs)
        table = [[metric] + [None if corr[c][metric] is None else round(corr[c][metric]["r"], 3)
                             for c in COMPONENTS]
                 for metric in METRICS]
        return correlation_figure(corr), table

    def build(self, strategy: str) -> BuildFolder:
        return next(build for build in self.builds if build.strategy == strategy)

    def run(self, name: str) -> EvalRun:
        return next(run for run in self.runs if self.name(run) == name)

    def run_choices(self, strategy: str | None = None, level: int | None = None) -> list[tuple[str, str]]:
        """(label, name) of each run, kept when its subset matches the strategy and level filters."""
        choices = []
        for run in self.runs:
            place = self.placed(run)
            if strategy and (not place or place[0].strategy != strategy):
                continue
            if level is not None and (not place or place[1].level != level):
                continue
            choices.append((f"{run_label(run)} [{self.name(run)}]", self.name(run)))
        return choices

    def prompts(self, query: str | None = "") -> list[tuple[str, str]]:
        """(shortened prompt, id) of every prompt any run answered, filtered by a case-insensitive search."""
        seen: dict[str, str] = {}
        for run in self.runs:
            for row in run.generations:
                seen.setdefault(row.id, row.instruction)
        query = (query or "").strip().lower()
        return [(_shorten(text), key) for key, text in seen.items() if query in text.lower()]

    def answers(self, prompt_id: str, names: list[str]) -> tuple[str, list[str]]:
        """The prompt with its reference, and one HTML block per run: its label, the verdict and its output.
        Every value read from the results (prompt, reference, label, verdict, output) is rendered by
        `untrusted_html`; only the headings and the rule between verdict and output are written here."""
        runs = [self.run(name) for name in names]
        rows = [next((g for g in run.generations if g.id == prompt_id), None) for run in runs]
        first = next((row for row in rows if row), None)
        if first is None:
            return "<p><em>no run answered this prompt</em></p>", []
        header = f"<h3>Prompt</h3>\n{untrusted_html(first.instruction)}"
        if first.reference:
            header += f"<h3>Reference answer</h3>\n{untrusted_html(first.reference)}"
        blocks = []
        for run, row in zip(runs, rows):
            output = untrusted_html(row.output) if row else "<p><em>no answer</em></p>"
            blocks.append(f"<h3>{untrusted_html(run_label(run), inline=True)}</h3>\n"
                          f"{untrusted_html(verdict(run, prompt_id))}<hr />\n{output}")
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


def _value(metric) -> float | None:
    return None if metric is None or metric.value is None else round(metric.value, 4)


def _shorten(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def load_results(source: str | Path | None) -> Results:
    """Read (and validate) a results folder, or download a Hub dataset repo (`owner/name`) that holds one."""
    if not source:
        return Results(ResultsFolder(Path("."), [], []))
    root = Path(source)
    if not root.exists():
        root = _download(str(source))
    return Results(ResultsFolder.read(root))


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    if repo_id.count("/") != 1:
        raise DivsftError(f"{repo_id}: no such folder, and not a Hub dataset repo id (owner/name)")
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset"))
    except Exception as err:
        raise DivsftError(f"{repo_id}: no such folder, and the Hub dataset repo could not be read ({reason(err)})") from err
