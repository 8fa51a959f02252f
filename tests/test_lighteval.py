"""The lighteval custom tasks load and run on a tiny sample with the local SmolLM2 model, offline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from hf_divsft.models import smollm2_model_dir

from .conftest import REPO, SHARED

TASKS = REPO / "hf_divsft" / "evaluation" / "lighteval_tasks.py"


def test_lighteval_runs_the_custom_tasks_offline_and_leaves_the_model_folder_alone(tmp_path):
    model = smollm2_model_dir()
    before = sorted(p.name for p in model.iterdir())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"),
           "DIVSFT_EVAL_SET": str(SHARED / "data" / "sft-eval"), "DIVSFT_LIGHTEVAL_TOKENS": "16"}
    command = [sys.executable, "-m", "hf_divsft.evaluation.lighteval_offline", "accelerate",
               f"model_name={model},batch_size=2,dtype=float32", "divsft_alpaca_eval_nll|0,divsft_arena_hard|0",
               "--custom-tasks", str(TASKS), "--max-samples", "2", "--output-dir", str(tmp_path / "out")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    [report] = list((tmp_path / "out" / "results").rglob("results_*.json"))
    results = json.loads(report.read_text())["results"]
    nll = results["divsft_alpaca_eval_nll|0"]["ref_nll"]
    rouge = results["divsft_arena_hard|0"]["rougeL"]
    print(f"lighteval on 2 prompts each: reference NLL per token {nll:.3f}, ROUGE-L {rouge:.3f}")
    assert math.isfinite(nll) and 0 < nll < 10
    assert 0 <= rouge <= 1
    assert sorted(p.name for p in model.iterdir()) == before  # no sample cache written into the model
