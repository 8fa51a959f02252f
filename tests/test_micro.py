"""Micro type extraction on real pool rows with the bundled SmolLM2 tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from hf_divsft import MicroTypes, load_pool, load_tokenizer
from hf_divsft.data import arrow_column
from hf_divsft.errors import DivsftError


@pytest.fixture(scope="module")
def pool(pool_file):
    return load_pool(str(pool_file))


def test_default_tokenizer_is_smollm2_from_the_gguf_package():
    tokenizer = load_tokenizer()
    ids = tokenizer.encode_batch(["Hello world"])[0]
    assert ids == [19556, 905]  # SmolLM2's own vocabulary, not a stand-in
    assert tokenizer.labels(ids) == {19556: "Hello", 905: " world"}


@pytest.mark.parametrize("spec", ["smollm2", "whitespace"])
def test_token_counts_are_the_lengths_of_the_encodings(pool, spec):
    # lengths (controls, confounds, dry runs) are counted without building lists of ids: same numbers
    tokenizer = load_tokenizer(spec)
    texts = [*pool["instruction"][:200], "", "  ", "<|im_end|> x"]
    counts = tokenizer.count_batch(texts)
    assert counts == [len(ids) for ids in tokenizer.encode_batch(texts)]
    assert min(counts) == 0 and max(counts) > 50


def test_tokenizer_is_converted_into_an_empty_cache_and_replaces_a_broken_entry(tmp_path, monkeypatch):
    # A fresh machine has no cache yet; an interrupted older conversion leaves a folder without its file.
    monkeypatch.setenv("HF_DIVSFT_CACHE", str(tmp_path))
    load_tokenizer.cache_clear()  # else the tokenizer an earlier test loaded is returned unread
    assert load_tokenizer().encode_batch(["Hello world"])[0] == [19556, 905]
    folder = tmp_path / "tokenizers" / "smollm2-135m-instruct"
    (folder / "tokenizer.json").unlink()
    load_tokenizer.cache_clear()
    assert load_tokenizer().encode_batch(["Hello world"])[0] == [19556, 905]
    assert (folder / "tokenizer.json").is_file()
    assert [path.name for path in folder.parent.iterdir()] == [folder.name]  # no staging folder left over


@pytest.mark.parametrize("frequency", ["occurrences", "samples"])
def test_types_are_exactly_the_distinct_mid_band_tokens(pool, frequency):
    micro = MicroTypes("response", band=(3, 60), frequency=frequency)
    typed = micro.add_types(pool)
    token_lists = arrow_column(typed, "response_token_ids").to_pylist()
    counter = np.zeros(49152, dtype=np.int64)
    for ids in token_lists:
        np.add.at(counter, np.unique(ids) if frequency == "samples" else np.asarray(ids, dtype=np.int64), 1)
    band = set(np.flatnonzero((counter > 3) & (counter <= 60)).tolist())
    assert band, "the sample must have a non-empty mid band"
    for ids, types in zip(token_lists, typed["types"][:]):
        assert types == sorted(set(ids) & band)


def test_band_excludes_function_words_and_rare_tokens(pool):
    typed = MicroTypes("response", band=(3, 60)).add_types(pool)
    all_types = {t for types in typed["types"][:] for t in types}
    the = load_tokenizer().tokenizer.token_to_id("Ġthe")
    assert the not in all_types  # far above the band
    assert len(all_types) > 500


def test_cached_maps_are_keyed_by_all_our_code_and_the_library_versions(monkeypatch):
    # A stale cache once served tags made by an older helper module: the key must cover every module.
    from hf_divsft import columns

    digest = columns._module_digest.__wrapped__
    assert digest("hf_divsft.tagging") == digest("hf_divsft.strategies.micro")  # one key for our code
    before = digest("hf_divsft.tagging")
    monkeypatch.setattr(columns, "_version", lambda name: "0" if name == "spacy" else "1")
    assert columns._package_digest.__wrapped__() != before
    assert digest("json") not in (before, digest("hf_divsft.tagging"))  # someone else's: its module's source


def test_map_is_cached_by_fingerprint_and_num_proc_aware(pool):
    micro = MicroTypes("instruction", band=(3, 60))
    first = micro.add_types(pool)
    again = micro.add_types(pool)
    assert first.cache_files and first.cache_files == again.cache_files  # reused, not recomputed
    # A fresh fingerprint (a row subset), so the two worker processes really run; the band is
    # refitted on the subset, so compare against a single-process run on that same subset.
    subset = pool.select(range(1000))
    parallel = micro.add_types(subset, num_proc=2)
    assert parallel.cache_files != first.cache_files
    single = micro.add_types(subset.flatten_indices())
    assert parallel["types"][:] == single["types"][:]


def test_whitespace_tokenizer_ablation_gives_word_types(pool):
    typed = MicroTypes("response", tokenizer="whitespace", band=(3, 60)).add_types(pool)
    smol = MicroTypes("response", band=(3, 60)).add_types(pool)
    assert arrow_column(typed, "response_token_ids").type.value_type == "int64"
    assert typed["types"][:] != smol["types"][:]
    words = load_tokenizer("whitespace").encode_batch(["a b a"])[0]
    assert words[0] == words[2] != words[1]


def test_band_scale_rescales_bounds_to_pool_size(pool):
    micro = MicroTypes("response", band=(10, 500), scale_band=True)
    low, high = micro.bounds(pool.num_rows)
    assert low == pytest.approx(10 * pool.num_rows / 117_000) and high == pytest.approx(500 * pool.num_rows / 117_000)


def test_a_tokenizer_conversion_that_fails_in_its_own_process_fails_in_one_line(tmp_path, monkeypatch):
    from hf_divsft.models import smollm2_tokenizer_dir

    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HF_DIVSFT_CACHE", str(cache))
    with pytest.raises(DivsftError, match=r"^\S+/tokenizers/smollm2-135m-instruct: cannot be created: "
                                          r"\S+/cache is not a folder$") as raised:
        smollm2_tokenizer_dir()
    assert "\n" not in str(raised.value) and cache.read_text().startswith("a file")


def test_the_bundled_tokenizer_without_transformers_encodes_and_labels_as_transformers_does(pool):
    # load_tokenizer reads our converted tokenizer.json with `tokenizers` alone (no transformers import
    # in each Ray worker): it must be the same tokenizer that transformers loads from that folder
    from transformers import AutoTokenizer

    from hf_divsft.models import smollm2_tokenizer_dir
    from hf_divsft.tokenization import HFTokenizer

    bare, full = load_tokenizer(), HFTokenizer(AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir())))
    texts = [*pool["instruction"][:500], *pool["response"][:500], "<|im_start|>user\nHi<|im_end|>",
             "é\u200b𝔘"]
    assert bare.encode_batch(texts) == full.encode_batch(texts)
    every_id = list(range(full.tokenizer.vocab_size))
    assert bare.labels(every_id) == full.labels(every_id)
