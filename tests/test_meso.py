"""Meso types: the offline spaCy tagger, InsTag normalisation, reply parsing, and the selector on real rows."""

from __future__ import annotations

import pytest

from hf_divsft import TypeSelector, load_pool
from hf_divsft.build import PAPER_LEVELS
from hf_divsft.strategies import MesoTypes, TagNormalizer
from hf_divsft.strategies.meso import rule_key
from hf_divsft.tagging import SpacyTagger, TagParseError, parse_tags

SIZE = 300


def test_spacy_tagger_finds_verb_object_pairs_and_noun_heads():
    tags = SpacyTagger().tag_batch(["Write a short poem about the sea.", "Translate the sentence into German."])
    assert tags[0][0] == "write poem" and "sea" in tags[0]
    assert tags[1][0] == "translate sentence"


def test_long_texts_are_clipped_to_head_and_tail():
    tagger = SpacyTagger(clip_words=5)
    text = "Summarize the article below. " + "filler word " * 200 + "Then list the main entities."
    clipped = tagger.clip(text + "<|endoftext|>")
    assert clipped.startswith("Summarize the article below.") and clipped.endswith("main entities.")
    assert len(clipped.split()) == 11


def test_rule_aggregation_merges_case_punctuation_and_inflection():
    assert rule_key("Code Generation!!") == rule_key("code-generating") == "code gener"
    assert rule_key("Math problems") == rule_key("math problem")


def test_normalizer_drops_long_tail_and_merges_similar_and_associated_tags():
    tag_lists = (
        [["solve math problem", "arithmetic"]] * 30
        + [["solving math problems", "arithmetic"]] * 10
        + [["translate text", "french"]] * 25
        + [["write poem"]] * 25
        + [["rare tag"]] * 2
    )
    vocabulary = TagNormalizer(alpha=5, similarity=0.9, association=0.95).fit(tag_lists)
    stem_keys = vocabulary.key_to_type
    assert rule_key("rare tag") not in stem_keys  # long tail
    assert stem_keys[rule_key("solve math problem")] == stem_keys[rule_key("solving math problems")]  # rule
    assert stem_keys[rule_key("translate text")] == stem_keys[rule_key("french")]  # always together
    assert stem_keys[rule_key("write poem")] != stem_keys[rule_key("translate text")]
    assert "write poem" in vocabulary.labels


@pytest.mark.parametrize(
    "reply, tags",
    [
        ('[{"tag": "Math", "explanation": "x"}, {"tag": "logic", "explanation": "y"}]', ["math", "logic"]),
        ('Sure! ```json\n[{"tag": "coding"}]\n``` Hope this helps.', ["coding"]),
        ('["summarization", "news"]', ["summarization", "news"]),
        ('[{"tag": "math", "explanation": "unterminated}, {"tag": "algebra"', ["math", "algebra"]),
    ],
)
def test_parse_tags_reads_json_and_survives_broken_json(reply, tags):
    assert parse_tags(reply, max_tags=5) == tags


def test_parse_tags_rejects_replies_without_tags():
    with pytest.raises(TagParseError):
        parse_tags("I am a helpful assistant and I like questions.", max_tags=5)


@pytest.fixture(scope="module", params=["instruction", "response"])
def meso_typed(request, pool_file):
    return MesoTypes(request.param, normalizer=TagNormalizer(alpha=5)).add_types(load_pool(str(pool_file)))


def test_meso_types_drive_the_shared_selector(meso_typed):
    selector = TypeSelector(meso_typed["types"], seed=0)
    assert selector.num_types > 50
    chosen = [selector.select(level, SIZE) for level in PAPER_LEVELS]
    covered = [s.types_covered for s in chosen]
    assert covered == sorted(covered) and covered[0] == selector.k_min(SIZE)
    assert covered[-1] == selector.num_types
    for selection in chosen:
        assert len(set(selection.indices.tolist())) == SIZE
        assert selection.type_count_ratio is not None
