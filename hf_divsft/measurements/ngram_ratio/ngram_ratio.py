"""n-gram ratio as an `evaluate` measurement (the computation is `hf_divsft.metrics.ngram_ratio`)."""

from hf_divsft import measurements
from hf_divsft.metrics import MAX_N, ngram_ratio

_DESCRIPTION = """\
Lexical diversity of a set of texts: distinct word n-grams divided by all word n-grams, for n = 1..max_n.
Words are white-space separated and n-grams never run across two texts. 1.0 means no n-gram repeats;
a set of identical texts scores 1/len(set) or less.
"""

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): the texts, e.g. every response of a dataset.
    max_n (int): the largest n (default 4).
Returns:
    value (float): the mean of the ratios over n = 1..max_n.
    by_n (dict): the ratio for each n (keys "1".."max_n"); their sum is the `diversity` package's score.
Examples:
    >>> ngram = evaluate.load(measurement_path("ngram_ratio"))
    >>> ngram.compute(data=["the cat sat", "the cat sat"])["value"]
    0.5
"""


class NgramRatio(measurements.TextMeasurement):
    card = (_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, data, max_n=MAX_N):
        return ngram_ratio(data, max_n=max_n)
