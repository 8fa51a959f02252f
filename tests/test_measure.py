"""`divsft measure`, the metrics in build manifests, `divsft plot`, and the `evaluate` modules."""

from __future__ import annotations

import json

import evaluate
import pytest
import yaml
from datasets import load_from_disk

from hf_divsft.config import MeasureConfig
from hf_divsft.measure import measure_dataset
from hf_divsft.measurements import MEASUREMENTS, measurement_path
from hf_divsft.metrics import (
    METRICS,
    compression_ratio,
    ngram_ratio,
    self_bleu,
    sequence_length,
    token_entropy,
)
from hf_divsft.tokenization import load_tokenizer

from .conftest import error_line, read_manifest, run_divsft

LEVELS = (0, 50, 100)


@pytest.fixture(scope="module")
def micro_build(pool_file, tmp_path_factory):
    """A small real response-micro build (300 rows per level) with its metrics in the manifest."""
    out = tmp_path_factory.mktemp("measure") / "response-micro"
    result = run_divsft("build", "--pool", pool_file, "--strategy", "response-micro", "--size", 300,
                        "--band", "10,100", "--levels", ",".join(map(str, LEVELS)), "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def test_manifest_holds_all_six_metrics_for_both_components(micro_build):
    manifest = read_manifest(micro_build)
    assert manifest["metrics_settings"]["tokenizer"] == "smollm2"
    for entry in manifest["levels"]:
        assert set(entry["metrics"]) == {"instruction", "response"}
        for component in entry["metrics"].values():
            assert tuple(component) == tuple(METRICS)
            assert all(isinstance(metric["value"], float) for metric in component.values())


def test_response_token_entropy_rises_with_response_micro_diversity(micro_build):
    """The relation the paper relies on, on real pool rows. Printed so a regression shows its numbers."""
    entropies = [entry["metrics"]["response"]["token_entropy"]["value"] for entry in read_manifest(micro_build)["levels"]]
    print("response token entropy (bits) at levels", LEVELS, ":", [round(e, 3) for e in entropies])
    assert entropies[0] < entropies[-1]


def test_measure_on_a_build_folder_matches_the_manifest(micro_build, tmp_path):
    out = tmp_path / "metrics.json"
    result = run_divsft("measure", micro_build, "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    manifest = read_manifest(micro_build)
    assert report["strategy"] == "response-micro"
    assert [e["config"] for e in report["levels"]] == [e["config"] for e in manifest["levels"]]
    for measured, built in zip(report["levels"], manifest["levels"]):
        for component in ("instruction", "response"):
            for metric in METRICS:
                assert measured["metrics"][component][metric]["value"] == pytest.approx(
                    built["metrics"][component][metric]["value"], rel=1e-6)
    assert "response_micro_d100 response: ngram_ratio=" in result.stdout
    # measuring leaves the build folder as it was: no datasets cache files written into it
    assert sorted(p.name for p in (micro_build / "response_micro_d000").iterdir()) == [
        "data-00000-of-00001.arrow", "dataset_info.json", "state.json",
    ]


def test_measure_on_a_data_file_equals_the_metric_functions(pool_file, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "pool-metrics.json"
    result = run_divsft("measure", pool_file, "--out", out, "--components", "response")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    texts = load_dataset("parquet", data_files=str(pool_file), split="train")["response"][:]
    ids = load_tokenizer("smollm2").encode_batch(texts)
    metrics = report["metrics"]["response"]
    assert report["num_rows"] == len(texts) and set(report["metrics"]) == {"response"}
    assert metrics["ngram_ratio"] == ngram_ratio(texts)
    assert metrics["compression_ratio"] == compression_ratio(texts)
    assert metrics["self_bleu"] == self_bleu(texts)
    assert metrics["sequence_length"] == sequence_length(ids)
    assert metrics["token_entropy"] == token_entropy(ids)


def test_measure_rejects_bad_input_with_one_line_and_no_output(micro_build, tmp_path):
    out = tmp_path / "m.json"
    cases = {
        ("--components", "instructions"):
            "--components instructions: unknown; choose one of 'instruction' or 'response'",
        ("--max-n", "0"): "--max-n 0: must be at least 1",
    }
    for flags, message in cases.items():
        result = run_divsft("measure", micro_build, "--out", out, *flags)
        assert result.returncode == 2 and error_line(result.stderr) == f"error: {message}"
    result = run_divsft("measure", tmp_path / "missing", "--out", out)
    assert result.returncode == 2 and "missing: no such file or folder" in error_line(result.stderr)
    assert not out.exists()


def test_plot_writes_a_png_from_build_folders(micro_build, tmp_path):
    png = tmp_path / "plots" / "metrics.png"
    result = run_divsft("plot", micro_build, "--out", png)
    assert result.returncode == 0, result.stderr
    header = png.read_bytes()[:8]
    assert header == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert [p.name for p in png.parent.iterdir()] == ["metrics.png"]  # no temporary file left behind


def test_plot_without_metrics_says_what_to_run(pool_file, tmp_path):
    out = tmp_path / "bare"
    built = run_divsft("build", "--pool", pool_file, "--strategy", "response-micro", "--size", 100,
                       "--band", "10,100", "--levels", "100", "--no-metrics", "--out", out)
    assert built.returncode == 0, built.stderr
    assert "metrics" not in read_manifest(out)["levels"][0]
    result = run_divsft("plot", out, "--out", tmp_path / "x.png")
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"error: {out}/manifest.json: has no per-level metrics; run `divsft measure {out} --out metrics.json`"
    )


def test_every_metric_loads_as_an_evaluate_module_and_agrees(micro_build):
    subset = load_from_disk(str(micro_build / "response_micro_d100"))
    config = MeasureConfig(components=["response"])
    direct = measure_dataset(subset, config, keep_in_memory=True)["response"]
    texts = subset["response"][:]
    for name in MEASUREMENTS:
        module = evaluate.load(measurement_path(name))
        assert module.module_type == "measurement" and module.name == name
        assert module.compute(data=texts)["value"] == pytest.approx(direct[name]["value"], rel=1e-6), name


@pytest.mark.parametrize("name", MEASUREMENTS)
def test_module_cards_carry_evaluate_metadata(name):
    from pathlib import Path

    card = (Path(measurement_path(name)) / "README.md").read_text()
    _, header, body = card.split("---\n", 2)
    metadata = yaml.safe_load(header)
    assert {"evaluate", "measurement"} <= set(metadata["tags"]) and metadata["description"]
    for section in ("## Measurement description", "## How to use", "### Inputs", "### Output values", "## Citation"):
        assert section in body
    assert f'measurement_path("{name}")' in body
