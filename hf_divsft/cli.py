"""`divsft`: a thin typer wrapper. Each command's options are the fields of its config dataclass
(`config.py`: type, default, bounds and help declared once); all the work lives in the library modules.

Errors are handled once, in `OneLineErrors`: a bad flag, a bad file or an impossible request prints one
line starting `error:` and exits with code 2.
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer vendors click (as typer._click) since 0.2x; its parser raises these
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer on the real click
    from click.exceptions import ClickException, NoArgsIsHelpError

from . import config as configs
from .errors import DivsftError

FLAGS: dict[tuple, str] = {}  # config field path -> its flag, for error messages


class OneLineErrors(TyperGroup):
    """The one CLI error handler: usage errors, DivsftError and OS errors become one `error:` line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as err:  # `divsft` or `divsft recipes` alone: the help, as asked
            typer.echo(err.format_message())
            code = 0
        except ClickException as err:
            code = _fail(_one_line(err.format_message()) + _help_hint(err))
        except DivsftError as err:
            code = _fail(_describe(err))
        except OSError as err:  # a full disk or a vanished folder mid-way; the path says where
            code = _fail(f"{err.filename or ''}: {err.strerror or err}".lstrip(": "))
        except typer.Abort:
            code = _fail("aborted")
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str) -> int:
    typer.echo(f"error: {message}", err=True)
    return 2


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _help_hint(err: ClickException) -> str:
    ctx = getattr(err, "ctx", None)
    return f" (see `{ctx.command_path} --help`)" if ctx is not None else ""


def _describe(err: DivsftError) -> str:
    if isinstance(err, configs.ConfigError):
        flag = FLAGS.get(err.loc, "--" + str(err.loc[-1]).replace("_", "-"))
        if err.value is None and "required" in err.reason.lower():
            return f"{flag} is required"
        shown = ",".join(map(str, err.value)) if isinstance(err.value, (list, tuple)) else err.value
        return _one_line(f"{flag} {shown}: {err.reason}")
    return _one_line(str(err))


app = typer.Typer(
    cls=OneLineErrors,
    help="Diversity-controlled SFT subsets after 'From Macro to Micro' (AAAI 2026).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts are plain: `{a,b}` and `[default: x]` stay as written
)


# -- options from config dataclasses ----------------------------------------------------------------------
def _cli_type(annotation) -> type:
    """bool and numbers keep their type (typer parses them); everything else is text that pydantic checks."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = annotation if not args or typing.get_origin(annotation) is Annotated else args[0]
    if typing.get_origin(base) is Annotated:
        base = typing.get_args(base)[0]
    return base if base in (bool, int, float) else str


def _shown_default(info) -> str | None:
    value = None if info.is_required() else info.get_default(call_default_factory=True)
    if value is None or isinstance(value, bool):
        return {True: "on", False: "off"}.get(value)
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _fields(cls, prefix: tuple = (), pattern: str = "{}"):
    """(path, parameter name, flag, type, help, shown default) of each field, nested configs flattened."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for name, info in cls.__pydantic_fields__.items():
        nested = configs.nested_configs(cls).get(name)
        if nested:
            yield from _fields(nested, (*prefix, name), (info.json_schema_extra or {}).get("flag", "{}"))
            continue
        flag = pattern.format(name).replace("_", "-")
        yield ((*prefix, name), flag.replace("-", "_"), f"--{flag}", _cli_type(hints[name]), info.description,
               _shown_default(info))


def command_from(*classes, arguments: tuple[str, ...] = (), required: tuple[str, ...] = (),
                 yaml: bool = False, name: str | None = None, group: typer.Typer = app):
    """Register `run(*config_objects)` as a command whose options are the fields of `classes`.

    Option defaults are None so that only given flags reach the config (and override a `--config` YAML);
    help shows each field's own default.
    """
    def register(run):
        parameters, paths = [], {}
        for cls in classes:
            for path, param, flag, kind, text, default in _fields(cls):
                if param in paths:  # the same knob in two configs (e.g. seed): one flag fills both
                    paths[param].append((cls, path))
                    continue
                paths[param] = [(cls, path)]
                FLAGS[path] = flag
                if param in arguments:
                    many = typing.get_origin(typing.get_type_hints(cls)[path[-1]]) is list
                    info = typer.Argument(help=text, show_default=False)
                    annotation = Annotated[list[str] if many else str, info]
                    default = inspect.Parameter.empty
                else:
                    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
                    shown = f"{text} [default: {default}]" if default else text
                    info = typer.Option(*decls, help=shown, show_default=False)
                    annotation = Annotated[kind | None, info]
                    default = ... if param in required else None
                parameters.append(inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                    annotation=annotation))
        if yaml:
            info = typer.Option("--config", help="YAML file with any of these options; flags override it")
            parameters.append(inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=None,
                                                annotation=Annotated[Path | None, info]))

        @functools.wraps(run)
        def command(**given):
            config_file = given.pop("config_file", None)
            made = [_make(cls, {param: value for param, value in given.items() if value is not None},
                          paths, config_file) for cls in classes]
            return run(*made)

        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        group.command(name=name)(command)
        return run

    return register


def _make(cls, given: dict, paths: dict, config_file: Path | None):
    values: dict[str, Any] = {}
    for param, value in given.items():
        for owner, path in paths[param]:
            if owner is cls:
                target = values
                for part in path[:-1]:
                    target = target.setdefault(part, {})
                target[path[-1]] = value
    if config_file:
        return configs.from_yaml(cls, config_file, **values)
    for name, kind in configs.nested_configs(cls).items():
        if name in values:
            values[name] = kind(**values[name])
    return cls(**values)


# -- commands ---------------------------------------------------------------------------------------------
@command_from(configs.BuildConfig, yaml=True)
def build(config: configs.BuildConfig) -> None:
    """Build diversity-controlled subsets of one strategy at several diversity levels."""
    from .pipeline import build as run_build

    manifest = run_build(config)
    if config.dry_run:
        _print_plan(manifest)
        return
    for entry in manifest["levels"]:
        typer.echo(f"{entry['config']}: k={entry['k']} rows={entry['num_rows']} "
                   f"types_covered={entry['types_covered']} type_entropy={entry['type_entropy']:.3f}")
    typer.echo(f"wrote {config.out}/manifest.json")


def _print_plan(plan: dict) -> None:
    typer.echo(f"dry run: {plan['pool']}: {plan['rows']:,} rows (of {plan['source_rows']:,})")
    for component, counts in plan["components"].items():
        typer.echo(f"  {component}: {counts['turns']:,} turns, about {counts['tokens_estimate']:,} tokens "
                   f"(from {plan['tokens_estimated_from']:,} sampled rows)")
    for reason, entry in plan["skipped"]["reasons"].items():
        typer.echo(f"  skipped: {entry['rows']:,} rows with {reason} (e.g. {', '.join(entry['first_ids'])})")
    typer.echo("steps:")
    for number, step in enumerate(plan["steps"], start=1):
        typer.echo(f"  {number}. {step}")
    typer.echo("nothing was written")


@command_from(configs.MeasureConfig, arguments=("source",), required=("out",))
def measure(config: configs.MeasureConfig) -> None:
    """The six diversity metrics (n-gram ratio, embedding distance, length, compression, Self-BLEU, entropy)."""
    from .measure import measure as run_measure

    report = run_measure(config)
    for entry in report.get("levels") or [{"config": config.source, "metrics": report["metrics"]}]:
        for component, metrics in entry["metrics"].items():
            values = " ".join(f"{name}={_short(metric['value'])}" for name, metric in metrics.items())
            typer.echo(f"{entry['config']} {component}: {values}")
    typer.echo(f"wrote {config.out}")


@command_from(configs.PlotConfig, arguments=("sources",), required=("out",))
def plot(config: configs.PlotConfig) -> None:
    """Plot each metric against diversity level, one line per strategy."""
    from .plots import plot_metrics

    typer.echo(f"wrote {plot_metrics(config)}")


@command_from(configs.PublishConfig, arguments=("builds",))
def publish(config: configs.PublishConfig) -> None:
    """Publish build folders as one versioned Hub dataset repo: a config per subset, a card, a tag."""
    from .publish import publish as run_publish

    result = run_publish(config)
    if config.dry_run:
        typer.echo(f"dry run: would commit to {result.destination}:")
        for line in result.plan:
            typer.echo(f"  {line}")
        return
    typer.echo(f"published {len(result.configs)} configs to {result.destination} as {result.tag} "
               f"(commit {result.commit[:12]}, license {result.license})")


@command_from(configs.EvalConfig, name="eval")
def eval_(config: configs.EvalConfig) -> None:
    """Generate answers to the eval prompts and judge them (pairwise LLM judge or the reference-NLL proxy)."""
    from .evaluation.run import evaluate_model

    summary = evaluate_model(config)
    ci = summary["ci95"]
    interval = f" (95% CI {ci[0]:.3f}..{ci[1]:.3f})" if ci else ""
    typer.echo(f"{summary['judge']['judge']}: score {_short(summary['score'])}{interval} on {summary['n']} prompts")
    typer.echo(f"wrote {config.out}/summary.json")


@command_from(configs.AnalyzeConfig, arguments=("runs",))
def analyze(config: configs.AnalyzeConfig) -> None:
    """Slopes of score against diversity per strategy, metric correlations, and the paper's two plots."""
    from .analysis import analyze as run_analyze

    report = run_analyze(config)
    for strategy, fit in report["slopes"].items():
        typer.echo(f"{strategy}: slope {fit['slope_x1e-2']:.3f} ± {fit['sd_x1e-2']:.3f} (x1e-2) over {fit['n']} runs")
    typer.echo(f"wrote {config.out}/results.md")


@command_from(configs.ExperimentConfig, arguments=("config",))
def experiment(config: configs.ExperimentConfig) -> None:
    """Build, train, evaluate and analyze a whole grid of subsets from one YAML file; rerun to resume."""
    from .experiment import run_experiment

    result = run_experiment(config)
    if config.dry_run:
        _print_experiment_plan(result)
        return
    typer.echo(f"{len(result['done'])} steps ran, {len(result['skipped'])} were done already or not asked for; "
               f"wrote {config.out}. Show it with:\n  python spaces/divsft-explorer/app.py --results {config.out}")


def _print_experiment_plan(plan: dict) -> None:
    steps = plan["steps"]
    counts = {status: sum(1 for step in steps if step["status"] == status) for status in ("done", "to run")}
    typer.echo(f"dry run: {len(steps)} steps into {plan['out']} ({counts['done']} done, "
               f"{counts['to run']} to run, {len(steps) - sum(counts.values())} waiting or not asked for)")
    for step in steps:
        typer.echo(f"  [{step['status']}] {step['id']}")
    typer.echo(f"subsets: {len(plan['subsets'])} ({', '.join(plan['subsets'])})")
    typer.echo(f"tokens to train: about {plan['train_tokens']:,} in all, {plan['train_tokens_to_run']:,} still to run")
    seconds, measured = plan["seconds"], plan["throughput"]
    keys = {"train_tokens_per_second": "train: tokens_per_second", "eval_seconds_per_model": "eval_seconds_per_model"}
    for stage, rate in (("train", "train_tokens_per_second"), ("eval", "eval_seconds_per_model")):
        if seconds[stage] is None:
            typer.echo(f"  {stage} time: not estimated (give `{keys[rate]}` in the experiment file)")
        else:
            typer.echo(f"  {stage} time: about {seconds[stage] / 60:.1f} min (at the experiment file's "
                       f"`{keys[rate]}` {measured[rate]:,})")
    typer.echo("nothing was written")


@command_from(configs.DemoConfig, name="demo-results")
def demo_results(config: configs.DemoConfig) -> None:
    """A small real results folder for the Space: builds, LoRA models and evals on a CPU (about 3 minutes)."""
    from .demo import demo_results as make_demo

    report = make_demo(config)
    typer.echo(f"wrote {config.out}: {len(report['runs'])} runs placed in their subsets. Show them with:\n"
               f"  python spaces/divsft-explorer/app.py --results {config.out}")


recipes = typer.Typer(help="The training recipes shipped with hf-divsft "
                           "(accelerate configs and per-model YAML).",
                      no_args_is_help=True, rich_markup_mode=None)
app.add_typer(recipes, name="recipes")


@recipes.command("list")
def recipes_list() -> None:
    """Every shipped recipe, as a path inside a copy of the recipes."""
    from .assets import recipe_files

    for path in recipe_files():
        typer.echo(path)


@command_from(configs.RecipesCopyConfig, arguments=("dest",), name="copy", group=recipes)
def recipes_copy(config: configs.RecipesCopyConfig) -> None:
    """Copy the recipes into DEST, to edit and run with `accelerate launch -m hf_divsft.train`."""
    from .assets import copy_recipes

    typer.echo(f"copied {len(copy_recipes(config))} recipe files to {config.dest}")


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
