"""Local causal LMs: the bundled SmolLM2-135M-Instruct (converted once from GGUF) or any path / Hub id."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from .artifacts import staged_cache_dir
from .assets import DEFAULT_MODEL, cache_dir, smollm2_gguf
from .errors import DivsftError, last_raised, reason


def smollm2_model_dir() -> Path:
    """A plain safetensors folder of SmolLM2-135M-Instruct, written once from the GGUF file.

    A GGUF-loaded model cannot `save_pretrained`, so its (dequantised) weights are copied into a model
    built from the same config, which can.
    """
    folder = cache_dir() / "models" / "smollm2-135m-instruct"
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    source = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(source.config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # the LM head is tied to the embeddings
        raise DivsftError(f"{gguf}: unexpected weights while converting ({unexpected or missing})")
    model.tie_weights()
    model.config.quantization_config = None  # else config.json still claims GGUF quantisation
    model.config.architectures = [type(model).__name__]  # GGUF configs carry none; servers need it
    model.generation_config = source.generation_config
    with staged_cache_dir(folder) as staging:
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
    return folder


def smollm2_tokenizer_dir() -> Path:
    """A plain tokenizer folder of SmolLM2-135M-Instruct, written once from the GGUF file (about 5 s).

    The conversion runs in a process of its own: it is mostly gguf's pure-Python reader, which would hold this
    process's GIL for those seconds and stall whatever runs beside it (Ray's start, on `--engine ray`).
    """
    folder = cache_dir() / "tokenizers" / "smollm2-135m-instruct"
    if not (folder / "tokenizer.json").exists():
        gguf = smollm2_gguf()
        done = subprocess.run([sys.executable, "-m", __name__, str(folder)], capture_output=True, text=True,
                              check=False)
        if done.returncode:
            raised = last_raised(done.stderr)
            if raised and raised[0].startswith("hf_divsft."):
                raise DivsftError(raised[1])  # ours, as it reads
            failure = ": ".join(raised) if raised else "no reason given"
            raise DivsftError(f"{gguf}: converting its tokenizer into {folder} failed ({failure})")
    return folder


def _write_smollm2_tokenizer(folder: Path) -> None:
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with staged_cache_dir(folder) as staging:
        tokenizer.save_pretrained(str(staging))


def check_model(name: str) -> str:
    """The model's source (an alias resolves to a local folder later), checked by its config alone."""
    if name == DEFAULT_MODEL:
        return name
    from transformers import AutoConfig

    from .data import local_or_hub

    try:
        local_or_hub(name)  # a mistyped path fails at once, not after the Hub's timeouts
        AutoConfig.from_pretrained(name)
    except Exception as err:
        raise DivsftError(f"model {name!r}: not the bundled '{DEFAULT_MODEL}', a local model folder or a "
                          f"reachable Hub id ({reason(err)})") from err
    return name


def check_adapter(adapter: str) -> None:
    """A local LoRA adapter folder must hold its adapter_config.json (a Hub id is checked when loaded)."""
    from .data import local_or_hub

    path = local_or_hub(adapter)
    if path is not None and not (path / "adapter_config.json").is_file():
        raise DivsftError(f"--adapter {adapter}: not a LoRA adapter folder (no adapter_config.json); "
                          "give the --output_dir of a `divsft train` LoRA run")


def resolve_model(name: str = DEFAULT_MODEL) -> str:
    """`smollm2` -> the converted local folder; anything else is passed to `from_pretrained` as is."""
    return str(smollm2_model_dir()) if name == DEFAULT_MODEL else name


@functools.lru_cache(maxsize=2)
def load_causal_lm(name: str = DEFAULT_MODEL, adapter: str | None = None):
    """(tokenizer padding on the left, model in eval mode); `adapter` is a PEFT (LoRA) folder on top."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(name)
    try:
        # a trained adapter folder carries the tokenizer (and chat template) it was trained with
        has_tokenizer = adapter and (Path(adapter) / "tokenizer_config.json").is_file()
        tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
    except Exception as err:
        what = f"model {name}" + (f" with adapter {adapter}" if adapter else "")
        raise DivsftError(f"{what}: cannot be loaded ({reason(err)})") from err
    if tokenizer.pad_token is None:  # e.g. Llama base models; batched generation pads
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer, model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def chat_generate(name: str, messages: list[dict], sample: bool = False, max_new_tokens: int = 256) -> str:
    """One chat turn with the model's own chat template; greedy unless `sample`."""
    import torch

    tokenizer, model = load_causal_lm(name)
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        output = model.generate(
            **inputs.to(model.device), max_new_tokens=max_new_tokens, do_sample=sample, temperature=0.7 if sample else None,
            top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


if __name__ == "__main__":  # the tokenizer's conversion, in its own process (`smollm2_tokenizer_dir`)
    _write_smollm2_tokenizer(Path(sys.argv[1]))
