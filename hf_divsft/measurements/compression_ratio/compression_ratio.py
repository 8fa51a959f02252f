"""Compression ratio as an `evaluate` measurement (the computation is `hf_divsft.metrics.compression_ratio`)."""

from hf_divsft import measurements
from hf_divsft.metrics import compression_ratio

_DESCRIPTION = """\
Redundancy of a set of texts: the size of all texts joined by spaces (UTF-8 bytes) divided by its gzip
size (level 9). Random bytes give about 1; repetitive text gives more. Same definition as the
`diversity` package (Shaib et al.).
"""

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): the texts.
Returns:
    value (float): raw size / gzip size.
    raw_bytes (int), gzip_bytes (int): the two sizes.
Examples:
    >>> ratio = evaluate.load(measurement_path("compression_ratio"))
    >>> ratio.compute(data=["ha"] * 1000)["value"] > 10
    True
"""


class CompressionRatio(measurements.TextMeasurement):
    card = (_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, data):
        return compression_ratio(data)
