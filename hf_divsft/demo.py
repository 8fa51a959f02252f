"""`divsft demo-results`: a small, real results folder for the Space, made by our own pipeline on a CPU.

Builds of a seeded sample of the shared pool (two micro strategies, three diversity levels), one LoRA
adapter of the bundled SmolLM2-135M per subset, and `divsft eval` (reference-NLL proxy judge) of the
base model and every adapter on a few shared prompts, then `divsft analyze`. Every step is the same code
the commands run; only the sizes are small. Nothing in it is committed: it holds rows of the pool.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import check_free, write_json
from .assets import DEFAULT_EVAL_SET, DEFAULT_POOL
from .errors import DivsftError


@dataclass
class DemoConfig:
    out: str
    pool: str = DEFAULT_POOL
    eval_set: str = DEFAULT_EVAL_SET
    pool_rows: int = 1000
    strategies: list[str] = field(default_factory=lambda: ["response-micro", "instruction-micro"])
    levels: list[int] = field(default_factory=lambda: [0, 50, 100])
    size: int = 32
    train_steps: int = 3
    prompts: int = 4
    max_new_tokens: int = 40
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self):
        if len(self.levels) < 2 or min(self.size, self.train_steps, self.prompts, self.pool_rows) < 1:
            raise DivsftError("demo-results: give at least 2 levels and positive sizes, steps and prompts")


def demo_results(config: DemoConfig) -> dict:
    """Write the results folder; returns the analysis report."""
    from .analysis import analyze

    out = Path(config.out).resolve()
    with _folder_in_place(out, config.overwrite):
        pool = _sample_pool(config, out / "pool-sample.parquet")
        runs = [_evaluate(config, out / "runs" / "base", adapter=None)]
        for strategy in config.strategies:
            build_folder = out / "builds" / strategy
            for subset in _build(config, pool, strategy, build_folder):
                adapter = _train(config, build_folder, subset, out / "models" / subset)
                runs.append(_evaluate(config, out / "runs" / subset, adapter))
        report = analyze([str(run) for run in runs], str(out / "analysis"))
        write_json(out / "demo.json", {"settings": config.__dict__ | {"out": str(out)}, "runs": len(runs)})
    return report


@contextlib.contextmanager
def _folder_in_place(out: Path, overwrite: bool) -> Iterator[None]:
    """Built where it stays, since trained models record their subset's path; removed if any step fails."""
    check_free(out, overwrite)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        yield
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def _sample_pool(config: DemoConfig, path: Path) -> Path:
    from .data import load_pool

    pool = load_pool(config.pool)
    pool.shuffle(seed=config.seed).select(range(min(config.pool_rows, pool.num_rows))).to_parquet(str(path))
    return path


def _build(config: DemoConfig, pool: Path, strategy: str, out: Path) -> list[str]:
    """Build the strategy's subsets into `out`; returns their config names."""
    from .build import BuildConfig, build

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
    from .evaluation.run import EvalConfig, evaluate_model

    evaluate_model(EvalConfig(out=str(out), adapter=str(adapter) if adapter else None, eval_set=config.eval_set,
                              limit=config.prompts,
                              max_new_tokens=config.max_new_tokens, batch_size=config.prompts, seed=config.seed))
    return out
