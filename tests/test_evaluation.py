"""`divsft eval` end to end on CPU: SmolLM2-135M answers 8 real eval prompts, then both judges score them.

The pairwise judge talks to a real OpenAI-compatible server on 127.0.0.1 (`transformers serve`, started and
stopped by the `chat_server` fixture). SmolLM2-135M rarely writes a well-formed verdict, which is what the
test needs: malformed replies must be recorded, not crash the run.
"""

from __future__ import annotations

import json

import pytest

from hf_divsft.chat import JsonCache, OpenAIChat
from hf_divsft.evaluation import PairwiseJudge, load_eval_set, parse_verdict, reference_nll

from .conftest import error_line, run_divsft

LIMIT = 8


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Answer A is more complete.\n[[A]]", "A"),
        ("At first [[A]] seemed right, but on reflection [[B]]", "B"),
        ("Both are equally good. [[C]]", "C"),
        ("My final verdict is: [[B>A]]", "B"),
        ("[[ A ]]", "A"),
        ("Assistant A is better.", None),
        ("[[D]] or [A]", None),
        ("", None),
    ],
)
def test_verdicts_parse_or_are_recorded_as_missing(reply, verdict):
    assert parse_verdict(reply) == verdict


@pytest.fixture(scope="module")
def nll_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "nll"
    result = run_divsft("eval", "--out", out, "--limit", LIMIT, "--max-new-tokens", 16)
    assert result.returncode == 0, result.stderr
    return out, result


def test_generations_cover_both_eval_sets(nll_run):
    out, _ = nll_run
    generations = read_jsonl(out / "generations.jsonl")
    assert len(generations) == LIMIT
    assert {g["config"] for g in generations} == {"alpaca_eval", "arena_hard"}
    expected = load_eval_set(limit=LIMIT, seed=0)
    assert [g["id"] for g in generations] == expected["id"][:]
    assert all(g["output"].strip() and 0 < g["tokens"] <= 16 for g in generations)


def test_reference_nll_is_a_labelled_deterministic_proxy(nll_run):
    out, result = nll_run
    summary = json.loads((out / "summary.json").read_text())
    judgments = read_jsonl(out / "judgments.jsonl")
    assert summary["judge"] == {"judge": "reference-nll"} and summary["metric"].startswith("PROXY")
    assert summary["n"] == LIMIT and summary["score"] == -summary["nll"]
    pooled = sum(j["nll_sum"] for j in judgments) / sum(j["tokens"] for j in judgments)
    assert summary["nll"] == pytest.approx(pooled) and 0 < pooled < 10
    assert summary["ci95"][0] <= summary["score"] <= summary["ci95"][1]
    assert summary["subset"] is None and summary["versions"]["transformers"]
    items = load_eval_set(limit=LIMIT, seed=0).select(range(2)).to_list()
    again = reference_nll("smollm2", items)
    assert [(j["id"], j["tokens"]) for j in again] == [(j["id"], j["tokens"]) for j in judgments[:2]]
    assert [j["nll_sum"] for j in again] == pytest.approx([j["nll_sum"] for j in judgments[:2]], rel=1e-5)
    assert f"score {-pooled:.4g}" in result.stdout


def test_pairwise_judge_against_a_real_server_records_malformed_verdicts(chat_server, tmp_path):
    base_url, model = chat_server
    out, cache = tmp_path / "pairwise", tmp_path / "judge-cache.sqlite"
    result = run_divsft("eval", "--out", out, "--limit", LIMIT, "--max-new-tokens", 16, "--judge", "pairwise",
                        "--judge-model", model, "--judge-base-url", base_url, "--judge-max-tokens", 24,
                        "--judge-retries", 0, "--judge-cache", cache)
    assert result.returncode == 0, result.stderr
    judgments = read_jsonl(out / "judgments.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert len(judgments) == 2 * LIMIT
    assert {j["order"] for j in judgments} == {"model_first", "reference_first"}
    assert all(j["reply"].strip() and j["verdict"] in ("A", "B", "C", None) for j in judgments)
    malformed = [j for j in judgments if j["verdict"] is None]
    assert malformed, "expected SmolLM2-135M to write at least one reply without a verdict"
    assert summary["unparsed_verdicts"] == len(malformed)
    judged_prompts = {j["id"] for j in judgments if j["verdict"] is not None}
    assert summary["n"] == len(judged_prompts)
    assert summary["score"] is None or 0 <= summary["score"] <= 100
    assert summary["judge"]["backend"] == "openai" and summary["judge"]["base_url"] == base_url

    # a rerun pays nothing: the cache answers and the dead endpoint is never called
    items = {g["id"]: g for g in read_jsonl(out / "generations.jsonl")}
    for row in load_eval_set(limit=LIMIT, seed=0):
        items[row["id"]]["reference"] = row["reference"]
    judge = PairwiseJudge(OpenAIChat(model, "http://127.0.0.1:9/v1"), max_tokens=24, retries=0,
                          cache=JsonCache("judgments", cache))
    assert judge.judge(list(items.values())) == judgments


def test_bad_judge_settings_fail_in_one_line(tmp_path):
    result = run_divsft("eval", "--out", tmp_path / "x", "--judge", "pairwise")
    assert result.returncode == 2
    assert error_line(result.stderr) == "error: --judge pairwise needs --judge-model (and --judge-base-url for a server)"
    result = run_divsft("eval", "--out", tmp_path / "x", "--judge", "gpt")
    assert error_line(result.stderr) == ("error: --judge gpt: unknown; "
                                         "choose one of 'reference-nll' or 'pairwise'")
    assert not (tmp_path / "x").exists()
