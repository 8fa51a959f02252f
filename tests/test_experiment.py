"""`divsft experiment`: the shipped CPU smoke experiment end to end, killed midway and resumed to the same
results, a failing run that leaves the others to finish, `--only`, controls and the dry-run plan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from hf_divsft.explorer import load_results

from .conftest import REPO, error_line, read_manifest, run_divsft
from .test_space import start_app

SMOKE = REPO / "recipes" / "experiments" / "smoke-cpu.yaml"
STEPS = 13  # sample, 2 builds, 4 trains, 5 evals (the base model too), analyze


def experiment(*args, **kwargs) -> subprocess.CompletedProcess:
    return run_divsft("experiment", *args, cwd=REPO, timeout=1500, **kwargs)


def spec_file(tmp_path: Path, **changes) -> Path:
    """The smoke experiment with `changes` (its paths still relative to the checkout)."""
    spec = {**yaml.safe_load(SMOKE.read_text()), **changes}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def states(out: Path) -> dict:
    return json.loads((out / "experiment.json").read_text())["steps"]


def results_of(out: Path) -> dict:
    """What a results folder concluded: every run's score, the subsets' ids, the analysis."""
    results = load_results(out)
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    return {"scores": {results.name(run): run.summary.score for run in results.runs},
            "ids": {entry.config: entry.ids_sha256 for build in results.builds for entry in build.levels},
            "slopes": analysis["slopes"], "correlations": analysis["correlations"],
            "keys": {step: state["key"] for step, state in states(out).items()}}


def test_the_dry_run_plans_every_step_and_writes_nothing(tmp_path):
    out = tmp_path / "results"
    result = experiment(SMOKE, "--out", out, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"dry run: {STEPS} steps into {out} (0 done, {STEPS} to run" in result.stdout
    assert "[to run] train/seed-0/response_micro_d100" in result.stdout and "[to run] eval/base" in result.stdout
    assert "subsets: 4 (seed-0/instruction_micro_d000" in result.stdout
    # 4 models x 3 steps x 8 rows, each row capped at the recipe's max_length of 128 tokens
    assert "tokens to train: about 12,288 in all" in result.stdout
    assert "train time: about" in result.stdout and "(at the experiment file's `train: tokens_per_second`" in result.stdout
    assert not out.exists()


@pytest.mark.timeout(1800)  # two smoke experiments and a third of one: about 4 min on 2 cores
def test_a_killed_experiment_resumes_to_the_same_results_and_opens_in_the_space(tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    done = experiment(SMOKE, "--out", whole)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{STEPS} steps ran" in done.stdout
    assert all(state["status"] == "done" for state in states(whole).values()) and len(states(whole)) == STEPS

    script = Path(sys.executable).with_name("divsft")
    running = subprocess.Popen([str(script), "experiment", str(SMOKE), "--out", str(resumed)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 900
    while not (resumed / "experiment.json").is_file() or "train/seed-0/response_micro_d000" not in states(resumed):
        assert running.poll() is None and time.monotonic() < deadline, "the first model never finished"
        time.sleep(0.5)
    os.killpg(running.pid, signal.SIGKILL)  # the experiment and the training process it started
    running.wait()
    finished_before = set(states(resumed))
    assert len(finished_before) < STEPS

    again = experiment(SMOKE, "--out", resumed)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{STEPS - len(finished_before)} steps ran" in again.stdout  # only what the kill left undone
    assert results_of(resumed) == results_of(whole)
    assert "0 steps ran" in experiment(SMOKE, "--out", resumed).stdout  # nothing left to do

    results = load_results(resumed)
    assert len(results.builds) == 2 and len(results.runs) == 5
    assert sum(1 for run in results.runs if results.placed(run)) == 4
    url, server = start_app(resumed, tmp_path)
    with server:
        page = urllib.request.urlopen(url, timeout=30).read().decode()
    assert "hf-divsft explorer" in page


def test_a_failing_build_is_recorded_and_the_other_runs_finish(tmp_path):
    # no tag is seen in 100,000 samples of a 1,000-row pool: the meso build finds no types and fails
    spec = spec_file(tmp_path, strategies=["response-micro", "instruction-meso"], evaluate_base=False,
                     build={"band": [3, 300], "metrics": False, "tag_alpha": 100_000})
    out = tmp_path / "results"
    result = experiment(spec, "--out", out)
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert line.startswith("error: 1 step(s) failed and 4 could not run (first: build/seed-0/instruction-meso)")
    steps = states(out)
    assert steps["build/seed-0/instruction-meso"]["status"] == "failed"
    assert "lower --tag-alpha" in steps["build/seed-0/instruction-meso"]["reason"]
    assert steps["eval/seed-0/response_micro_d100"]["status"] == "done" and steps["analyze"]["status"] == "done"
    missing = json.loads((out / "analysis" / "analysis.json").read_text())["missing"]
    assert [note.split(":")[0] for note in missing] == ["eval/seed-0/instruction_meso_d000",
                                                         "eval/seed-0/instruction_meso_d100"]
    assert "Missing (not run, or failed)" in (out / "analysis" / "results.md").read_text()


def test_only_builds_run_first_with_a_control_and_the_plan_then_counts_them_done(tmp_path):
    spec = spec_file(tmp_path, build={"band": [3, 300], "metrics": False, "control": ["length"]})
    out = tmp_path / "results"
    result = experiment(spec, "--out", out, "--only", "build")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 steps ran" in result.stdout and not (out / "models").exists()
    manifest = read_manifest(out / "builds" / "seed-0" / "response-micro")
    assert manifest["control"]["controls"] == ["length:response"]
    plan = experiment(spec, "--out", out, "--dry-run").stdout
    assert "[done] build/seed-0/instruction-micro" in plan and "[to run] train/seed-0/response_micro_d000" in plan
    assert "(3 done, 10 to run" in plan


@pytest.mark.parametrize(("changes", "expected"), [
    ({"strategies": ["response-mezzo"]}, "strategies"),
    ({"colour": "blue"}, "unknown key 'colour'"),
    ({"build": {"out": "elsewhere"}}, "build: out is set by the experiment itself"),
    ({"build": {"control": ["colour"]}}, "--control colour: choose length"),
    ({"eval": {"judge": "oracle"}}, "eval: judge"),
])
def test_a_bad_experiment_file_fails_in_one_line_before_any_work(tmp_path, changes, expected):
    out = tmp_path / "results"
    result = experiment(spec_file(tmp_path, **changes), "--out", out)
    assert result.returncode == 2 and expected in error_line(result.stderr), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not out.exists()
