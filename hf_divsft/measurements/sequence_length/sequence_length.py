"""Sequence length as an `evaluate` measurement (the computation is `hf_divsft.metrics.sequence_length`)."""

from hf_divsft import measurements
from hf_divsft.assets import DEFAULT_TOKENIZER
from hf_divsft.metrics import sequence_length
from hf_divsft.tokenization import load_tokenizer

_DESCRIPTION = """\
Length of each text in tokens of an LLM tokenizer (by default SmolLM2's, bundled offline), summarised as
mean, standard deviation, min, quantiles and max. The paper found response length the metric most
correlated with fine-tuned model quality (r=0.73).
"""

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): the texts.
    tokenizer (str): "smollm2" (default), "whitespace", or a tokenizer path / Hub id.
Returns:
    value (float): mean tokens per text; std, min, p10, p25, median, p75, p90, max, tokens, texts.
Examples:
    >>> length = evaluate.load(measurement_path("sequence_length"))
    >>> length.compute(data=["one two three", "four"], tokenizer="whitespace")["value"]
    2.0
"""


class SequenceLength(measurements.TextMeasurement):
    card = (_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, data, tokenizer=DEFAULT_TOKENIZER):
        return sequence_length(load_tokenizer(tokenizer).encode_batch(data))
