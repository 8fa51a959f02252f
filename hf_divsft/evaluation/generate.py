"""Batched greedy generation with the model's own chat template (optionally with a LoRA adapter)."""

from __future__ import annotations

from tqdm.auto import tqdm

from ..models import load_causal_lm


def generate_answers(model: str, instructions: list[str], adapter: str | None = None, max_new_tokens: int = 512,
                     batch_size: int = 8) -> list[dict]:
    """[{"output", "tokens"}] in input order; prompts are batched by length so little padding is computed."""
    import torch

    tokenizer, lm = load_causal_lm(model, adapter)
    order = sorted(range(len(instructions)), key=lambda i: len(instructions[i]))
    answers: list[dict] = [{} for _ in instructions]
    for start in tqdm(range(0, len(order), batch_size), desc="Generating", unit="batch"):
        chunk = order[start : start + batch_size]
        chats = [[{"role": "user", "content": instructions[i]}] for i in chunk]
        inputs = tokenizer.apply_chat_template(chats, add_generation_prompt=True, padding=True, return_tensors="pt",
                                               return_dict=True)
        with torch.inference_mode():
            output = lm.generate(**inputs.to(lm.device), max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                                 temperature=None, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new = output[:, inputs["input_ids"].shape[1] :].cpu()
        for i, row in zip(chunk, new):
            ids = row.tolist()
            stops = [n for n, token in enumerate(ids) if token in (tokenizer.eos_token_id, tokenizer.pad_token_id)]
            ids = ids[: stops[0]] if stops else ids
            answers[i] = {"output": tokenizer.decode(ids, skip_special_tokens=True).strip(), "tokens": len(ids)}
    return answers
