"""Training throughput: our SmolLM2-135M full fine-tuning recipe vs TRL's plain SFTTrainer defaults (issue: train).

In one run, over one epoch of the same seeded sample of subset rows:
  ours     = recipes/smollm2-135m/sft/config_full.yaml (length-grouped micro-batches of 16, no activation
             checkpointing, bf16), built by hf_divsft.train exactly as a recipe run builds it;
  baseline = SFTTrainer with SFTConfig defaults (random micro-batches of TRL's default size, padded, activation
             checkpointing) and the recipe's samples per optimizer step, learning rate and max_length.
Both train on the same samples, so they see the same tokens. Reports non-padding tokens/s after the first
optimizer step (CUDA's and the allocator's start-up) and peak GPU memory; target: ours >= 1.5x the baseline.
Meant for a GPU (the device tool). `--cpu` runs on CPU in float32: with a small sample, it tests the script;
its figures are a compute-bound proxy, not the target.
`--random-init` builds the weights from the model's config, for a machine the weights cannot be copied to:
tokens/s and memory depend on the architecture and the data, not on the weights' values.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path

from common import RESULTS, save
from transformers import TrainerCallback
from trl import SFTTrainer

from hf_divsft.formats.build_folder import ids_sha256
from hf_divsft.models import resolve_model
from hf_divsft.train import _make_trainer, as_prompt_completion, load_subset, parse_args

TARGET_SPEEDUP = 1.5
WARMUP_STEPS = 1
RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "smollm2-135m" / "sft" / "config_full.yaml")


class SteadyState(TrainerCallback):
    """Tokens seen and seconds taken after the first `skip` optimizer steps."""

    def __init__(self, skip: int):
        self.skip, self.start, self.tokens, self.seconds = skip, None, 0, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if state.global_step == self.skip:
            self.start = (now, state.num_input_tokens_seen)
        elif self.start is not None:
            self.tokens, self.seconds = state.num_input_tokens_seen - self.start[1], now - self.start[0]


def run(make_trainer) -> dict:
    import torch

    trainer = make_trainer()
    settings = {key: getattr(trainer.args, key) for key in (
        "per_device_train_batch_size", "gradient_accumulation_steps", "train_sampling_strategy", "packing",
        "padding_free", "activation_checkpointing")}

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    steady = SteadyState(WARMUP_STEPS)
    trainer.add_callback(steady)
    result = trainer.train()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {**settings, "steps": trainer.state.global_step, "tokens": int(trainer.state.num_input_tokens_seen),
            "seconds": round(result.metrics["train_runtime"], 2), "steady_tokens": int(steady.tokens),
            "steady_seconds": round(steady.seconds, 2), "tokens_per_second": round(steady.tokens / steady.seconds, 1),
            "peak_gpu_gib": round(peak, 2) if peak is not None else None}


def random_init_copy(model_dir: str) -> str:
    """A folder with `model_dir`'s config and tokenizer and freshly initialised weights."""
    import shutil

    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tempfile.mkdtemp(prefix="bench-train-model-")
    for file in Path(model_dir).iterdir():
        if file.suffix != ".safetensors":
            shutil.copy(file, folder)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(folder)
    return folder


def attempt(measure) -> dict:
    """`measure()`, or the error it hit: a variant that does not fit or does not compile is a result too."""
    import torch

    try:
        return measure()
    except Exception as err:  # noqa: BLE001 - recorded, and the traceback printed, so the other runs go on
        traceback.print_exc()
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
    finally:
        gc.collect()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, extra = text.partition("=")
    return name, shlex.split(extra)


def parse_cli() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="outputs/response-micro", help="a build folder or a saved dataset")
    parser.add_argument("--dataset-config", default="response_micro_d100")
    parser.add_argument("--max-samples", type=int, default=3840, help="one epoch over this seeded sample (30 steps)")
    parser.add_argument("--max-length", type=int, help="truncate to this many tokens (default: the recipe's)")
    parser.add_argument("--model", default="smollm2", help="'smollm2' or a model folder")
    parser.add_argument("--random-init", action="store_true", help="weights from the config (see above)")
    parser.add_argument("--variant", action="append", type=parse_variant, default=[],
                        help="also measure the recipe with these train options, as NAME='--key value ...'")
    parser.add_argument("--cpu", action="store_true", help="run on CPU in float32 (see above)")
    parser.add_argument("--out", help="JSON record (default: benchmarks/results/train.json, or train-cpu.json)")
    return parser.parse_args()


def main() -> None:
    args = parse_cli()

    import torch

    overrides = ["--dataset", args.dataset, "--dataset_config", args.dataset_config, "--output_dir", "/tmp/bench-train",
                 "--max_samples", str(args.max_samples), "--num_train_epochs", "1", "--report_to", "none"]
    overrides += ["--max_length", str(args.max_length)] if args.max_length else []
    overrides += ["--bf16", "false", "--dtype", "float32", "--use_cpu", "true"] if args.cpu else []
    subset_args, ours_config, _ = parse_args(["--config", RECIPE, *overrides])
    samples_per_step = ours_config.per_device_train_batch_size * ours_config.gradient_accumulation_steps
    steps = args.max_samples // samples_per_step
    if steps <= WARMUP_STEPS:
        sys.exit(f"error: --max-samples {args.max_samples} gives {steps} optimizer steps; the timing needs more than "
                 f"{WARMUP_STEPS}")
    rows, origin = load_subset(subset_args, seed=ours_config.seed)
    dataset = as_prompt_completion(rows)
    model_dir = random_init_copy(resolve_model(args.model)) if args.random_init else resolve_model(args.model)
    out = args.out or str(RESULTS / ("train-cpu.json" if args.cpu else "train.json"))
    record = {"benchmark": "SmolLM2-135M full fine-tune: recipe vs SFTTrainer defaults",
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "subset": {**origin, "ids_sha256": ids_sha256(rows)}, "recipe": RECIPE,
              "max_length": ours_config.max_length, "samples_per_step": samples_per_step, "warmup_steps": WARMUP_STEPS,
              "weights": "random init from the config" if args.random_init else "pretrained",
              "runs": {}, "target_speedup": TARGET_SPEEDUP}

    # Every variant's options parsed before any run. The baseline runs first, and the record is saved after every
    # run: a run cut short by a time limit keeps what it has.
    baseline = baseline_config(ours_config, samples_per_step, args.cpu)
    trainers = {"baseline": partial(SFTTrainer, model=model_dir, args=baseline, train_dataset=dataset)}
    record["runs"]["baseline"] = {"options": "SFTConfig defaults"}
    for name, extra in [("ours", []), *args.variant]:
        _, config, model_config = parse_args(["--config", RECIPE, *overrides, *extra])
        trainers[name] = partial(_make_trainer, dataset, config, model_config, model_dir)
        record["runs"][name] = {"options": " ".join(extra)}
    for name, make in trainers.items():
        record["runs"][name] |= attempt(partial(run, make))
        print(f"{name}: {record['runs'][name]}", flush=True)
        record["speedup"] = report(record["runs"])
        save(record, out, ("torch", "transformers", "trl", "accelerate", "datasets"))


def baseline_config(ours, samples_per_step: int, cpu: bool):
    """SFTConfig's defaults, with the recipe's samples per step, learning rate, max_length and precision."""
    import torch
    from trl import SFTConfig

    batch = min(SFTConfig.per_device_train_batch_size, samples_per_step)  # TRL's default micro-batch
    return SFTConfig(
        output_dir="/tmp/bench-train-baseline", num_train_epochs=1, report_to="none",
        per_device_train_batch_size=batch, gradient_accumulation_steps=samples_per_step // batch,
        learning_rate=ours.learning_rate, max_length=ours.max_length, bf16=ours.bf16, use_cpu=cpu,
        include_num_input_tokens_seen="non_padding",
        model_init_kwargs={"dtype": torch.float32 if cpu else torch.bfloat16},
    )


def report(results: dict) -> float | None:
    """Prints the table; returns the recipe's speedup over the baseline (None if either failed)."""
    base = results["baseline"].get("tokens_per_second")
    print(f"{'':<10} {'tokens/s':>10} {'x base':>7} {'peak GiB':>9} {'steps':>6} {'tokens':>10} {'seconds':>8}")
    for name, r in results.items():
        if "error" in r or "tokens_per_second" not in r:
            print(f"{name:<10} {r.get('error', 'not run yet')[:80]}")
            continue
        ratio = r["tokens_per_second"] / base if base else float("nan")
        print(f"{name:<10} {r['tokens_per_second']:>10.0f} {ratio:>7.2f} {r['peak_gpu_gib']!s:>9} {r['steps']:>6} "
              f"{r['tokens']:>10} {r['seconds']:>8}")
    ours = results["ours"].get("tokens_per_second")
    if not (ours and base):
        return None
    speedup = round(ours / base, 3)
    print(f"speedup {speedup:.2f}x (target >= {TARGET_SPEEDUP}x): {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}")
    return speedup


if __name__ == "__main__":
    main()
