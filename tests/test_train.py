"""Fine-tuning recipes on CPU: SmolLM2-135M + LoRA on 32 real subset rows, response-only loss, saved adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hf_divsft.train as train_module
from hf_divsft.data import strip_special_tokens
from hf_divsft.errors import DivsftError
from hf_divsft.models import resolve_model
from hf_divsft.train import _make_trainer, as_prompt_completion, load_subset, parse_args

from .conftest import REPO, error_line, run_divsft

SMOKE = REPO / "recipes" / "smollm2-135m" / "sft" / "config_smoke.yaml"
CPU = REPO / "recipes" / "accelerate_configs" / "cpu.yaml"


def smoke_args(builds, out: Path, *extra: str) -> list[str]:
    return ["--config", str(SMOKE), "--dataset", str(builds["response-micro"]), "--output_dir", str(out), *extra]


def test_only_response_tokens_carry_loss_and_the_loss_falls(builds, tmp_path):
    subset_args, sft_config, model_config = parse_args(smoke_args(builds, tmp_path / "run"))
    rows, origin = load_subset(subset_args, seed=sft_config.seed)
    assert (origin["config"], origin["num_rows"], rows.num_rows) == ("response_micro_d100", 32, 32)
    dataset = as_prompt_completion(rows)
    trainer = _make_trainer(dataset, sft_config, model_config, resolve_model("smollm2"))
    tokenizer = trainer.processing_class

    responses = {strip_special_tokens(text).strip() for text in rows["response"]}  # T0 rows end in <|endoftext|>
    batch = next(iter(trainer.get_train_dataloader()))
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        ids, labels = ids[mask.bool()], labels[mask.bool()]
        first = int((labels != -100).nonzero()[0])
        assert (labels[:first] == -100).all() and (labels[first:] == ids[first:]).all()
        prompt, answer = tokenizer.decode(ids[:first]), tokenizer.decode(ids[first:])
        assert prompt.startswith("<|im_start|>") and "<|im_start|>user\n" in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
        assert answer.endswith(("<|im_end|>", "<|im_end|>\n")) or len(ids) == sft_config.max_length
        assert any(answer.startswith(response[:40]) for response in responses)

    before = trainer.evaluate(eval_dataset=trainer.train_dataset)["eval_loss"]
    trainer.train()
    after = trainer.evaluate(eval_dataset=trainer.train_dataset)["eval_loss"]
    print(f"loss on the 32 training rows: before {before:.3f}, after {after:.3f}")
    assert after < 0.8 * before


def test_accelerate_launch_runs_the_smoke_recipe_and_the_adapter_loads_and_generates(builds, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "smoke"
    command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file", str(CPU),
               "-m", "hf_divsft.train", *smoke_args(builds, out, "--num_train_epochs", "1")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "training_subset.json"} <= {
        p.name for p in out.iterdir()
    }
    metrics = json.loads((out / "train_results.json").read_text())
    assert metrics["train_tokens"] > 0 and metrics["train_tokens_per_second"] > 0
    subset = json.loads((out / "training_subset.json").read_text())
    assert (subset["config"], subset["strategy"], subset["num_rows"]) == ("response_micro_d100", "response-micro", 32)
    assert "response_micro_d100" in (out / "README.md").read_text()

    base_dir = resolve_model("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(out)).eval()
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        with model.disable_adapter():
            base_logits = model(**inputs).logits
        tuned_logits = model(**inputs).logits
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert not torch.allclose(base_logits, tuned_logits)  # the trained adapter changes the model


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--model_name_or_path", "/no/such/model"), "model '/no/such/model': not the bundled 'smollm2'"),
        (("--dataset_config", "response_micro_d042"),
         "no subset config 'response_micro_d042'; choose one of response_micro_d000, response_micro_d100"),
    ],
)
def test_config_errors_fail_before_any_model_loads(builds, tmp_path, monkeypatch, extra, message):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the config error was found")

    monkeypatch.setattr(train_module, "_make_trainer", no_model)
    monkeypatch.setattr(train_module, "resolve_model", no_model)
    with pytest.raises(DivsftError, match=message.replace("(", r"\(").replace("'", "'")):
        train_module.main(smoke_args(builds, tmp_path / "run", *extra))


def test_a_bad_recipe_key_fails_in_one_line(builds, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(SMOKE.read_text() + "learning_rat: 0.1\n")
    result = run_divsft("train", "--config", recipe, "--dataset", builds["response-micro"], "--output_dir", tmp_path / "o")
    assert result.returncode == 2
    assert error_line(result.stderr).startswith("error: recipe: Unknown arguments from config file: ['--learning_rat'")
    assert not (tmp_path / "o").exists()


# GPU recipes parse on this CPU-only machine once told so; their keys are checked all the same.
ON_CPU = ("--bf16", "false", "--use_cpu", "true", "--dtype", "float32")
RECIPES = sorted((REPO / "recipes").glob("*/sft/config_*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[f"{path.parts[-3]}/{path.name}" for path in RECIPES])
def test_every_recipe_parses_with_response_only_loss(recipe, tmp_path):
    subset_args, sft_config, model_config = parse_args(["--config", str(recipe), "--output_dir", str(tmp_path), *ON_CPU])
    assert sft_config.completion_only_loss and subset_args.dataset_config
    assert model_config.model_name_or_path


def test_the_full_recipe_batches_by_length_with_little_padding(shared_pool, tmp_path):
    """The recipe's micro-batches (length-grouped, 16) vs TRL's default (random, 8), on 10,000 real pool rows.

    The size matters: Transformers sorts by length within blocks of min(rows / 512, 50) optimizer steps.
    """
    subset = tmp_path / "subset"
    shared_pool.shuffle(seed=0).select(range(10_000)).save_to_disk(str(subset))

    def padding_share(*extra: str) -> float:
        recipe = REPO / "recipes" / "smollm2-135m" / "sft" / "config_full.yaml"
        subset_args, config, model_config = parse_args(
            ["--config", str(recipe), "--dataset", str(subset), "--output_dir", str(tmp_path / "run"), *ON_CPU, *extra])
        rows, _ = load_subset(subset_args)
        trainer = _make_trainer(as_prompt_completion(rows), config, model_config, resolve_model("smollm2"))
        masks = [batch["attention_mask"] for batch in trainer.get_train_dataloader()]
        return 1 - sum(int(mask.sum()) for mask in masks) / sum(mask.numel() for mask in masks)

    recipe, default = padding_share(), padding_share("--train_sampling_strategy", "random",
                                                     "--per_device_train_batch_size", "8")
    print(f"padding share: recipe {recipe:.3f}, TRL's default micro-batches {default:.3f}")
    assert recipe < 0.1 and default > 5 * recipe
