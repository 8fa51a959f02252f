"""Controls (`--control`): subsets whose diversity level moves while their length or source mix does not.

Without a control a level's candidate pool decides everything else too: micro's level 0 keeps the rows
with the fewest mid-band tokens, which are the shortest responses (about 11 tokens on the shared pool,
against about 98 at level 100), and levels draw on the pool's sources unevenly. A control splits the typed
rows into strata and runs the one selector inside each stratum, at the same level, for the stratum's share
of N (largest remainder), so every level has the strata's proportions in the typed pool:

* `length[:COMPONENT]` (response by default): `LENGTH_STRATA` equal-count bins of the component's token
  length over the typed rows (ties keep a length in one bin), so every level matches the typed pool's
  length distribution to within a bin.
* `source[:COLUMN]` (column `source` by default): one stratum per value of the column.

Several controls cross their strata. Each stratum maps the level from its own k_min to all of its types,
so type coverage still rises with the level; what it costs is reported per level (`types_covered` against
an uncontrolled build of the same pool).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .arrays import list_lengths, take_rows, text_blocks
from .data import arrow_column
from .errors import DivsftError
from .select import Selection, TypeSelector
from .strategies import COMPONENTS
from .tokenization import TokenizeColumn, load_tokenizer

LENGTH_STRATA = 20


@dataclass(frozen=True)
class Control:
    kind: str  # "length" or "source"
    column: str  # the component whose length is held, or the pool column whose mix is held

    @classmethod
    def parse(cls, spec: str) -> Control:
        kind, _, column = spec.partition(":")
        if kind == "length" and column in ("", *COMPONENTS):
            return cls(kind, column or "response")
        if kind == "source":
            return cls(kind, column or "source")
        raise DivsftError(f"--control {spec}: choose length[:instruction|response] or source[:COLUMN]")

    def __str__(self) -> str:
        return f"{self.kind}:{self.column}"

    def check(self, columns: list[str]) -> None:
        if self.kind == "source" and self.column not in columns:
            raise DivsftError(f"--control {self}: the pool has no column '{self.column}' "
                              f"(columns: {', '.join(columns)}); name one with --control source:COLUMN")

    def strata(self, typed: Dataset, typed_rows: np.ndarray, tokenizer: str,
               num_proc: int | None) -> tuple[np.ndarray, list[str]]:
        """(this control's stratum of every row, the strata's names)."""
        if self.kind == "source":
            encoded = pc.dictionary_encode(pc.cast(arrow_column(typed, self.column), pa.string())).combine_chunks()
            names = [str(name) for name in encoded.dictionary.to_pylist()]
            codes = np.asarray(encoded.indices.fill_null(len(names)), dtype=np.int64)
            return codes, names + (["(none)"] if (codes == len(names)).any() else [])
        lengths = token_lengths(typed, self.column, tokenizer, num_proc)
        if not typed_rows.any():
            return np.zeros(len(lengths), dtype=np.int64), ["all"]
        # whole-token bounds: stratum i holds edges[i - 1] <= length < edges[i]
        quantiles = np.quantile(lengths[typed_rows], np.linspace(0, 1, LENGTH_STRATA + 1)[1:-1])
        edges = np.unique(np.ceil(quantiles)).astype(np.int64)
        bounds = [f"{low}-{high - 1}" for low, high in itertools.pairwise([0, *edges])] + [f"{edges[-1]}+"]
        return np.searchsorted(edges, lengths, side="right"), [f"{self.column} {b} tokens" for b in bounds]

def token_lengths(ds: Dataset, component: str, tokenizer: str, num_proc: int | None = None) -> np.ndarray:
    """Each row's token count of `component` with `tokenizer` (a cached map; reused when the build has it)."""
    tokenized = TokenizeColumn(component, tokenizer).apply(ds, num_proc=num_proc)
    return list_lengths(arrow_column(tokenized, f"{component}_token_ids"))


class StratifiedSelector:
    """Algorithm 1 inside each stratum, Algorithm 2 across them: a level's candidate pool is the union of
    each stratum's candidate pool at that level (from the stratum's own k_min for its share of N, so level
    0 is as narrow in every stratum), filled by the one `TypeSelector.fill`, which serves the types
    furthest behind over the whole subset while no stratum takes more than its share. Same
    `select(level, size)` as an uncontrolled selector."""

    def __init__(self, types: pa.ChunkedArray, strata: np.ndarray, names: list[str], seed: int = 0):
        self.whole = TypeSelector(types, seed=seed)
        self.seed, self.names = seed, names
        self.num_rows, self.typed_rows, self.num_types = len(strata), self.whole.typed_rows, self.whole.num_types
        typed = list_lengths(types) > 0
        self.rows = [np.flatnonzero(typed & (strata == s)) for s in range(len(names))]
        self.stratum = np.asarray(strata, dtype=np.int32)
        self.selectors = [TypeSelector(take_rows(types, rows), seed=seed) if len(rows) else None
                          for rows in self.rows]

    def quotas(self, size: int) -> np.ndarray:
        """Each stratum's share of `size` by its typed rows, rounded by largest remainder."""
        counts = np.array([len(rows) for rows in self.rows], dtype=np.float64)
        exact = size * counts / counts.sum()
        quotas = np.floor(exact).astype(np.int64)
        quotas[np.argsort(-(exact - quotas), kind="stable")[: size - quotas.sum()]] += 1
        return quotas

    def k_min(self, size: int) -> int:
        """The strata's k_min summed; fails, as an uncontrolled selector does, when N is too large."""
        if size > self.typed_rows:
            raise DivsftError(f"the pool has only {self.typed_rows} samples that carry a type (of "
                              f"{self.num_rows} rows); it cannot supply --size {size}: lower --size")
        return sum(self.selectors[s].k_min(int(q)) for s, q in enumerate(self.quotas(size)) if q)

    def select(self, level: float, size: int) -> Selection:
        quotas = self.quotas(size)
        in_pool = np.zeros(self.num_rows, dtype=bool)
        kept, strata_k = [], []
        for s in np.flatnonzero(quotas):
            selector = self.selectors[s]
            k = selector.k_for_level(level, int(quotas[s]))
            in_pool[self.rows[s][selector.candidates(k)]] = True
            kept.append(np.searchsorted(self.whole.type_ids, selector.type_ids[selector.kept_types(k)]))
            strata_k.append(k)
        kept = np.unique(np.concatenate(kept))  # each kept type once, in the whole pool's dense ids
        selection = self.whole.fill(level, len(kept), in_pool, kept, size,
                                    np.random.default_rng([self.seed, *strata_k]), (self.stratum, quotas))
        return dataclasses.replace(selection, strata_k=tuple(strata_k))


def stratify(typed: Dataset, controls: list[Control], tokenizer: str,
             num_proc: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(stratum of every row, stratum names): the controls' strata crossed, empty crossings left out."""
    typed_rows = list_lengths(arrow_column(typed, "types")) > 0
    strata, names = np.zeros(typed.num_rows, dtype=np.int64), [""]
    for control in controls:
        codes, own = control.strata(typed, typed_rows, tokenizer, num_proc)
        strata = strata * len(own) + codes
        names = [f"{mine} & {theirs}" if mine else theirs for mine in names for theirs in own]
    used, strata = np.unique(strata, return_inverse=True)
    return strata, [names[u] for u in used]


def level_confounds(typed: Dataset, selections: list[Selection], tokenizer: str,
                    source_column: str | None) -> list[dict]:
    """Per level: token-length quantiles of each component and the mix of `source_column`, the two things
    besides diversity that a level's rows can differ in. Read on the rows some level holds, in memory."""
    union = np.unique(np.concatenate([selection.indices for selection in selections]))
    lengths = {component: _lengths_of(typed, union, component, tokenizer) for component in COMPONENTS}
    sources = (pc.cast(take_rows(arrow_column(typed, source_column), union), pa.string())
               .to_numpy(zero_copy_only=False) if source_column else None)
    confounds = []
    for selection in selections:
        at = np.searchsorted(union, selection.indices)
        entry = {"length_tokens": {component: _quantiles(values[at]) for component, values in lengths.items()}}
        if sources is not None:
            values, counts = np.unique(sources[at].astype(str), return_counts=True)
            order = np.argsort(-counts, kind="stable")
            entry["source_mix"] = {"column": source_column,
                                   **{str(values[i]): round(float(counts[i]) / len(at), 4) for i in order}}
        confounds.append(entry)
    return confounds


def _lengths_of(typed: Dataset, rows: np.ndarray, component: str, tokenizer: str) -> np.ndarray:
    """Token counts of `component` in `rows` (sorted): from the build's token ids when it has them."""
    ids = f"{component}_token_ids"
    if ids in typed.column_names:
        return list_lengths(take_rows(arrow_column(typed, ids), rows))
    count = load_tokenizer(tokenizer).count_batch
    texts = take_rows(arrow_column(typed, component), rows)
    return np.array([n for block in text_blocks(texts) for n in count(block)], dtype=np.int64)


def _quantiles(lengths: np.ndarray) -> dict:
    quantiles = np.percentile(lengths, [10, 25, 50, 75, 90]) if len(lengths) else [0.0] * 5
    return {"mean": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            **{f"p{p}": float(q) for p, q in zip((10, 25, 50, 75, 90), quantiles)}}
