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

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, load_dataset, load_from_disk
from transformers import TrainerCallback

from .data import strip_special_tokens
from .errors import DivsftError, reason
from .models import DEFAULT_MODEL, resolve_model


@dataclass
class SubsetArguments:
    """Which subset to train on."""

    dataset: str = field(metadata={"help": "A `divsft build` folder, one saved subset folder, or a Hub dataset id"})
    dataset_config: str | None = field(
        default=None, metadata={"help": "The subset, e.g. response_micro_d100 (for build folders and Hub repos)"}
    )
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub revision, e.g. v1.0.0"})
    max_samples: int | None = field(default=None, metadata={"help": "Train on a seeded sample of this many rows"})


def parse_args(argv: list[str] | None = None):
    """(SubsetArguments, SFTConfig, ModelConfig) from `--config recipe.yaml` plus command-line overrides."""
    from trl import ModelConfig, SFTConfig, TrlParser

    parser = TrlParser((SubsetArguments, SFTConfig, ModelConfig), prog="divsft train")
    try:
        return parser.parse_args_and_config(argv)
    except (ValueError, OSError) as err:
        raise DivsftError(f"recipe: {reason(err)}") from err


def load_subset(args: SubsetArguments, seed: int = 0) -> tuple[Dataset, dict]:
    """The subset's rows and a description of where they came from (for the model card)."""
    path = Path(args.dataset)
    if (path / "manifest.json").is_file():
        rows, origin = _from_build(path, args.dataset_config)
    elif (path / "dataset_info.json").is_file():
        rows, origin = load_from_disk(str(path)), {"source": str(path)}
    else:
        rows, origin = _from_hub(args), {"source": args.dataset, "config": args.dataset_config,
                                         "revision": args.dataset_revision}
    missing = {"instruction", "response"} - set(rows.column_names)
    if missing:
        raise DivsftError(f"{args.dataset}: the subset has no {', '.join(sorted(missing))} column")
    if args.max_samples and args.max_samples < rows.num_rows:
        rows = rows.shuffle(seed=seed).select(range(args.max_samples))
    return rows, {**origin, "num_rows": rows.num_rows}


def _from_build(folder: Path, config: str | None) -> tuple[Dataset, dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    levels = {entry["config"]: entry for entry in manifest["levels"]}
    if config not in levels:
        raise DivsftError(f"{folder}: no subset config {config!r}; --dataset_config is one of {', '.join(levels)}")
    entry = levels[config]
    origin = {"source": str(folder.resolve()), "config": config, "strategy": manifest["strategy"], "level": entry["level"],
              "pool": manifest["pool"], "ids_sha256": entry["ids_sha256"]}
    return load_from_disk(str(folder / config)), origin


def _from_hub(args: SubsetArguments) -> Dataset:
    if not args.dataset_config:
        raise DivsftError(f"{args.dataset}: give --dataset_config, the subset to train on (e.g. response_micro_d100)")
    try:
        return load_dataset(args.dataset, args.dataset_config, revision=args.dataset_revision, split="train")
    except Exception as err:  # datasets raises ValueError, FileNotFoundError or Hub errors here
        raise DivsftError(f"{args.dataset}: cannot load subset {args.dataset_config!r} "
                          f"({reason(err)})") from err


def as_prompt_completion(rows: Dataset) -> Dataset:
    """Conversational prompt-completion rows: TRL applies the chat template and masks the prompt's loss."""
    def to_turns(batch: dict) -> dict:
        return {
            "prompt": [[{"role": "user", "content": text}] for text in batch["instruction"]],
            "completion": [[{"role": "assistant", "content": strip_special_tokens(text)}] for text in batch["response"]],
        }

    return rows.map(to_turns, batched=True, remove_columns=rows.column_names, desc="Formatting chat turns")


def check_model(name: str) -> str:
    """The model's source (an alias resolves to a local folder later), checked by its config alone."""
    if name == DEFAULT_MODEL:
        return name
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except Exception as err:
        raise DivsftError(f"model {name!r}: not the bundled '{DEFAULT_MODEL}', a local model folder or a reachable "
                          f"Hub id ({reason(err)})") from err
    return name


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
    rows, origin = load_subset(subset_args, seed=sft_config.seed)  # every config error comes before the model
    model_name = check_model(model_config.model_name_or_path or DEFAULT_MODEL)
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
    (Path(output_dir) / "training_subset.json").write_text(json.dumps({"model": model_name, **origin}, indent=2) + "\n")


def cli(argv: list[str] | None = None) -> int:
    try:
        main(argv)
    except DivsftError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
