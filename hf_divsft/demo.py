"""`divsft demo-results`: a small, real results folder for the Space, made by our own pipeline on a CPU.

Builds of a seeded sample of the shared pool (two micro strategies, three diversity levels), one LoRA
adapter of the bundled SmolLM2-135M per subset, and `divsft eval` (reference-NLL proxy judge) of the
base model and every adapter on a few shared prompts, then `divsft analyze`. Every step is the same code
the commands run; only the sizes are small. Nothing in it is committed: it holds rows of the pool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

from .artifacts import check_output, write_json
from .config import AnalyzeConfig, BuildConfig, DemoConfig, EvalConfig
from .data import sample_pool
from .errors import DivsftError

DEMO = "demo.json"  # marks a folder this command wrote (the one thing `--overwrite` replaces)
DEMO_WHAT = "an earlier `divsft demo-results` output"


def demo_results(config: DemoConfig) -> dict:
    """Write the results folder; returns the analysis report."""
    from .analysis import analyze
    from .evaluation.evalset import load_eval_set

    check_output(config.out, overwrite=config.overwrite, owned=_is_demo, what=DEMO_WHAT,
                 inputs=[config.pool, config.eval_set])
    sample = sample_pool(config.pool, config.pool_rows, config.seed)  # read before an earlier demo goes
    if sample.num_rows < config.size:
        raise DivsftError(f"--pool {config.pool}: {sample.num_rows} rows cannot fill subsets of "
                          f"--size {config.size}")
    load_eval_set(config.eval_set, limit=config.prompts, seed=config.seed)
    out = Path(config.out).resolve()
    with _folder_in_place(out, config.overwrite):
        pool = out / "pool-sample.parquet"
        sample.to_parquet(str(pool))
        # builds first: they take seconds, and a pool they cannot fill fails before any model is loaded
        subsets = {strategy: _build(config, pool, strategy, out / "builds" / strategy)
                   for strategy in config.STRATEGIES}
        runs = [_evaluate(config, out / "runs" / "base", adapter=None)]
        for strategy, names in subsets.items():
            for subset in names:
                adapter = _train(config, out / "builds" / strategy, subset, out / "models" / subset)
                runs.append(_evaluate(config, out / "runs" / subset, adapter))
        report = analyze(AnalyzeConfig(runs=[str(run) for run in runs], out=str(out / "analysis")))
        settings = dataclasses.asdict(config) | {"out": str(out)}
        write_json(out / DEMO, {"settings": settings, "runs": len(runs)})
    return report


def _is_demo(path: Path) -> bool:
    return (path / DEMO).is_file()


@contextlib.contextmanager
def _folder_in_place(out: Path, overwrite: bool) -> Iterator[None]:
    """Built where it stays, since trained models record their subset's path; removed if any step fails."""
    check_output(out, overwrite=overwrite, owned=_is_demo, what=DEMO_WHAT)
    shutil.rmtree(out, ignore_errors=True)  # only ever an earlier demo (checked above)
    out.mkdir(parents=True)
    try:
        yield
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def _build(config: DemoConfig, pool: Path, strategy: str, out: Path) -> list[str]:
    """Build the strategy's subsets into `out`; returns their config names."""
    from .pipeline import build

    # a small pool has few tokens in the paper's 10..500 count band, so the band starts lower
    manifest = build(BuildConfig(pool=str(pool), strategy=strategy, out=str(out), levels=config.levels,
                                 size=config.size, band=(3, 300), seed=config.seed))
    return [entry["config"] for entry in manifest["levels"]]


def _train(config: DemoConfig, build_folder: Path, subset: str, out: Path) -> Path:
    """A LoRA adapter on the subset: a few steps, enough to move the model a little."""
    from .train import main as train

    options = {
        "dataset": build_folder, "dataset_config": subset, "output_dir": out, "use_peft": "true", "lora_r": 8,
        "lora_alpha": 16, "lora_target_modules": "all-linear", "max_length": 128, "max_steps": config.train_steps,
        "per_device_train_batch_size": 4, "learning_rate": 1e-3, "lr_scheduler_type": "constant", "dtype": "float32",
        "bf16": "false", "packing": "false", "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "seed": config.seed,
    }
    return train([arg for key, value in options.items() for arg in (f"--{key}", str(value))])


def _evaluate(config: DemoConfig, out: Path, adapter: Path | None) -> Path:
    from .evaluation.run import evaluate_model

    evaluate_model(EvalConfig(out=str(out), adapter=str(adapter) if adapter else None, eval_set=config.eval_set,
                              limit=config.prompts,
                              max_new_tokens=config.max_new_tokens, batch_size=config.prompts, seed=config.seed))
    return out
