"""Token entropy as an `evaluate` measurement (the computation is `hf_divsft.metrics.token_entropy`)."""

from hf_divsft import measurements
from hf_divsft.assets import DEFAULT_TOKENIZER
from hf_divsft.metrics import token_entropy
from hf_divsft.tokenization import load_tokenizer

_DESCRIPTION = """\
Information entropy of a set of texts: the Shannon entropy, in bits, of the distribution of LLM tokens
pooled over all texts (by default SmolLM2's tokenizer). One repeated token gives 0; the paper found
response token entropy correlated with fine-tuned model quality (r=0.58), and the relation vanished
with a white-space tokenizer.
"""

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): the texts.
    tokenizer (str): "smollm2" (default), "whitespace", or a tokenizer path / Hub id.
Returns:
    value (float): entropy in bits; tokens (int); distinct_tokens (int).
Examples:
    >>> entropy = evaluate.load(measurement_path("token_entropy"))
    >>> entropy.compute(data=["a b", "c d"], tokenizer="whitespace")["value"]
    2.0
"""


class TokenEntropy(measurements.TextMeasurement):
    card = (_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, data, tokenizer=DEFAULT_TOKENIZER):
        return token_entropy(load_tokenizer(tokenizer).encode_batch(data))
