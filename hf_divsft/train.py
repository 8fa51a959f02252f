"""Fine-tune a model on one subset with TRL: the recipe entry point.

    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml \\
        -m hf_divsft.train --config recipes/smollm2-135m/sft/config_lora.yaml

Knobs come from three dataclasses that the YAML recipe, the command line and Python share (TRL's
`TrlParser` pattern): `SubsetArguments` (which subset), TRL's `SFTConfig` (training) and `ModelConfig`
(model, LoRA). Rows become conversational prompt-completion pairs, so the chat template is applied and
the loss falls on response tokens only (the paper's setting). Every config error is raised before a
model is loaded.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from accelerate import PartialState
from datasets import Dataset, load_dataset
from transformers import TrainerCallback

from .artifacts import check_output
from .assets import DEFAULT_MODEL
from .columns import map_batches
from .config import read_yaml
from .data import local_or_hub, read_dataset, strip_special_tokens
from .errors import DivsftError, reason
from .formats.build_folder import BuildFolder
from .formats.eval_run import TRAINING_SUBSET, write_training_subset
from .models import check_model, resolve_model


@dataclass
class SubsetArguments:
    """Which subset to train on."""

    dataset: str = field(metadata={"help": "A `divsft build` folder, one saved subset folder, or a Hub dataset id"})
    dataset_config: str | None = field(
        default=None, metadata={"help": "The subset, e.g. response_micro_d100 (for build folders and Hub repos)"}
    )
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub revision, e.g. v1.0.0"})
    max_samples: int | None = field(default=None, metadata={"help": "Train on a seeded sample of this many rows"})
    overwrite: bool = field(
        default=False, metadata={"help": "Train again into an --output_dir of an earlier run"}
    )


def parse_args(argv: list[str] | None = None):
    """(SubsetArguments, SFTConfig, ModelConfig) from `--config recipe.yaml` plus command-line overrides."""
    from trl import ModelConfig, SFTConfig, TrlParser

    parser = TrlParser((SubsetArguments, SFTConfig, ModelConfig), prog="divsft train")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:  # read it ourselves first, so a broken file is one line naming its fault
        if argv.index("--config") == len(argv) - 1:
            raise DivsftError("--config needs a recipe file, e.g. recipes/smollm2-135m/sft/config_lora.yaml")
        recipe = argv[argv.index("--config") + 1]
        if not read_yaml(recipe):
            raise DivsftError(f"{recipe}: the recipe holds no options")

    def one_line(message: str):  # argparse would print its whole usage, then exit
        raise DivsftError(f"{message}; see `divsft train --help`")

    parser.error = one_line
    try:
        with warnings.catch_warnings():  # transformers' own deprecated defaults, not the user's doing
            warnings.filterwarnings("ignore", message=".*will be removed in v6", category=FutureWarning)
            parsed = parser.parse_args_and_config(argv)
    except DivsftError:
        raise
    except (ValueError, TypeError, OSError) as err:
        raise DivsftError(f"recipe: {reason(err)}") from err
    for args in parsed:
        _check_types(args)
    _check_bounds(*parsed)
    return parsed


def _check_types(args) -> None:
    """A recipe's YAML reaches the dataclasses unconverted: a value of the wrong type is refused here, by
    name."""
    hints = typing.get_type_hints(type(args))
    for field_ in dataclasses.fields(args):
        hint = hints[field_.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = [k for k in typing.get_args(hint) if k is not type(None)] if union else [hint]
        value = getattr(args, field_.name)
        simple = [k for k in kinds if k in (bool, int, float, str)]
        if value is None or len(simple) != len(kinds):
            continue  # unions with enums, dicts and lists: the library checks those itself
        if not any(isinstance(value, k) and not (k in (int, float) and isinstance(value, bool))
                   for k in simple) \
                and not (float in simple and isinstance(value, int) and not isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in simple)
            raise DivsftError(f"recipe: {field_.name}: {value!r} is not {names}")


POSITIVE = ("max_samples", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
            "lora_r", "num_train_epochs")


def _check_bounds(*parsed) -> None:
    """Values that would only fail after the model is loaded (or train nonsense) are refused before it."""
    for args in parsed:
        for name in POSITIVE:
            value = getattr(args, name, None)
            if value is not None and value <= 0:
                raise DivsftError(f"--{name} {value}: must be positive")
        rate = getattr(args, "learning_rate", None)
        if rate is not None and rate < 0:
            raise DivsftError(f"--learning_rate {rate}: must not be negative")


def load_subset(args: SubsetArguments, seed: int = 0) -> tuple[Dataset, dict]:
    """The subset's rows and a description of where they came from (for the model card)."""
    path = Path(args.dataset)
    if (path / "manifest.json").is_file():
        rows, origin = _from_build(BuildFolder.read(path), args.dataset_config)
    elif (path / "dataset_info.json").is_file():
        rows, origin = read_dataset(str(path)), {"source": str(path)}
    else:
        rows, origin = _from_hub(args), {"source": args.dataset, "config": args.dataset_config,
                                         "revision": args.dataset_revision}
    missing = {"instruction", "response"} - set(rows.column_names)
    if missing:
        raise DivsftError(f"{args.dataset}: the subset has no {', '.join(sorted(missing))} column")
    # `shuffle`'s sample, its indices kept in memory
    if args.max_samples and args.max_samples < rows.num_rows:
        rows = rows.select(np.random.default_rng(seed).permutation(rows.num_rows)[: args.max_samples])
    return rows, {**origin, "num_rows": rows.num_rows}


def _from_build(build: BuildFolder, config: str | None) -> tuple[Dataset, dict]:
    # without one, the error lists the configs to choose from
    entry = build.level(config or "--dataset_config")
    origin = {"source": str(build.path.resolve()), "config": config, "strategy": build.strategy,
              "level": entry.level, "pool": build.manifest.pool, "ids_sha256": entry.ids_sha256}
    return build.subset(config), origin


def _from_hub(args: SubsetArguments) -> Dataset:
    if not args.dataset_config:
        raise DivsftError(f"{args.dataset}: give --dataset_config, the subset to train on (e.g. response_micro_d100)")
    if local_or_hub(args.dataset) is not None:
        raise DivsftError(f"{args.dataset}: not a build folder, a saved subset or a Hub dataset id")
    try:
        return load_dataset(args.dataset, args.dataset_config, revision=args.dataset_revision, split="train")
    except Exception as err:  # datasets raises ValueError, FileNotFoundError or Hub errors here
        raise DivsftError(f"{args.dataset}: cannot load subset {args.dataset_config!r} "
                          f"({reason(err)})") from err


def check_output_dir(args: SubsetArguments, sft_config, model_config) -> None:
    """A new folder, or (to resume, or with --overwrite) one an earlier `divsft train` marked as its own."""
    out = Path(sft_config.output_dir)
    ours = (out / TRAINING_SUBSET).is_file()
    check_output(out, overwrite=args.overwrite or bool(sft_config.resume_from_checkpoint),
                 owned=lambda path: ours or (path.is_dir() and not any(path.iterdir())),
                 what="an earlier `divsft train` output (a folder with training_subset.json)",
                 inputs=[args.dataset, model_config.model_name_or_path])


def as_prompt_completion(rows: Dataset) -> Dataset:
    """Conversational prompt-completion rows: TRL applies the chat template and masks the prompt's loss."""
    def to_turns(batch: dict) -> dict:
        return {
            "prompt": [[{"role": "user", "content": text}] for text in batch["instruction"]],
            "completion": [[{"role": "assistant", "content": strip_special_tokens(text)}] for text in batch["response"]],
        }

    # its cache never lands in the build folder
    turns = map_batches(rows, to_turns, desc="Formatting chat turns")
    return turns.select_columns(["prompt", "completion"])


class TokensPerSecond(TrainerCallback):
    """Adds `tokens_per_second` (input tokens seen) to every training log."""

    def __init__(self):
        self.last = (time.perf_counter(), 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        now, seen = time.perf_counter(), state.num_input_tokens_seen
        if logs is not None and seen:
            logs["tokens_per_second"] = round((seen - self.last[1]) / max(now - self.last[0], 1e-9), 1)
        self.last = (now, seen)


def main(argv: list[str] | None = None) -> Path:
    subset_args, sft_config, model_config = parse_args(argv)
    check_output_dir(subset_args, sft_config, model_config)
    rows, origin = load_subset(subset_args, seed=sft_config.seed)  # every config error comes before the model
    model_name = check_model(model_config.model_name_or_path or DEFAULT_MODEL)
    if PartialState().is_main_process:  # marks the folder as ours from the start, so a crashed run resumes
        Path(sft_config.output_dir).mkdir(parents=True, exist_ok=True)
        write_training_subset(sft_config.output_dir, {"model": model_name, **origin})
    trainer = _make_trainer(as_prompt_completion(rows), sft_config, model_config, resolve_model(model_name))
    result = trainer.train(resume_from_checkpoint=sft_config.resume_from_checkpoint)
    trainer.save_model(sft_config.output_dir)
    seen = trainer.state.num_input_tokens_seen
    metrics = {**result.metrics, "train_tokens": seen, "train_tokens_per_second": seen / result.metrics["train_runtime"]}
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    if trainer.accelerator.is_main_process:
        _write_model_card(trainer, sft_config.output_dir, model_name, origin)
    return Path(sft_config.output_dir)


def _make_trainer(dataset: Dataset, sft_config, model_config, model_source: str):
    import torch
    from trl import SFTTrainer, get_peft_config

    if sft_config.completion_only_loss is None:
        sft_config.completion_only_loss = True  # loss on response tokens only, as in the paper
    sft_config.include_num_input_tokens_seen = "non_padding"
    dtype = model_config.dtype if model_config.dtype in (None, "auto") else getattr(torch, model_config.dtype)
    sft_config.model_init_kwargs = {
        "dtype": dtype, "attn_implementation": model_config.attn_implementation,
        **(sft_config.model_init_kwargs or {}),
    }
    return SFTTrainer(
        model=model_source, args=sft_config, train_dataset=dataset, peft_config=get_peft_config(model_config),
        callbacks=[TokensPerSecond()],
    )


def _write_model_card(trainer, output_dir: str, model_name: str, origin: dict) -> None:
    """TRL's model card, plus the subset it was trained on (and `training_subset.json` for tools)."""
    label = f"{origin['source']}:{origin['config']}" if origin.get("config") else origin["source"]
    trainer.create_model_card(model_name=Path(output_dir).name, dataset_name=label, tags=["hf-divsft", "sft"])
    card = Path(output_dir) / "README.md"
    lines = [f"- **{key}**: `{value}`" for key, value in origin.items() if value is not None]
    card.write_text(card.read_text() + "\n## Training subset (hf-divsft)\n\n" + f"Base model: `{model_name}`.\n\n"
                    + "\n".join(lines) + "\n")


def cli(argv: list[str] | None = None) -> int:
    try:
        main(argv)
    except DivsftError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
