"""The six metrics: hand-checkable cases, and agreement with independent implementations on real texts."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from hf_divsft.metrics import (
    compression_ratio,
    embedding_distance,
    ngram_ratio,
    self_bleu,
    sequence_length,
    token_entropy,
)


@pytest.fixture(scope="module")
def real_texts(shared_pool):
    """200 real instructions and responses (seeded), plus the awkward cases BLEU must survive."""
    rows = shared_pool.shuffle(seed=7).select(range(200))
    awkward = ["", "one", "two words", "two words", "  padded\ttext ", "tabs\tand\n\nnew lines", "a b c"] * 2
    return {"instruction": rows["instruction"][:] + awkward, "response": rows["response"][:]}


# ---- hand-checkable cases -------------------------------------------------------------------------

def test_identical_texts_give_the_minimum_ngram_ratio():
    text = "the quick brown fox jumps over the lazy dog"
    single = ngram_ratio([text])
    copies = ngram_ratio([text] * 5)
    for n, ratio in single["by_n"].items():
        assert copies["by_n"][n] == pytest.approx(ratio / 5)
    varied = ngram_ratio([text, "a completely different sentence here", "and yet another one", "more", "words"])
    assert copies["value"] < varied["value"]
    assert ngram_ratio(["no repeated words at all"])["value"] == 1.0


def test_ngram_orders_longer_than_every_text_are_left_out():
    result = ngram_ratio(["the cat sat", "the cat sat"])
    assert result["by_n"] == {"1": 0.5, "2": 0.5, "3": 0.5, "4": None}
    assert result["value"] == 0.5


def test_identical_texts_give_self_bleu_100_and_disjoint_texts_0():
    assert self_bleu(["the cat sat on the mat"] * 4)["value"] == pytest.approx(100.0)
    for words in ("yes", "thank you", "see you soon"):  # shorter than 4 words: scored on the orders they have
        assert self_bleu([words] * 3)["value"] == pytest.approx(100.0)
    assert self_bleu(["alpha beta gamma delta", "one two three four", "red green blue white"])["value"] == 0.0
    assert self_bleu(["only one text"])["value"] is None


def test_entropy_of_one_repeated_token_is_zero_and_uniform_is_log2():
    assert token_entropy([[7, 7, 7], [7]])["value"] == 0.0
    assert token_entropy([[1, 2], [3, 4, 5, 6, 7, 8]])["value"] == pytest.approx(3.0)


def test_compression_ratio_of_random_bytes_is_near_one_and_of_repetition_far_above():
    random_ratio = compression_ratio([os.urandom(1 << 16)])["value"]
    assert 0.98 < random_ratio <= 1.0
    assert compression_ratio(["the same sentence, once more."] * 500)["value"] > 20


def test_sequence_length_summarises_token_counts():
    result = sequence_length([[1] * 2, [1] * 4, [1] * 6, [1] * 8])
    assert (result["value"], result["min"], result["max"], result["median"], result["tokens"]) == (5.0, 2, 8, 5.0, 20)
    assert result["std"] == pytest.approx(np.std([2, 4, 6, 8]))


def test_embedding_distance_of_identical_vectors_is_zero_and_of_opposite_ones_two():
    assert embedding_distance(np.ones((5, 8)))["value"] == pytest.approx(0.0, abs=1e-12)
    assert embedding_distance(np.array([[1.0, 0.0], [-1.0, 0.0]]))["value"] == pytest.approx(2.0)
    assert embedding_distance(np.ones((1, 8)))["value"] is None
    rng = np.random.default_rng(0)
    for _ in range(50):  # identical random vectors: rounding must not push the distance below 0
        assert embedding_distance(np.tile(rng.normal(size=(1, 384)), (7, 1)))["value"] >= 0.0


# ---- independent implementations ------------------------------------------------------------------

@pytest.mark.parametrize("component", ["instruction", "response"])
def test_self_bleu_equals_nltk_sentence_bleu_against_all_other_texts(real_texts, component):
    """Texygen's definition, computed by NLTK one hypothesis at a time (auto_reweigh: a text shorter than 4
    words is scored on the n-gram orders it has); tolerance 1e-9 (float rounding)."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    texts = real_texts[component][:60] + real_texts[component][200:]
    words = [text.split() for text in texts]
    smoothing = SmoothingFunction().method1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns about hypotheses without 4-grams; the score still counts
        nltk_scores = [
            sentence_bleu([w for j, w in enumerate(words) if j != i], words[i], smoothing_function=smoothing,
                          auto_reweigh=True)
            for i in range(len(words))
        ]
    expected = 100 * float(np.mean(nltk_scores))
    print(f"{component}: ours {self_bleu(texts)['value']:.6f}, NLTK {expected:.6f} on {len(texts)} texts")
    assert self_bleu(texts)["value"] == pytest.approx(expected, abs=1e-9)


def test_sampled_self_bleu_is_seeded_and_reports_its_sample(real_texts):
    texts = real_texts["response"]
    first, again = self_bleu(texts, sample=50, seed=3), self_bleu(texts, sample=50, seed=3)
    assert first == again
    assert (first["texts"], first["of"], first["sampled"]) == (50, len(texts), True)
    chosen = np.sort(np.random.default_rng(3).choice(len(texts), 50, replace=False))
    assert first["value"] == pytest.approx(self_bleu([texts[i] for i in chosen], sample=None)["value"])
    assert self_bleu(texts, sample=50, seed=4)["value"] != first["value"]


@pytest.mark.parametrize("component", ["instruction", "response"])
def test_compression_ratio_agrees_with_the_diversity_package(real_texts, component):
    """Tolerance 1%: `diversity` gzips its gzip output once more (a few dozen bytes) and rounds to 3 places."""
    import diversity

    ours = compression_ratio(real_texts[component])["value"]
    theirs = diversity.compression_ratio(real_texts[component])
    print(f"{component}: ours {ours:.4f}, diversity {theirs}")
    assert ours == pytest.approx(theirs, rel=0.01)


@pytest.mark.parametrize("component", ["instruction", "response"])
def test_ngram_ratios_sum_to_the_diversity_packages_ngram_diversity(real_texts, component):
    """Same words (white-space runs joined by one space); `diversity` also counts n-grams across texts.

    Tolerance 1.5% relative; the cross-text n-grams are about 3 per text against hundreds inside.
    """
    import diversity

    texts = [" ".join(text.split()) for text in real_texts[component] if text.split()]
    ours = sum(ngram_ratio(texts)["by_n"].values())
    theirs = diversity.ngram_diversity_score(texts, 4)
    print(f"{component}: ours {ours:.4f}, diversity {theirs}")
    assert ours == pytest.approx(theirs, rel=0.015)


def test_embedding_distance_equals_the_mean_of_all_pairwise_cosine_distances():
    from sklearn.metrics.pairwise import cosine_distances

    vectors = np.random.default_rng(0).normal(size=(300, 32))
    distances = cosine_distances(vectors)
    expected = distances[np.triu_indices(len(vectors), k=1)].mean()
    assert embedding_distance(vectors)["value"] == pytest.approx(expected, abs=1e-10)


def test_token_entropy_equals_scipy_on_real_token_ids(real_texts):
    from scipy.stats import entropy

    from hf_divsft.tokenization import load_tokenizer

    ids = load_tokenizer("smollm2").encode_batch(real_texts["response"])
    _, counts = np.unique(np.concatenate([np.asarray(row) for row in ids]), return_counts=True)
    assert token_entropy(ids)["value"] == pytest.approx(entropy(counts, base=2), abs=1e-9)
