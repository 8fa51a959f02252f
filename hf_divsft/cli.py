"""`divsft`: a thin typer wrapper; all the work lives in the library modules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .assets import DEFAULT_EVAL_SET, DEFAULT_POOL
from .errors import DivsftError

app = typer.Typer(
    help="Diversity-controlled SFT subsets after 'From Macro to Micro' (AAAI 2026).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def divsft() -> None:
    """Diversity-controlled SFT subsets after 'From Macro to Micro' (AAAI 2026)."""


# Options shared by several commands, declared once.
Split = Annotated[str, typer.Option(help="Pool split (default train)")]
InstructionColumn = Annotated[str, typer.Option(help="Pool column holding the instruction")]
ResponseColumn = Annotated[str, typer.Option(help="Pool column holding the response")]
InputColumn = Annotated[str, typer.Option(help="Optional column appended to the instruction")]
MessagesColumn = Annotated[str, typer.Option(help="Chat column used when there is no instruction/response")]
IdColumn = Annotated[str, typer.Option(help="Column of unique row ids (generated if absent)")]
Tokenizer = Annotated[str, typer.Option(help="smollm2 (bundled GGUF), whitespace, or a path / Hub id")]
Embedder = Annotated[str, typer.Option(help="minilm-static (fast), minilm, or a sentence-transformers path")]
Seed = Annotated[int, typer.Option(help="Random seed (default 0)")]
NumProc = Annotated[int, typer.Option(help="Processes for datasets.map")]


def _column_flags(**names: str | None) -> dict[str, str]:
    """The `--*-column` flags that were given, as PoolColumns fields."""
    return {key: value for key, value in names.items() if value is not None}


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DivsftError(f"{flag} {text}: give whole numbers separated by commas, e.g. 0,50,100") from None


def _int_pair(text: str, flag: str) -> tuple[int, int]:
    values = _int_list(text, flag)
    if len(values) != 2:
        raise DivsftError(f"{flag} {text}: give two whole numbers, MIN,MAX")
    return values[0], values[1]


def _fail(err: DivsftError) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2)


@app.command()
def build(
    pool: Annotated[str, typer.Option(help="Hub id, Hub-layout folder, saved dataset, or .jsonl/.json/.parquet")] = None,
    strategy: Annotated[str, typer.Option(help="{instruction,response}-{macro,meso,micro}")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: one saved dataset per level + manifest.json")] = None,
    levels: Annotated[str, typer.Option(help="Diversity levels in percent (default 0,17,33,50,67,83,100)")] = None,
    size: Annotated[int, typer.Option(help="Samples per subset (N) (default 10000)")] = None,
    seed: Seed = None,
    split: Split = None,
    instruction_column: InstructionColumn = None,
    response_column: ResponseColumn = None,
    input_column: InputColumn = None,
    messages_column: MessagesColumn = None,
    id_column: IdColumn = None,
    tokenizer: Tokenizer = None,
    band: Annotated[str, typer.Option(help="Mid-frequency band LOW,HIGH: LOW < count <= HIGH (default 10,500)")] = None,
    band_scale: Annotated[bool, typer.Option(help="Scale the band from the paper's 117K pool to this pool")] = None,
    frequency: Annotated[str, typer.Option(help="Count token 'occurrences' or 'samples' holding the token")] = None,
    embedder: Embedder = None,
    min_cluster_size: Annotated[int, typer.Option(help="macro: HDBSCAN min_cluster_size (default 30)")] = None,
    umap_epochs: Annotated[int, typer.Option(help="macro: UMAP epochs (default 50; 0 = UMAP's own, full fidelity)")] = None,
    noise: Annotated[str, typer.Option(help="macro: HDBSCAN outliers 'drop' (no type) or one 'type'")] = None,
    tagger: Annotated[str, typer.Option(help="meso: spacy (offline), openai (any compatible endpoint) or transformers")] = None,
    tagger_model: Annotated[str, typer.Option(help="meso: model name for --tagger openai/transformers")] = None,
    base_url: Annotated[str, typer.Option(help="meso: OpenAI-compatible base URL; key from OPENAI_API_KEY")] = None,
    tag_alpha: Annotated[int, typer.Option(help="meso: drop tags seen in fewer samples (default 20)")] = None,
    tag_similarity: Annotated[float, typer.Option(help="meso: cosine similarity that merges tags (default 0.85)")] = None,
    tag_association: Annotated[float, typer.Option(help="meso: co-occurrence confidence that merges tags (default 0.95)")] = None,
    response_tokens: Annotated[str, typer.Option(help="Keep only responses with MIN,MAX tokens (length ablation)")] = None,
    metrics: Annotated[bool, typer.Option(help="Measure the six metrics of every level into the manifest")] = None,
    num_proc: NumProc = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists")] = None,
    config: Annotated[Path, typer.Option(help="YAML file with any of these options; flags override it")] = None,
) -> None:
    """Build diversity-controlled subsets of one strategy at several diversity levels."""
    from .build import BuildConfig
    from .build import build as run_build

    flags = dict(
        pool=pool, strategy=strategy, out=str(out) if out else None, size=size, seed=seed, split=split,
        tokenizer=tokenizer, band_scale=band_scale, frequency=frequency, metrics=metrics, num_proc=num_proc,
        overwrite=overwrite,
        embedder=embedder, min_cluster_size=min_cluster_size, umap_epochs=umap_epochs, noise=noise, tagger=tagger, tagger_model=tagger_model,
        base_url=base_url, tag_alpha=tag_alpha, tag_similarity=tag_similarity, tag_association=tag_association,
    )
    try:
        flags["levels"] = _int_list(levels, "--levels") if levels else None
        flags["band"] = _int_pair(band, "--band") if band else None
        flags["response_tokens"] = _int_pair(response_tokens, "--response-tokens") if response_tokens else None
        flags = {key: value for key, value in flags.items() if value is not None}
        columns = _column_flags(
            instruction=instruction_column, response=response_column, input=input_column,
            messages=messages_column, id=id_column,
        )
        if config:
            cfg = BuildConfig.from_yaml(config, **flags)
            for key, value in columns.items():
                setattr(cfg.columns, key, value)
        else:
            missing = [f"--{name}" for name in ("pool", "strategy", "out") if name not in flags]
            if missing:
                raise DivsftError(f"missing {', '.join(missing)} (or give them in --config FILE)")
            from .data import PoolColumns

            cfg = BuildConfig(**flags, columns=PoolColumns(**columns))
        manifest = run_build(cfg)
    except DivsftError as err:
        _fail(err)
    for entry in manifest["levels"]:
        typer.echo(
            f"{entry['config']}: k={entry['k']} rows={entry['num_rows']} types_covered={entry['types_covered']} "
            f"type_entropy={entry['type_entropy']:.3f}"
        )
    typer.echo(f"wrote {cfg.out}/manifest.json")


@app.command()
def measure(
    dataset: Annotated[str, typer.Argument(help="Build folder (every level), saved dataset, Hub id, or data file")],
    out: Annotated[Path, typer.Option(help="Where to write the metrics report (JSON)")],
    split: Split = "train",
    instruction_column: InstructionColumn = None,
    response_column: ResponseColumn = None,
    input_column: InputColumn = None,
    messages_column: MessagesColumn = None,
    id_column: IdColumn = None,
    tokenizer: Tokenizer = "smollm2",
    embedder: Embedder = "minilm-static",
    components: Annotated[str, typer.Option(help="Components to measure")] = "instruction,response",
    max_n: Annotated[int, typer.Option(help="Largest n for the n-gram ratio and Self-BLEU")] = 4,
    self_bleu_sample: Annotated[int, typer.Option(help="Self-BLEU on a seeded sample of this many texts above it; 0 = all")] = 20_000,
    seed: Seed = 0,
    num_proc: NumProc = None,
) -> None:
    """The six diversity metrics (n-gram ratio, embedding distance, length, compression, Self-BLEU, entropy)."""
    from .artifacts import write_json
    from .data import PoolColumns
    from .measure import MeasureConfig
    from .measure import measure as run_measure

    try:
        config = MeasureConfig(
            tokenizer=tokenizer, embedder=embedder, components=[c.strip() for c in components.split(",") if c.strip()],
            max_n=max_n, self_bleu_sample=self_bleu_sample or None, seed=seed, num_proc=num_proc,
        )
        columns = _column_flags(
            instruction=instruction_column, response=response_column, input=input_column,
            messages=messages_column, id=id_column,
        )
        report = run_measure(dataset, config, PoolColumns(**columns), split)
        write_json(out, report)
    except DivsftError as err:
        _fail(err)
    for entry in report.get("levels") or [{"config": dataset, "metrics": report["metrics"]}]:
        for component, metrics in entry["metrics"].items():
            values = " ".join(f"{name}={_short(metric['value'])}" for name, metric in metrics.items())
            typer.echo(f"{entry['config']} {component}: {values}")
    typer.echo(f"wrote {out}")


@app.command()
def plot(
    sources: Annotated[list[str], typer.Argument(help="Build folders or `divsft measure` reports of build folders")],
    out: Annotated[Path, typer.Option(help="PNG file to write")],
) -> None:
    """Plot each metric against diversity level, one line per strategy."""
    from .plots import plot_metrics

    try:
        plot_metrics(sources, out)
    except DivsftError as err:
        _fail(err)
    typer.echo(f"wrote {out}")


@app.command()
def publish(
    builds: Annotated[list[Path], typer.Argument(help="Build folders (the --out of `divsft build`), one per strategy")],
    repo: Annotated[str, typer.Option(help="Hub dataset repo ORG/NAME")],
    version: Annotated[str, typer.Option(help="Release version X.Y.Z, tagged vX.Y.Z; never republished")],
    hub_dir: Annotated[Path, typer.Option(help="A bare local git repo standing for the Hub repo (created if missing)")] = None,
    dry_run: Annotated[bool, typer.Option(help="List what would be committed and tagged; change nothing")] = False,
    license: Annotated[str, typer.Option(help="Card license (default: the pool card's, else 'other')")] = None,
    private: Annotated[bool, typer.Option(help="Create the Hub repo private")] = False,
) -> None:
    """Publish build folders as one versioned Hub dataset repo: a config per subset, a card, a tag."""
    from .publish import PublishConfig
    from .publish import publish as run_publish

    try:
        result = run_publish(PublishConfig(
            builds=[str(b) for b in builds], repo=repo, version=version, hub_dir=str(hub_dir) if hub_dir else None,
            dry_run=dry_run, license=license, private=private,
        ))
    except DivsftError as err:
        _fail(err)
    if dry_run:
        typer.echo(f"dry run: would commit to {result.destination}:")
        for line in result.plan:
            typer.echo(f"  {line}")
        return
    typer.echo(f"published {len(result.configs)} configs to {result.destination} as {result.tag} "
               f"(commit {result.commit[:12]}, license {result.license})")


@app.command(name="eval")
def eval_(
    out: Annotated[Path, typer.Option(help="Output folder: generations.jsonl, judgments.jsonl, summary.json")],
    model: Annotated[str, typer.Option(help="smollm2 (bundled), a model folder or a Hub id")] = "smollm2",
    adapter: Annotated[str, typer.Option(help="A LoRA adapter folder (from divsft train) on top of --model")] = None,
    eval_set: Annotated[str, typer.Option(help="Hub-layout eval set with alpaca_eval and arena_hard configs")] = DEFAULT_EVAL_SET,
    configs: Annotated[str, typer.Option(help="Eval configs, comma-separated")] = "alpaca_eval,arena_hard",
    judge: Annotated[str, typer.Option(help="reference-nll (offline proxy) or pairwise (an LLM judge)")] = "reference-nll",
    judge_model: Annotated[str, typer.Option(help="pairwise: the judge model (server name, or a local model)")] = None,
    judge_base_url: Annotated[str, typer.Option(help="pairwise: OpenAI-compatible base URL; key from JUDGE_API_KEY")] = None,
    judge_max_tokens: Annotated[int, typer.Option(help="pairwise: longest judge reply")] = 512,
    judge_retries: Annotated[int, typer.Option(help="pairwise: asks again when a reply has no verdict")] = 1,
    judge_cache: Annotated[str, typer.Option(help="pairwise: SQLite file of judge replies (default: the hf-divsft cache)")] = None,
    limit: Annotated[int, typer.Option(help="A seeded sample of this many prompts, spread over the configs")] = None,
    seed: Seed = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest generated answer")] = 512,
    batch_size: Annotated[int, typer.Option(help="Prompts generated together")] = 8,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists")] = False,
) -> None:
    """Generate answers to the eval prompts and judge them (pairwise LLM judge or the reference-NLL proxy)."""
    from .evaluation import EvalConfig, evaluate_model

    try:
        summary = evaluate_model(EvalConfig(
            out=str(out), model=model, adapter=adapter, eval_set=eval_set, configs=configs.split(","), judge=judge,
            judge_model=judge_model, judge_base_url=judge_base_url, judge_max_tokens=judge_max_tokens, judge_retries=judge_retries, judge_cache=judge_cache, limit=limit,
            seed=seed, max_new_tokens=max_new_tokens, batch_size=batch_size, overwrite=overwrite,
        ))
    except DivsftError as err:
        _fail(err)
    ci = summary["ci95"]
    interval = f" (95% CI {ci[0]:.3f}..{ci[1]:.3f})" if ci else ""
    typer.echo(f"{summary['judge']['judge']}: score {_short(summary['score'])}{interval} on {summary['n']} prompts")
    typer.echo(f"wrote {out}/summary.json")


@app.command()
def analyze(
    runs: Annotated[list[str], typer.Argument(help="`divsft eval` output folders of models trained on subsets")],
    out: Annotated[Path, typer.Option(help="Output folder: analysis.json, results.md and two PNG plots")],
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists")] = False,
) -> None:
    """Slopes of score against diversity per strategy, metric correlations, and the paper's two plots."""
    from .analysis import analyze as run_analyze

    try:
        report = run_analyze(runs, str(out), overwrite)
    except DivsftError as err:
        _fail(err)
    for strategy, fit in report["slopes"].items():
        typer.echo(f"{strategy}: slope {fit['slope_x1e-2']:.3f} ± {fit['sd_x1e-2']:.3f} (x1e-2) over {fit['n']} runs")
    typer.echo(f"wrote {out}/results.md")


@app.command("demo-results")
def demo_results(
    out: Annotated[Path, typer.Option(help="Output folder (builds/, models/, runs/, analysis/)")] = Path("demo-results"),
    pool: Annotated[str, typer.Option(help="The pool to sample")] = DEFAULT_POOL,
    eval_set: Annotated[str, typer.Option(help="The eval set (Hub layout)")] = DEFAULT_EVAL_SET,
    prompts: Annotated[int, typer.Option(help="Eval prompts per model")] = 4,
    train_steps: Annotated[int, typer.Option(help="LoRA steps per subset")] = 3,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists")] = False,
) -> None:
    """A small real results folder for the Space: builds, LoRA models and evals on a CPU (about 3 minutes)."""
    from .demo import DemoConfig
    from .demo import demo_results as make_demo

    try:
        report = make_demo(DemoConfig(out=str(out), pool=pool, eval_set=eval_set, prompts=prompts, train_steps=train_steps,
                                      overwrite=overwrite))
    except DivsftError as err:
        _fail(err)
    typer.echo(f"wrote {out}: {len(report['runs'])} runs placed in their subsets. Show them with:\n"
               f"  python spaces/divsft-explorer/app.py --results {out}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def train(ctx: typer.Context) -> None:
    """Fine-tune a model on one subset with TRL (recipe YAML + flags; `divsft train --help` lists them)."""
    from .train import cli as train_cli

    raise typer.Exit(train_cli(ctx.args))


def _short(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="divsft")


if __name__ == "__main__":
    sys.exit(main())
