"""`--control length|source`: the level moves the types a subset covers, not its response-length
distribution or its source mix; every level takes each stratum's share of N."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from datasets import load_from_disk

from hf_divsft import BuildConfig, build
from hf_divsft.strategies import STRATEGIES
from hf_divsft.tokenization import load_tokenizer

SMALL = {"size": 300, "levels": [0, 50, 100], "metrics": False}
# the settings test_build's macro and meso builds use, so the typed pool comes from the map cache
FAST = {"instruction-macro": {"min_cluster_size": 10}, "response-macro": {"min_cluster_size": 10},
        "instruction-meso": {"tag_alpha": 5}, "response-meso": {"tag_alpha": 5}}


def controlled(pool_file, out, strategy: str, control: list[str]) -> dict:
    return build(BuildConfig(pool=str(pool_file), strategy=strategy, control=control, out=str(out),
                             **SMALL, **FAST.get(strategy, {})))


def mean_response_tokens(manifest: dict) -> list[float]:
    return [level["confounds"]["length_tokens"]["response"]["mean"] for level in manifest["levels"]]


def stratum_of(length: int, names: list[str]) -> str:
    """The length stratum a response of `length` tokens falls in, read from the strata's names."""
    for name in names:
        low, high = re.search(r"(\d+)(?:-(\d+)|\+) tokens", name).groups()
        if int(low) <= length and (high is None or length <= int(high)):
            return name
    raise AssertionError(f"{length} tokens fall in no stratum of {names}")


def subset_rows(out, manifest: dict, level: dict):
    return load_from_disk(str(out / level["config"]))


def assert_coverage_rises(manifest: dict) -> None:
    covered = [level["types_covered"] for level in manifest["levels"]]
    assert covered == sorted(covered) and covered[0] < covered[-1], covered


def test_length_control_holds_response_length_where_the_free_build_moves_it(pool_file, tmp_path):
    free = controlled(pool_file, tmp_path / "free", "response-micro", [])
    held = controlled(pool_file, tmp_path / "held", "response-micro", ["length"])
    free_means, held_means = mean_response_tokens(free), mean_response_tokens(held)
    assert max(free_means) / min(free_means) > 3, free_means  # the confound the control removes
    assert max(held_means) / min(held_means) <= 1.15, held_means
    assert held["control"]["controls"] == ["length:response"] and free["control"] is None
    assert_coverage_rises(held)
    served = [stratum for stratum in held["control"]["strata"] if stratum["quota"]]
    assert all(len(level["strata_k"]) == len(served) for level in held["levels"])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_length_control_gives_every_level_each_strata_share(pool_file, tmp_path, strategy):
    manifest = controlled(pool_file, tmp_path / "out", strategy, ["length"])
    strata = manifest["control"]["strata"]
    quotas = {stratum["name"]: stratum["quota"] for stratum in strata if stratum["quota"]}
    assert sum(quotas.values()) == SMALL["size"]
    tokenizer = load_tokenizer("smollm2")
    names = [stratum["name"] for stratum in strata]
    for level in manifest["levels"]:
        rows = subset_rows(tmp_path / "out", manifest, level)
        lengths = [len(ids) for ids in tokenizer.encode_batch(rows["response"])]
        assert Counter(stratum_of(length, names) for length in lengths) == quotas, level["config"]
    assert_coverage_rises(manifest)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_source_control_keeps_the_pools_source_mix_at_every_level(pool_file, tmp_path, strategy):
    manifest = controlled(pool_file, tmp_path / "out", strategy, ["source"])
    quotas = {stratum["name"]: stratum["quota"] for stratum in manifest["control"]["strata"] if stratum["quota"]}
    typed = {stratum["name"]: stratum["typed_rows"] for stratum in manifest["control"]["strata"]}
    shares = {name: rows / sum(typed.values()) for name, rows in typed.items()}
    assert all(abs(quotas.get(name, 0) - SMALL["size"] * share) < 1 for name, share in shares.items())
    for level in manifest["levels"]:
        assert Counter(subset_rows(tmp_path / "out", manifest, level)["source"]) == quotas, level["config"]
        mix = {k: v for k, v in level["confounds"]["source_mix"].items() if k != "column"}
        assert mix == {name: round(quota / SMALL["size"], 4) for name, quota in quotas.items()}
    assert_coverage_rises(manifest)


def test_every_build_records_lengths_and_source_mix_per_level(pool_file, tmp_path):
    manifest = controlled(pool_file, tmp_path / "out", "instruction-micro", [])
    for level in manifest["levels"]:
        rows = subset_rows(tmp_path / "out", manifest, level)
        tokenizer = load_tokenizer("smollm2")
        for component in ("instruction", "response"):
            lengths = [len(ids) for ids in tokenizer.encode_batch(rows[component])]
            recorded = level["confounds"]["length_tokens"][component]
            assert recorded["mean"] == pytest.approx(np.mean(lengths), abs=0.01)
            assert recorded["p50"] == pytest.approx(np.median(lengths))
        mix = level["confounds"]["source_mix"]
        assert mix.pop("column") == "source"
        assert mix == {name: round(n / len(rows), 4) for name, n in Counter(rows["source"]).most_common()}
