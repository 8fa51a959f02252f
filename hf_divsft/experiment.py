"""`divsft experiment CONFIG.yaml --out DIR`: the paper's loop in one resumable command.

The experiment file names a pool, a grid (strategies x levels x seeds, N rows each), a train recipe and
an eval setup. The command plans one step per unit of work and runs each with the stage function its own
command runs (`pipeline.build`, `hf_divsft.train` in its own process, `evaluate_model`, `analyze`):

    sample             a seeded sample of the pool, if `pool_rows` (DIR/pool-sample.parquet)
    build/seed-S/STR   every level of one strategy          (DIR/builds/seed-S/STR/)
    train/seed-S/CFG   one model per subset                 (DIR/models/seed-S/CFG/)
    eval/seed-S/CFG    that model, and eval/base            (DIR/runs/seed-S/CFG/, DIR/runs/base/)
    analyze            slopes, correlations, what is missing (DIR/analysis/)

A step's key is the sha256 of its inputs: its options, and its upstream's result (a model's key holds its
subset's `ids_sha256`). `DIR/experiment.json` records each step's key, state and time once it ends, so a
rerun skips every step whose key still matches and whose output exists: after a crash, or after a level
or a seed is added, only what is missing runs. A step that fails is recorded with its one-line reason and
the steps that need it are blocked; the rest go on, and the analysis lists what is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .artifacts import check_output, staged_file
from .assets import DEFAULT_TOKENIZER
from .config import (
    AnalyzeConfig,
    BuildConfig,
    EvalConfig,
    ExperimentConfig,
    ExperimentSpec,
    from_mapping,
    read_yaml,
)
from .errors import DivsftError, reason
from .formats.build_folder import BuildFolder
from .formats.results import EXPERIMENT_WHAT, ExperimentState, StepState, is_experiment
from .strategies import Strategy

SAMPLE = "pool-sample.parquet"


@dataclass
class Step:
    id: str
    stage: str  # sample, build, train, eval or analyze
    output: Path
    inputs: Callable[[], dict]  # what the step's key hashes; may read upstream outputs, so called once they exist
    run: Callable[[], None]
    needs: list[str] = field(default_factory=list)

    @property
    def cli_stage(self) -> str:
        """The `--only` stage it belongs to (sampling the pool is part of building)."""
        return "build" if self.stage == "sample" else self.stage


@dataclass
class Experiment:
    spec: ExperimentSpec
    out: Path
    recipe: dict  # the train recipe's parsed options: model, PEFT or not, epochs, batch
    state: ExperimentState  # what earlier runs into `out` finished
    _pool_tokens: float | None = None

    @classmethod
    def read(cls, config: ExperimentConfig) -> Experiment:
        """The spec and recipe, every option checked (a bad one is one line) before any work."""
        spec = from_mapping(ExperimentSpec, read_yaml(config.config), config.config)
        for strategy in spec.strategies:
            from_mapping(BuildConfig, {**spec.build, "pool": spec.pool, "strategy": strategy, "out": "-"},
                         f"{config.config}: build")
        from_mapping(EvalConfig, {**spec.eval, "out": "-"}, f"{config.config}: eval")
        out = Path(config.out)
        state = (ExperimentState.read(out) if is_experiment(out) else None) or ExperimentState(spec={})
        state.spec = json.loads(json.dumps(dataclasses.asdict(spec), default=str))
        return cls(spec, out, _recipe(spec), state)

    # -- the plan -----------------------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        spec, steps = self.spec, []
        pool = spec.pool
        if spec.pool_rows:
            steps.append(Step("sample", "sample", self.out / SAMPLE,
                              lambda: {"pool": spec.pool, "rows": spec.pool_rows, "seed": spec.seeds[0]},
                              self._sample))
            pool = str(self.out / SAMPLE)
        evals = []
        for seed in spec.seeds:
            for strategy in spec.strategies:
                build = self._build_step(pool, strategy, seed)
                steps.append(build)
                for level in sorted(spec.levels):
                    name = Strategy.parse(strategy).config_name(level)
                    steps.append(self._train_step(build, name, seed))
                    evals.append(self._eval_step(steps[-1], f"seed-{seed}/{name}"))
        if spec.evaluate_base:
            evals.insert(0, self._eval_step(None, "base"))
        steps += evals
        steps.append(Step("analyze", "analyze", self.out / "analysis",
                          lambda: {"runs": [self._done_key(e.id) for e in evals]},
                          lambda: self._analyze(evals)))
        return steps

    def _build_step(self, pool: str, strategy: str, seed: int) -> Step:
        out = self.out / "builds" / f"seed-{seed}" / strategy
        config = from_mapping(BuildConfig, {**self.spec.build, "pool": pool, "strategy": strategy, "out": str(out),
                                            "levels": self.spec.levels, "size": self.spec.size, "seed": seed,
                                            "overwrite": True}, "build")
        options = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "overwrite")}
        needs = ["sample"] if self.spec.pool_rows else []
        return Step(f"build/seed-{seed}/{strategy}", "build", out,
                    lambda: {**options, "pool": self._done_key("sample") if needs else pool},
                    lambda: _build(config), needs)

    def _train_step(self, build: Step, name: str, seed: int) -> Step:
        out = self.out / "models" / f"seed-{seed}" / name
        argv = [*recipe_flags(self.spec), "--dataset", str(build.output), "--dataset_config", name,
                "--output_dir", str(out), "--seed", str(seed), "--overwrite", "true"]
        log = self.out / "logs" / f"train-seed-{seed}-{name}.log"

        def inputs() -> dict:
            subset = BuildFolder.read(build.output).level(name).ids_sha256
            # no paths: a results folder that moves, or a copy of it, keeps its keys
            return {"recipe": Path(self.spec.train.recipe).read_text(), "overrides": self.spec.train.overrides,
                    "seed": seed, "subset": subset, "accelerate_config": self.spec.train.accelerate_config}

        return Step(f"train/seed-{seed}/{name}", "train", out, inputs,
                    lambda: _train(argv, self.spec.train.accelerate_config, log), [build.id])

    def _eval_step(self, train: Step | None, name: str) -> Step:
        out = self.out / "runs" / name
        model, adapter = self.recipe["model"], None
        if train is not None:
            model, adapter = (model, str(train.output)) if self.recipe["peft"] else (str(train.output), None)
        config = from_mapping(EvalConfig, {**self.spec.eval, "out": str(out), "model": model, "adapter": adapter,
                                           "overwrite": True}, "eval")
        options = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "overwrite", "adapter")}
        return Step(f"eval/{name}", "eval", out,
                    lambda: {**options, "model": self._done_key(train.id) if train else model},
                    lambda: _evaluate(config), [train.id] if train else [])

    # -- running ------------------------------------------------------------------------------------------
    def run(self, stages: list[str]) -> dict:
        steps = self.steps()
        outcome = {"done": [], "skipped": [], "failed": [], "blocked": []}
        with tqdm(total=len(steps), desc="experiment", unit="step") as overall:
            for step in steps:
                result = self._run_step(step, stages)
                outcome[result].append(step.id)
                overall.update(1)
        return outcome

    def _run_step(self, step: Step, stages: list[str]) -> str:
        """done, skipped (finished earlier, or another stage), failed or blocked."""
        if step.cli_stage not in stages:
            return "skipped"
        unfinished = [need for need in step.needs if not self._is_done(need)]
        if unfinished:
            tqdm.write(f"[{step.stage}] {step.id}: blocked: needs {unfinished[0]}, which is not done")
            return "blocked"
        key = _key(step.inputs())
        if self._finished_earlier(step, key):
            return "skipped"
        tqdm.write(f"[{step.stage}] {step.id}: running")
        start = time.perf_counter()
        try:
            step.run()
            record = StepState(key=key, status="done", seconds=round(time.perf_counter() - start, 1))
        except Exception as err:  # noqa: BLE001 - one run's failure is recorded; the others go on
            record = StepState(key=key, status="failed", seconds=round(time.perf_counter() - start, 1),
                               reason=reason(err))
        self.state.steps[step.id] = record
        self.state.write(self.out)
        tqdm.write(f"[{step.stage}] {step.id}: {record.status} in {record.seconds:.1f} s"
                   + (f": {record.reason}" if record.reason else ""))
        return record.status

    def _is_done(self, step_id: str) -> bool:
        record = self.state.steps.get(step_id)
        return bool(record and record.status == "done")

    def _done_key(self, step_id: str) -> str | None:
        record = self.state.steps.get(step_id)
        return record.key if record and record.status == "done" else None

    def _sample(self) -> None:
        from .data import sample_pool

        rows = sample_pool(self.spec.pool, self.spec.pool_rows, self.spec.seeds[0])
        with staged_file(self.out / SAMPLE) as staging:
            rows.to_parquet(str(staging))

    def _analyze(self, evals: list[Step]) -> None:
        from .analysis import analyze

        done = [str(step.output) for step in evals if self._is_done(step.id)]
        missing = [f"{step.id}: " + (self.state.steps[step.id].reason if step.id in self.state.steps
                                     else "not run (a step it needs failed or was not run)")
                   for step in evals if not self._is_done(step.id)]
        analyze(AnalyzeConfig(runs=done, out=str(self.out / "analysis"), overwrite=True), missing=missing)


    # -- the dry run -----------------------------------------------------------------------------------
    def plan(self, stages: list[str]) -> dict:
        """Each step's status, the subsets, the tokens to train and the time that takes; reads, writes nothing."""
        steps = self.steps()
        statuses: dict[str, str] = {}
        for step in steps:  # in order: a step's needs come before it
            statuses[step.id] = self._status(step, stages, statuses)
        listed = [{"id": step.id, "stage": step.stage, "status": statuses[step.id]} for step in steps]
        trains = [step for step in steps if step.stage == "train"]
        tokens = {step.id: self._train_tokens(step) for step in trains}
        todo = [entry["id"] for entry in listed if entry["status"] == "to run"]
        remaining = sum(tokens[t] for t in tokens if t in todo)
        evals = sum(1 for entry in listed if entry["stage"] == "eval" and entry["id"] in todo)
        seconds = {"train": remaining / self.spec.train.tokens_per_second if self.spec.train.tokens_per_second else None,
                   "eval": evals * self.spec.eval_seconds_per_model if self.spec.eval_seconds_per_model else None}
        return {"dry_run": True, "out": str(self.out), "steps": listed,
                "subsets": sorted({step.id.split("/", 1)[1] for step in trains}),
                "train_tokens": sum(tokens.values()), "train_tokens_to_run": remaining, "seconds": seconds,
                "throughput": {"train_tokens_per_second": self.spec.train.tokens_per_second,
                               "eval_seconds_per_model": self.spec.eval_seconds_per_model}}

    def _status(self, step: Step, stages: list[str], statuses: dict[str, str]) -> str:
        """done, to run, not in --only, or blocked (a step it needs will not be done)."""
        unmet = [need for need in step.needs if statuses[need] not in ("done", "to run")]
        if unmet:
            return f"blocked: needs {unmet[0]}"
        # a step's key reads its upstream outputs: known only once they are done
        if all(statuses[need] == "done" for need in step.needs) and self._finished_earlier(step):
            return "done"
        return "to run" if step.cli_stage in stages else "not in --only"

    def _finished_earlier(self, step: Step, key: str | None = None) -> bool:
        """An earlier run finished `step` with the same inputs, and its output is still there."""
        earlier = self.state.steps.get(step.id)
        return bool(earlier and earlier.status == "done" and step.output.exists()
                    and earlier.key == (key or _key(step.inputs())))

    def _train_tokens(self, step: Step) -> int:
        """Tokens one training run reads: its samples (N, or max_samples; epochs, or max_steps) times a
        row's tokens (the level's mean lengths once it is built, else the pool's), capped at max_length."""
        recipe, name = self.recipe, step.id.rsplit("/", 1)[1]
        rows = min(self.spec.size, recipe["max_samples"] or self.spec.size)
        samples = rows * recipe["epochs"]
        if recipe["max_steps"] and recipe["max_steps"] > 0:
            samples = min(samples, recipe["max_steps"] * recipe["samples_per_step"])
        build = self.out / "builds" / step.needs[0].split("/", 1)[1]
        entry = BuildFolder.read(build).level(name) if (build / "manifest.json").is_file() else None
        if entry is not None and entry.confounds:
            per_row = sum(q.mean for q in entry.confounds.length_tokens.values())
        else:
            per_row = self._pool_tokens_per_row()
        return round(samples * min(per_row, recipe["max_length"] or per_row))

    def _pool_tokens_per_row(self, sample: int = 500) -> float:
        """Mean tokens of both components over a seeded sample of the pool (read once per plan)."""
        if self._pool_tokens is None:
            from .data import sample_pool
            from .tokenization import load_tokenizer

            rows = sample_pool(self.spec.pool, sample, self.spec.seeds[0])
            tokenizer = load_tokenizer(self.spec.build.get("tokenizer", DEFAULT_TOKENIZER))
            self._pool_tokens = sum(sum(tokenizer.count_batch(rows[column]))
                                    for column in ("instruction", "response")) / max(rows.num_rows, 1)
        return self._pool_tokens


def run_experiment(config: ExperimentConfig) -> dict:
    """Run (or with `dry_run`, plan) the experiment; returns what happened to each step."""
    experiment = Experiment.read(config)
    spec = experiment.spec
    check_output(config.out, overwrite=True, owned=is_experiment, what=EXPERIMENT_WHAT,
                 inputs=[spec.pool, spec.train.recipe, spec.eval.get("eval_set")])
    if config.dry_run:
        return experiment.plan(config.only)
    experiment.out.mkdir(parents=True, exist_ok=True)
    outcome = experiment.run(config.only)
    if outcome["failed"] or outcome["blocked"]:
        first = outcome["failed"][0] if outcome["failed"] else outcome["blocked"][0]
        raise DivsftError(f"{len(outcome['failed'])} step(s) failed and {len(outcome['blocked'])} could not run "
                          f"(first: {first}); the others finished: see {config.out}/experiment.json and "
                          f"{config.out}/analysis/results.md, fix the cause and rerun to resume")
    return outcome


def recipe_flags(spec: ExperimentSpec) -> list[str]:
    """`divsft train` flags for the recipe and its overrides."""
    flags = ["--config", spec.train.recipe]
    for key, value in spec.train.overrides.items():
        flags += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def _recipe(spec: ExperimentSpec) -> dict:
    """The recipe's model and training size, parsed as `divsft train` parses it (a bad option is refused now)."""
    from .train import parse_args

    # mixed precision is checked where the model trains (a GPU recipe is planned on a laptop too)
    subset, sft, model = parse_args([*recipe_flags(spec), "--dataset", "-", "--output_dir", "-",
                                     "--bf16", "false", "--fp16", "false"])
    return {"model": model.model_name_or_path or "smollm2", "peft": bool(model.use_peft),
            "epochs": sft.num_train_epochs, "max_steps": sft.max_steps, "max_length": sft.max_length,
            "samples_per_step": sft.per_device_train_batch_size * sft.gradient_accumulation_steps,
            "max_samples": subset.max_samples}


def _key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _build(config: BuildConfig) -> None:
    from .pipeline import build

    build(config)


def _train(argv: list[str], accelerate_config: str | None, log: Path) -> None:
    """One `divsft train` run in its own process (under `accelerate launch` if configured); its output goes
    to `log`, and a failure is its last error line."""
    command = [sys.executable, "-m", "hf_divsft.train", *argv]
    if accelerate_config:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
                   "-m", "hf_divsft.train", *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")] or lines[-1:] or ["no output"]
        raise DivsftError(f"training exited with {done.returncode}: {errors[-1].removeprefix('error: ')} "
                          f"(log: {log})")


def _evaluate(config: EvalConfig) -> None:
    from .evaluation.run import evaluate_model

    evaluate_model(config)
