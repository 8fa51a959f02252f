"""Training throughput: our SmolLM2-135M full fine-tuning recipe vs TRL's plain SFTTrainer defaults (issue: train).

In one run, on the same subset rows and the same number of optimizer steps:
  ours     = recipes/smollm2-135m/sft/config_full.yaml (padding-free best-fit packing, no activation
             checkpointing, bf16), built by hf_divsft.train exactly as a recipe run builds it;
  baseline = SFTTrainer with SFTConfig defaults (no packing, padded batches) and the same batch size,
             learning rate and max_length.
Reports non-padding tokens/s and peak GPU memory; target: ours >= 1.5x the baseline's tokens/s.
Meant for a GPU (the device tool); `--cpu-check` runs a few tiny steps on CPU to test the script itself.
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

from common import RESULTS, save

from hf_divsft.models import resolve_model
from hf_divsft.train import _make_trainer, as_prompt_completion, load_subset, parse_args

TARGET_SPEEDUP = 1.5
RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "smollm2-135m" / "sft" / "config_full.yaml")


def run(trainer) -> dict:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train()
    tokens = trainer.state.num_input_tokens_seen
    runtime = result.metrics["train_runtime"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"tokens": int(tokens), "seconds": round(runtime, 2), "tokens_per_second": round(tokens / runtime, 1),
            "peak_gpu_gib": round(peak, 2) if peak is not None else None, "steps": trainer.state.global_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="outputs/response-micro", help="a build folder")
    parser.add_argument("--dataset-config", default="response_micro_d100")
    parser.add_argument("--max-steps", type=int, default=60)
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
    model_dir = resolve_model("smollm2")

    ours = run(_make_trainer(dataset, ours_config, model_config, model_dir))
    gc.collect()
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    baseline_config = SFTConfig(
        output_dir="/tmp/bench-train-baseline", max_steps=ours_config.max_steps, report_to="none",
        per_device_train_batch_size=ours_config.per_device_train_batch_size,
        gradient_accumulation_steps=ours_config.gradient_accumulation_steps,
        learning_rate=ours_config.learning_rate, max_length=ours_config.max_length,
        bf16=ours_config.bf16, use_cpu=args.cpu_check, include_num_input_tokens_seen="non_padding",
        model_init_kwargs={"dtype": torch.float32 if args.cpu_check else torch.bfloat16},
    )
    baseline = run(SFTTrainer(model=model_dir, args=baseline_config, train_dataset=dataset))
    speedup = ours["tokens_per_second"] / baseline["tokens_per_second"]
    print(f"{'':<10} {'tokens/s':>10} {'peak GiB':>9} {'steps':>6} {'tokens':>10}")
    for name, r in (("ours", ours), ("baseline", baseline)):
        print(f"{name:<10} {r['tokens_per_second']:>10.0f} {str(r['peak_gpu_gib']):>9} {r['steps']:>6} {r['tokens']:>10}")
    print(f"speedup {speedup:.2f}x (target >= {TARGET_SPEEDUP}x): {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    record = {"benchmark": "SmolLM2-135M full fine-tune: recipe vs SFTTrainer defaults", "device": device,
              "subset": origin, "recipe": RECIPE, "ours": ours, "baseline": baseline,
              "speedup": round(speedup, 3), "target_speedup": TARGET_SPEEDUP, "cpu_check": args.cpu_check}
    if not args.cpu_check:
        save(record, args.out, ("torch", "transformers", "trl", "accelerate", "datasets"))


if __name__ == "__main__":
    main()
