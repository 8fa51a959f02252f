"""lighteval custom tasks over the eval set, for users who run their evaluations with `lighteval`.

    python -m hf_divsft.evaluation.lighteval_offline accelerate "model_name=PATH,dtype=float32" \
        "divsft_alpaca_eval_nll|0,divsft_arena_hard_nll|0" \
        --custom-tasks hf_divsft/evaluation/lighteval_tasks.py --max-samples 8 --output-dir runs/lighteval

Tasks, for each eval config (`alpaca_eval`, `arena_hard`):
* `divsft_<config>_nll`: the log-likelihood of the reference answer after the chat-templated prompt, as a
  mean NLL per token (`ref_nll`, the same proxy as `divsft eval --judge reference-nll`; lighteval counts
  the template's newline before the answer as part of it).
* `divsft_<config>`: a generated answer (`DIVSFT_LIGHTEVAL_TOKENS` new tokens, default 512) scored with
  ROUGE-L against the reference, a cheap lexical check; use `divsft eval --judge pairwise` for a judge.
The eval set is `DIVSFT_EVAL_SET` (default ../shared/data/sft-eval, a Hub-layout folder or a Hub id).
"""

import os

import numpy as np
from lighteval.metrics.metrics import Metrics
from lighteval.metrics.metrics_sample import SampleLevelComputation
from lighteval.metrics.utils.metric_utils import CorpusLevelMetric
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc, SamplingMethod

from hf_divsft.assets import DEFAULT_EVAL_SET

EVAL_SET = os.environ.get("DIVSFT_EVAL_SET", DEFAULT_EVAL_SET)
NEW_TOKENS = int(os.environ.get("DIVSFT_LIGHTEVAL_TOKENS", "512"))


def eval_prompt(line: dict, task_name: str | None = None) -> Doc:
    """The instruction as the user turn (lighteval applies the model's chat template); the reference as gold."""
    return Doc(task_name=task_name, query=line["instruction"], choices=[line["reference"]], gold_index=0,
               specific={"id": line["id"]})


class ReferenceNLL(SampleLevelComputation):
    """(summed NLL of the reference's tokens, their number) for one prompt."""

    def compute(self, doc: Doc, model_response, **kwargs):
        tokens = np.asarray(model_response.output_tokens[doc.gold_index])
        return -float(model_response.logprobs[doc.gold_index]), int((tokens != -1).sum())


def per_token(pairs) -> dict:
    """Summed NLL over summed tokens, for the whole task. A dict, so lighteval adds no stderr of its own."""
    pairs = list(pairs)
    return {"ref_nll": sum(nll for nll, _ in pairs) / max(sum(n for _, n in pairs), 1)}


ref_nll = CorpusLevelMetric(metric_name="ref_nll", sample_level_fn=ReferenceNLL(), category=SamplingMethod.LOGPROBS,
                            corpus_level_fn=per_token, higher_is_better=False)


def tasks_for(config: str) -> list[LightevalTaskConfig]:
    common = dict(prompt_function=eval_prompt, hf_repo=EVAL_SET, hf_subset=config, hf_avail_splits=["test"],
                  evaluation_splits=["test"], few_shots_split=None, few_shots_select=None)
    return [
        LightevalTaskConfig(name=f"divsft_{config}_nll", metrics=[ref_nll], generation_size=None, **common),
        LightevalTaskConfig(name=f"divsft_{config}", metrics=[Metrics.rougeL], generation_size=NEW_TOKENS,
                            stop_sequence=[], **common),
    ]


TASKS_TABLE = tasks_for("alpaca_eval") + tasks_for("arena_hard")
