"""Training throughput: our SmolLM2-135M full fine-tuning recipe vs TRL's plain SFTTrainer defaults (issue: train).

In one run, on the same subset rows and the same number of optimizer steps:
  ours     = recipes/smollm2-135m/sft/config_full.yaml (padding-free best-fit packing, no activation
             checkpointing, bf16), built by hf_divsft.train exactly as a recipe run builds it;
  baseline = SFTTrainer with SFTConfig defaults (no packing, padded micro-batches of TRL's default size) and the
             same sequences per optimizer step, learning rate and max_length.
Reports steady-state non-padding tokens/s (the first WARMUP_STEPS steps, which carry CUDA's start-up, are
left out) and peak GPU memory; target: ours >= 1.5x the baseline's tokens/s.
Meant for a GPU (the device tool); `--cpu-check` runs a few tiny steps on CPU to test the script itself.
`--random-init` builds the weights from the model's config, for a machine the weights cannot be copied to:
tokens/s and memory depend on the architecture and the data, not on the weights' values.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import tempfile
import time
from pathlib import Path

from common import RESULTS, save

from transformers import TrainerCallback

from hf_divsft.data import ids_sha256
from hf_divsft.models import resolve_model
from hf_divsft.train import _make_trainer, as_prompt_completion, load_subset, parse_args

TARGET_SPEEDUP = 1.5
WARMUP_STEPS = 5
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


def run(trainer, warmup_steps: int) -> dict:
    import torch

    settings = {key: getattr(trainer.args, key) for key in ("packing", "padding_free", "gradient_checkpointing")}

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    steady = SteadyState(warmup_steps)
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
    """`measure()`, or the out-of-memory error it hit (a variant that does not fit is a result too)."""
    import torch

    try:
        return measure()
    except torch.OutOfMemoryError as err:
        return {"error": f"CUDA out of memory: {str(err).splitlines()[0]}"}
    finally:
        gc.collect()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, extra = text.partition("=")
    return name, shlex.split(extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="outputs/response-micro", help="a build folder or a saved dataset")
    parser.add_argument("--dataset-config", default="response_micro_d100")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--model", default="smollm2", help="'smollm2' or a model folder")
    parser.add_argument("--random-init", action="store_true", help="weights from the config (see above)")
    parser.add_argument("--variant", action="append", type=parse_variant, default=[],
                        help="also measure the recipe with these train options, as NAME='--key value ...'")
    parser.add_argument("--cpu-check", action="store_true", help="3 tiny steps on CPU, to test the script")
    parser.add_argument("--out", default=str(RESULTS / "train.json"))
    args = parser.parse_args()

    import torch
    from trl import SFTConfig, SFTTrainer

    overrides = ["--dataset", args.dataset, "--dataset_config", args.dataset_config, "--output_dir", "/tmp/bench-train",
                 "--max_steps", str(3 if args.cpu_check else args.max_steps), "--report_to", "none"]
    if args.cpu_check:
        overrides += ["--max_samples", "64", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
                      "--max_length", "256", "--bf16", "false", "--dtype", "float32", "--use_cpu", "true"]
    subset_args, ours_config, model_config = parse_args(["--config", RECIPE, *overrides])
    rows, origin = load_subset(subset_args, seed=0)
    dataset = as_prompt_completion(rows)
    model_dir = random_init_copy(resolve_model(args.model)) if args.random_init else resolve_model(args.model)
    warmup = 1 if args.cpu_check else WARMUP_STEPS

    sequences_per_step = ours_config.per_device_train_batch_size * ours_config.gradient_accumulation_steps
    batch = min(SFTConfig.per_device_train_batch_size, sequences_per_step)  # TRL's default micro-batch
    baseline_config = SFTConfig(
        output_dir="/tmp/bench-train-baseline", max_steps=ours_config.max_steps, report_to="none",
        per_device_train_batch_size=batch, gradient_accumulation_steps=sequences_per_step // batch,
        learning_rate=ours_config.learning_rate, max_length=ours_config.max_length,
        bf16=ours_config.bf16, use_cpu=args.cpu_check, include_num_input_tokens_seen="non_padding",
        model_init_kwargs={"dtype": torch.float32 if args.cpu_check else torch.bfloat16},
    )
    # The baseline first: a run cut short by a time limit still has the reference.
    results = {"baseline": attempt(lambda: run(SFTTrainer(model=model_dir, args=baseline_config, train_dataset=dataset),
                                               warmup))}
    for name, extra in [("ours", []), *args.variant]:
        _, config, model_config = parse_args(["--config", RECIPE, *overrides, *extra])
        results[name] = {"options": " ".join(extra)} | attempt(
            lambda: run(_make_trainer(dataset, config, model_config, model_dir), warmup))
        print(f"{name}: {results[name]}", flush=True)
    speedup = report(results)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    record = {"benchmark": "SmolLM2-135M full fine-tune: recipe vs SFTTrainer defaults", "device": device,
              "subset": {**origin, "ids_sha256": ids_sha256(rows)}, "recipe": RECIPE, "warmup_steps": warmup,
              "weights": "random init from the config" if args.random_init else "pretrained", "runs": results,
              "speedup": speedup, "target_speedup": TARGET_SPEEDUP, "cpu_check": args.cpu_check}
    if not args.cpu_check:
        save(record, args.out, ("torch", "transformers", "trl", "accelerate", "datasets"))


def report(results: dict) -> float | None:
    """Prints the table; returns the recipe's speedup over the baseline (None if either failed)."""
    base = results["baseline"].get("tokens_per_second")
    print(f"{'':<10} {'tokens/s':>10} {'x base':>7} {'peak GiB':>9} {'steps':>6} {'tokens':>10} {'seconds':>8}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<10} {r['error'][:80]}")
            continue
        ratio = r["tokens_per_second"] / base if base else float("nan")
        print(f"{name:<10} {r['tokens_per_second']:>10.0f} {ratio:>7.2f} {str(r['peak_gpu_gib']):>9} {r['steps']:>6} "
              f"{r['tokens']:>10} {r['seconds']:>8}")
    ours = results["ours"].get("tokens_per_second")
    if not (ours and base):
        return None
    speedup = round(ours / base, 3)
    print(f"speedup {speedup:.2f}x (target >= {TARGET_SPEEDUP}x): {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}")
    return speedup


if __name__ == "__main__":
    main()
