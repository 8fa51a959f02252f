"""`divsft build` end to end on real pool rows: the DESIGN.md contract, determinism and errors."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from datasets import load_from_disk

from hf_divsft import BuildConfig, build, load_tokenizer

from .conftest import error_line, read_manifest, run_divsft

SIZE = 300
BUILD_FLAGS = ("--size", SIZE, "--band", "10,100", "--levels", "0,50,100")


@pytest.fixture(scope="module")
def built(pool_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "response-micro"
    result = run_divsft("build", "--pool", pool_file, "--strategy", "response-micro", *BUILD_FLAGS, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_manifest_follows_the_contract(built, pool_file):
    out, result = built
    manifest = read_manifest(out)
    assert {"pool", "pool_fingerprint", "strategy", "size", "seed", "types_total", "levels"} <= set(manifest)
    assert (manifest["pool"], manifest["strategy"], manifest["size"], manifest["seed"]) == (
        str(pool_file), "response-micro", SIZE, 0,
    )
    assert [entry["config"] for entry in manifest["levels"]] == [
        "response_micro_d000", "response_micro_d050", "response_micro_d100",
    ]
    for entry in manifest["levels"]:
        assert {"level", "config", "k", "num_rows", "types_covered", "type_entropy", "ids_sha256"} <= set(entry)
        assert entry["config"] in result.stdout
    assert manifest["levels"][-1]["types_covered"] == manifest["types_total"]


def test_each_level_is_a_saved_dataset_of_pool_rows_with_all_columns(built, shared_pool):
    out, _ = built
    pool_rows = {row["id"]: row for row in shared_pool.select_columns(["id", "source", "instruction", "response"])}
    for entry in read_manifest(out)["levels"]:
        subset = load_from_disk(str(out / entry["config"]))
        assert subset.num_rows == entry["num_rows"] == SIZE
        assert {"id", "source", "instruction", "response"} <= set(subset.column_names)
        ids = subset["id"][:]
        assert len(set(ids)) == SIZE
        assert hashlib.sha256("\n".join(ids).encode()).hexdigest() == entry["ids_sha256"]
        for row in subset.select(range(20)):
            assert {k: row[k] for k in ("source", "instruction", "response")} == {
                k: pool_rows[row["id"]][k] for k in ("source", "instruction", "response")
            }


def test_same_seed_same_ids_other_seed_other_ids(built, pool_file, tmp_path):
    out, _ = built
    config = dict(pool=str(pool_file), strategy="response-micro", size=SIZE, band=(10, 100), levels=[0, 50, 100])
    again = build(BuildConfig(**config, out=str(tmp_path / "again")))
    other = build(BuildConfig(**config, seed=1, out=str(tmp_path / "other")))
    first = [entry["ids_sha256"] for entry in read_manifest(out)["levels"]]
    assert [entry["ids_sha256"] for entry in again["levels"]] == first
    assert [entry["ids_sha256"] for entry in other["levels"]][1:] != first[1:]


def test_response_token_band_limits_response_length(pool_file, tmp_path):
    manifest = build(
        BuildConfig(
            pool=str(pool_file), strategy="instruction-micro", size=100, band=(10, 100),
            levels=[0, 100], response_tokens=(20, 200), out=str(tmp_path / "band"),
        )
    )
    tokenizer = load_tokenizer()
    for entry in manifest["levels"]:
        subset = load_from_disk(str(tmp_path / "band" / entry["config"]))
        lengths = [len(ids) for ids in tokenizer.encode_batch(subset["response"][:])]
        assert min(lengths) >= 20 and max(lengths) <= 200


def test_yaml_config_with_flag_override(pool_file, tmp_path):
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump(
        {"pool": str(pool_file), "strategy": "instruction-micro", "size": 50, "band": [10, 100], "levels": [0, 100]}
    ))
    out = tmp_path / "from-yaml"
    result = run_divsft("build", "--config", config, "--size", 60, "--out", out)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest["size"] == 60 and manifest["strategy"] == "instruction-micro"
    config.write_text(yaml.safe_dump({"pool": str(pool_file), "strategy": "response-micro", "sise": 5}))
    result = run_divsft("build", "--config", config, "--out", tmp_path / "bad")
    assert result.returncode == 2 and "unknown key 'sise'" in error_line(result.stderr)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (("--strategy", "response-mezzo"), "--strategy response-mezzo: unknown"),
        (("--strategy", "response-micro", "--size", 100000), "cannot supply --size 100000"),
        (("--strategy", "response-micro", "--levels", "0,150"), "between 0 and 100"),
        (("--strategy", "response-micro", "--band", "50,10"), "need 0 <= low < high"),
        (("--strategy", "response-micro", "--tokenizer", "/no/such/tokenizer"), "--tokenizer /no/such/tokenizer"),
        (("--strategy", "response-micro", "--control", "colour"), "--control colour: choose length"),
        (("--strategy", "response-micro", "--control", "source:genre"), "the pool has no column 'genre'"),
        (("--strategy", "response-meso", "--tag-embedder", "/no/such/model"), "--tag-embedder /no/such/model"),
        (("--strategy", "response-meso", "--tag-embedder", ""), "--tag-embedder is empty"),
        (("--strategy", "response-macro", "--embedder", ""), "--embedder is empty"),
    ],
)
def test_bad_requests_fail_with_one_line_and_write_nothing(pool_file, tmp_path, flags, expected):
    out = tmp_path / "out"
    result = run_divsft("build", "--pool", pool_file, *flags, "--out", out)
    assert result.returncode == 2, result.stderr
    assert expected in error_line(result.stderr) and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(built, pool_file):
    out, _ = built
    before = (out / "manifest.json").read_text()
    result = run_divsft("build", "--pool", pool_file, "--strategy", "response-micro", *BUILD_FLAGS, "--out", out)
    assert result.returncode == 2 and "already exists" in error_line(result.stderr)
    assert (out / "manifest.json").read_text() == before


def test_every_command_has_help():
    for args in ((), ("build",)):
        result = run_divsft(*args, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout
    assert "--strategy" in run_divsft("build", "--help").stdout


@pytest.mark.parametrize(
    "strategy, flags, extractor",
    [
        ("instruction-macro", ("--min-cluster-size", 10), {"level": "macro", "embedder": "minilm-static"}),
        ("response-meso", ("--tag-alpha", 5), {"level": "meso", "tagger": "spacy"}),
    ],
)
def test_build_macro_and_meso_strategies(pool_file, tmp_path, strategy, flags, extractor):
    out = tmp_path / strategy
    result = run_divsft("build", "--pool", pool_file, "--strategy", strategy, "--size", 200, "--levels", "0,100",
                        *flags, "--out", out)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest["strategy"] == strategy and extractor.items() <= manifest["extractor"].items()
    first, last = manifest["levels"]
    assert first["num_rows"] == last["num_rows"] == 200
    assert first["types_covered"] < last["types_covered"] == manifest["types_total"]
    subset = load_from_disk(str(out / last["config"]))
    assert not any(name.endswith(("_embedding", "_token_ids")) for name in subset.column_names)
