"""Embedding distance as an `evaluate` measurement (the computation is `hf_divsft.metrics.embedding_distance`)."""

from hf_divsft import measurements
from hf_divsft.assets import DEFAULT_EMBEDDER
from hf_divsft.embedding import embed_texts
from hf_divsft.metrics import embedding_distance

_DESCRIPTION = """\
Semantic spread of a set of texts: the mean cosine distance (1 - cosine similarity) over all pairs of
sentence embeddings. Computed exactly in linear time, since for unit vectors the sum of all pairwise
similarities is the squared norm of their sum minus the self terms. Default embedder: a static
model2vec distillation of all-MiniLM-L6-v2 ("minilm-static"); "minilm" uses the full model.
"""

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): the texts.
    embedder (str): "minilm-static" (default), "minilm", or a sentence-transformers / model2vec path.
Returns:
    value (float or None): mean pairwise cosine distance (None with fewer than two texts).
    pairs (int): the number of pairs averaged; exact (bool): always True.
Examples:
    >>> distance = evaluate.load(measurement_path("embedding_distance"))
    >>> distance.compute(data=["same text", "same text"])["value"] < 1e-6
    True
"""


class EmbeddingDistance(measurements.TextMeasurement):
    card = (_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, data, embedder=DEFAULT_EMBEDDER):
        return embedding_distance(embed_texts(data, embedder))
