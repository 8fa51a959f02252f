"""Self-BLEU as an `evaluate` measurement (the computation is `hf_divsft.metrics.self_bleu`)."""

from hf_divsft import measurements
from hf_divsft.metrics import MAX_N, SELF_BLEU_SAMPLE, self_bleu

_DESCRIPTION = """\
How alike a set of texts is: each text is scored with BLEU-4 against all the other texts as references,
and the scores are averaged (Texygen's Self-BLEU: NLTK sentence BLEU, uniform weights, smoothing
method 1, white-space words). Scale 0..100; identical texts give 100, higher means less diverse.
The score is exact over every text; above `sample` texts a seeded sample of that size is scored.
"""

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): the texts.
    max_n (int): the largest n-gram order (default 4).
    sample (int or None): score a seeded sample of this many texts when there are more (default 20000).
    seed (int): the sample's seed (default 0).
Returns:
    value (float or None): mean Self-BLEU, 0..100 (None with fewer than two texts).
    texts (int): how many texts were scored; of (int): how many were given; sampled (bool).
Examples:
    >>> bleu = evaluate.load(measurement_path("self_bleu"))
    >>> bleu.compute(data=["the cat sat on the mat", "the cat sat on the mat"])["value"]
    100.0
"""


class SelfBleu(measurements.TextMeasurement):
    card = (_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, data, max_n=MAX_N, sample=SELF_BLEU_SAMPLE, seed=0):
        return self_bleu(data, max_n=max_n, sample=sample, seed=seed)
