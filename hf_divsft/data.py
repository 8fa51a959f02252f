"""Load an SFT pool from anywhere `datasets` can read it and normalise it to `id`, `instruction`, `response`.

Accepted sources: a Hub dataset id, a local Hub-layout folder (README + data files), a folder written by
`Dataset.save_to_disk`, or `.jsonl` / `.json` / `.parquet` files. Columns are `instruction` + `response`
(an `input` column is appended to the instruction), or a conversation column (OpenAI `messages` or ShareGPT
`conversations`, any number of turns; see `conversations.py`). Every other pool column is kept, so subsets
carry whatever metadata the pool had. `read_dataset` is the one way any dataset (pool, eval set, subset)
is read from a path or the Hub.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, Features, Value, load_dataset, load_dataset_builder, load_from_disk
from datasets.table import InMemoryTable

from .arrays import take_rows
from .columns import add_columns
from .config import PoolColumns
from .conversations import PROBLEM, ConversationComponents, chat_format, is_blank
from .engines import current_engine
from .errors import DivsftError, reason
from .hub import repo_id_problem
from .strategies import COMPONENTS

SPECIAL_TOKEN = re.compile(r"<\|[^|>]{1,40}\|>")  # e.g. the `<|endoftext|>` some sources leave in text
DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
NEWLINE = b"\n"
QUIET_BELOW = 64 * 2**20  # bytes: below this a read is fast enough to need no progress bar
APPENDED = "__instruction_with_input__"


@dataclass
class Pool:
    """A normalised pool: `rows` has `id`, `instruction`, `response` and every column of the source."""

    rows: Dataset
    source_rows: int  # rows in the source, skipped ones included
    chat_column: str | None  # the conversation column of a chat pool
    skipped: dict  # {"rows": n, "reasons": {reason: {"rows": n, "first_ids": [...]}}}


def read_pool(source: str, columns: PoolColumns | None = None, split: str = "train",
              skip_invalid: bool = False) -> Pool:
    """Read and normalise `source`; a row that is not a usable sample is refused, or skipped and counted."""
    columns = columns or PoolColumns()
    raw = read_dataset(str(source), split)
    if raw.num_rows == 0:
        raise DivsftError(f"{source}: the pool has no rows")
    with quiet_if_small(str(source)):  # a small pool's normalising maps take no time: no bars before an error
        rows, chat_column = _components(raw, columns, label=str(source))
        rows = _ensure_ids(rows, columns.id, label=str(source))
        rows, skipped = _drop_problems(rows, chat_column, str(source), skip_invalid)
    return Pool(remapped(rows), raw.num_rows, chat_column, skipped)  # drops what normalising paged in


def remapped(ds: Dataset) -> Dataset:
    """`ds` with its files memory-mapped anew: the pages that normalising touched (a chat pool's whole
    conversation column) leave this process's memory with the old mapping, instead of staying mapped (and
    counted in its RSS) through tokenizing and selection. `datasets` pickles a memory-mapped table as its
    file paths and re-opens them on loading; a dataset held in memory is returned as it is."""
    return pickle.loads(pickle.dumps(ds)) if ds.cache_files else ds


def selected_rows(ds: Dataset, indices: np.ndarray) -> Dataset:
    """`ds.select(indices)`, held in memory, gathered column by column with `take_rows`: `datasets` would
    gather them with `ChunkedArray.take`, which reads (and maps into RSS) every page of every column.
    Its fingerprint is the source's and the indices': left out, `datasets` would serialise the whole table
    to hash it (a 1.3 GB spike for 10,000 chat rows)."""
    table = pa.table({name: take_rows(arrow_column(ds, name), indices) for name in ds.column_names})
    digest = hashlib.sha256(ds._fingerprint.encode() + np.asarray(indices, dtype=np.int64).tobytes())
    return Dataset(InMemoryTable(table.cast(ds.features.arrow_schema)), info=ds.info.copy(),
                   fingerprint=digest.hexdigest()[:16])


def load_pool(source: str, columns: PoolColumns | None = None, split: str = "train",
              skip_invalid: bool = False) -> Dataset:
    """Read `source` and return a dataset with string columns `id`, `instruction`, `response`."""
    return read_pool(source, columns, split, skip_invalid).rows


def sample_pool(source: str, rows: int, seed: int = 0) -> Dataset:
    """A seeded sample of `rows` of the pool's rows (all of them if it has fewer), in the sample's order."""
    pool = load_pool(source)
    return pool.select(np.random.default_rng(seed).permutation(pool.num_rows)[:rows])


def local_or_hub(source: str) -> Path | None:
    """The local path `source` names, or None for a Hub id; one line if it is neither.

    A source is local when it exists, or looks like a path (starts with `.`, `/` or `~`, has a data-file
    suffix, or sits in a folder that exists here); only a valid `owner/name` that is none of these goes to
    the Hub, so a mistyped path fails at once instead of after the Hub's timeouts.
    """
    path = Path(source).expanduser()
    if path.exists():
        return path
    looks_local = (source.startswith((".", "/", "~")) or path.suffix.lower() in DATA_FILE_BUILDERS
                   or (path.parent != Path(".") and path.parent.exists()))
    if looks_local or repo_id_problem(source):
        raise DivsftError(f"{source}: no such file or folder")
    return None


def read_dataset(source: str, split: str = "train", config: str | None = None) -> Dataset:
    """One split of a data file, a saved dataset, a Hub-layout folder or a Hub id, UTF-8 checked.

    `datasets` logs a failed read at length and draws a progress bar while it converts; both are silenced for
    small local inputs, so a bad file is one line, and kept for big ones, where the bar earns its place.
    """
    path = local_or_hub(source)
    try:
        with quiet_if_small(source):
            ds = _load(source, path, split, config)
    except DivsftError:
        raise
    except Exception as err:  # datasets raises many types; the user needs the file and the reason
        bad_json = (_json_problem(path) if path is not None and path.suffix.lower() in (".json", ".jsonl")
                    else None)
        if bad_json:
            raise DivsftError(f"{source}: {bad_json}") from err
        raise DivsftError(f"{source}: cannot be read as a dataset ({reason(_root_cause(err))})") from err
    _check_utf8(ds, source)
    return ds


def _json_problem(path: Path) -> str | None:
    """Where a JSON (Lines) file stops being valid JSON, as Python's own parser sees it: `line N: ...`."""
    with path.open("rb") as handle:
        whole = path.suffix.lower() == ".json" and handle.read(64).lstrip()[:1] == b"["
        handle.seek(0)
        for number, line in enumerate([handle.read()] if whole else handle, start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                return (f"line {number + line[: err.start].count(NEWLINE)}: not UTF-8 text; "
                        "re-encode the file as UTF-8")
            try:
                if text.strip():
                    json.loads(text)
            except json.JSONDecodeError as err:
                return (f"line {err.lineno if whole else number}: not valid JSON ({err.msg}); "
                        "fix or drop that line")
    return None


def _load(source: str, path: Path | None, split: str, config: str | None) -> Dataset:
    if path is not None and path.is_file():
        builder = DATA_FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DivsftError(f"{source}: unsupported file type; use .jsonl, .json or .parquet")
        if _is_blank(path) or (builder == "parquet" and pq.read_metadata(path).num_rows == 0):
            raise DivsftError(f"{source}: the pool has no rows")
        if builder == "json":
            _check_utf8_bytes(path, source)  # a JSON reader may quietly replace bad bytes
        return load_dataset(builder, split="train", data_files=str(path))
    if path is not None and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        saved = load_from_disk(str(path))
        if isinstance(saved, DatasetDict):
            if split not in saved:
                raise DivsftError(f"{source}: no split {split!r}; "
                                  f"choose one of {', '.join(saved)} with --split")
            return saved[split]
        return saved
    return load_dataset(str(path), config, split=split) if path else _hub_loaded(source, config, split)


def _hub_loaded(repo_id: str, config: str | None, split: str) -> Dataset:
    """A Hub dataset's split; where the engine reads files itself (Ray) and the split is Parquet files, its
    workers read the files `datasets` resolves (each node its own copy), into the same rows."""
    engine = current_engine()
    if engine.reads_shards:
        builder = load_dataset_builder(repo_id, config)
        files = [str(file) for file in (builder.config.data_files or {}).get(split, [])]
        if files and all(file.startswith("hf://") and file.lower().endswith(".parquet") for file in files):
            return engine.read_parquet(files, builder.info.features)
    return load_dataset(repo_id, config, split=split)


@contextlib.contextmanager
def quiet_if_small(source: str):
    """Silence `datasets`' logs and progress bars while it reads or maps a local input of a few MB."""
    path = Path(source).expanduser()
    if not path.exists() or _size(path) >= QUIET_BELOW:
        yield
        return
    from datasets.utils import logging as datasets_logging

    level, bars = datasets_logging.get_verbosity(), datasets_logging.is_progress_bar_enabled()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)  # it logs a failed parse as an error first
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        datasets_logging.set_verbosity(level)
        if bars:
            datasets_logging.enable_progress_bar()


def _size(path: Path) -> int:
    return (path.stat().st_size if path.is_file()
            else sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))


def _root_cause(err: BaseException) -> BaseException:
    """`datasets` wraps a parser's error ("JSON parse error ... in row 1") in a generic one, sometimes after a
    fallback parser failed too: Arrow's own error names the row, so prefer it, else the innermost."""
    chain = [err]
    while (chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    return next((e for e in chain if isinstance(e, pa.ArrowInvalid)), chain[-1])


def _check_utf8_bytes(path: Path, label: str) -> None:
    decoder, lines = codecs.getincrementaldecoder("utf-8")(), 1
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                lines += block[: err.start].count(NEWLINE)
                raise DivsftError(f"{label}: line {lines}: not UTF-8 text; "
                                  "re-encode the file as UTF-8") from None
            lines += block.count(NEWLINE)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise DivsftError(f"{label}: line {lines}: not UTF-8 text (it ends mid-character)") from None


def _is_blank(path: Path) -> bool:
    with path.open("rb") as handle:
        return not any(chunk.strip() for chunk in iter(lambda: handle.read(1 << 16), b""))


def _check_utf8(ds: Dataset, label: str) -> None:
    """Arrow's JSON reader keeps invalid UTF-8 bytes; name the first bad row before anything reads them."""
    for name, field in zip(ds.column_names, ds.features.arrow_schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        offset = 0
        for chunk in arrow_column(ds, name).chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid:
                row = offset + _first_invalid_utf8(chunk)
                raise DivsftError(f"{label}: row {row}: field '{name}' is not valid UTF-8 text; "
                                  "re-encode the file as UTF-8") from None
            offset += len(chunk)


def _first_invalid_utf8(chunk: pa.Array) -> int:
    for index, value in enumerate(chunk.cast(pa.binary()).to_pylist()):
        try:
            value is None or value.decode("utf-8")
        except UnicodeDecodeError:
            return index
    return 0


def _components(ds: Dataset, columns: PoolColumns, label: str) -> tuple[Dataset, str | None]:
    """The pool with `instruction` and `response` columns, and its conversation column if it is a chat
    pool."""
    names = set(ds.column_names)
    if columns.instruction not in names and columns.response not in names:
        for column in (columns.messages, columns.conversations):
            if column in names:
                return _from_conversations(ds, column, label), column
    ds = _rename_text_columns(ds, columns, label)
    if columns.input in ds.column_names:
        ds = _append_input(ds, columns.input, label)
    for field in COMPONENTS:
        _check_string_type(ds, field, label)
    return ds, None


def _rename_text_columns(ds: Dataset, columns: PoolColumns, label: str) -> Dataset:
    found = ", ".join(ds.column_names)
    for field in COMPONENTS:
        source = getattr(columns, field)
        if source not in ds.column_names:
            raise DivsftError(
                f"{label}: no column '{source}' for the {field} (columns: {found}); "
                f"map yours with --{field}-column NAME or provide a 'messages' column"
            )
        if source != field:
            if field in ds.column_names:
                raise DivsftError(f"{label}: both '{source}' and '{field}' exist; rename one of them")
            ds = ds.rename_column(source, field)
    return ds


def _append_input(ds: Dataset, input_column: str, label: str) -> Dataset:
    _check_string_type(ds, input_column, label)
    order = ds.column_names
    appended = add_columns(ds, InputAppended(input_column), reads=["instruction", input_column], arrow=True,
                           features=Features({APPENDED: Value("string")}),
                           desc="Appending input to instruction")
    return appended.remove_columns("instruction").rename_column(APPENDED, "instruction").select_columns(order)


class InputAppended:
    """Batched Arrow map function: each instruction with its row's input after a blank line, where the input
    holds text (Alpaca-style pools), as the new column alone."""

    def __init__(self, input_column: str):
        self.input_column = input_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        instruction, extra = batch.column("instruction"), batch.column(self.input_column)
        joined = pc.if_else(pa.array(~is_blank(extra.combine_chunks())),
                            pc.binary_join_element_wise(instruction, extra, "\n\n"), instruction)
        return pa.table({APPENDED: joined})


def _from_conversations(ds: Dataset, column: str, label: str) -> Dataset:
    fmt = chat_format(ds.features.arrow_schema.field(column).type)
    if fmt is None:
        raise DivsftError(f"{label}: column '{column}' is not a list of turns with role/content (OpenAI "
                          "messages) or from/value (ShareGPT); "
                          "map the conversation column with --messages-column")
    for name in ("instruction", "response"):
        if name in ds.column_names:
            raise DivsftError(f"{label}: both '{column}' and '{name}' exist; rename one of them")
    features = Features({"instruction": Value("string"), "response": Value("string"),
                         PROBLEM: Value("string")})
    return add_columns(ds.with_format(None), ConversationComponents(column, fmt), reads=[column], arrow=True,
                       features=features, desc="Reading conversations")


def _check_string_type(ds: Dataset, column: str, label: str) -> None:
    dtype = ds.features.arrow_schema.field(column).type
    if not (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)):
        raise DivsftError(f"{label}: column '{column}' holds {dtype}, not text; map a text column instead")


def _drop_problems(ds: Dataset, chat_column: str | None, label: str, skip: bool) -> tuple[Dataset, dict]:
    """Refuse the first unusable row (naming its position, id and problem), or skip them all and count
    them."""
    rows, reasons = _problems(ds, chat_column)
    if PROBLEM in ds.column_names:
        ds = ds.remove_columns(PROBLEM)
    if not len(rows):
        return ds, {"rows": 0, "reasons": {}}
    ids = take_rows(arrow_column(ds, "id"), rows)
    if not skip:
        raise DivsftError(f"{label}: row {rows[0]}: {reasons[0]} (id {ids[0].as_py()!r}); "
                          "fix or drop the row, or pass --skip-invalid to skip such rows")
    report: dict[str, dict] = {}
    for row_id, why in zip(ids.to_pylist(), reasons):
        entry = report.setdefault(why, {"rows": 0, "first_ids": []})
        entry["rows"] += 1
        if len(entry["first_ids"]) < 5:
            entry["first_ids"].append(row_id)
    keep = np.setdiff1d(np.arange(ds.num_rows), rows)
    if not len(keep):
        raise DivsftError(f"{label}: every row was skipped ({', '.join(report)}); "
                          "nothing is left to select from")
    return ds.select(keep), {"rows": len(rows), "reasons": report}


def _problems(ds: Dataset, chat_column: str | None) -> tuple[np.ndarray, list[str]]:
    """(sorted positions of unusable rows, why each is unusable), read a chunk at a time."""
    found: dict[int, str] = {}
    if PROBLEM in ds.column_names:
        for row, why in _chunk_rows(arrow_column(ds, PROBLEM), lambda chunk: chunk.is_valid()):
            found[row] = why
    for field in COMPONENTS if chat_column is None else ():  # chat pools: checked with the turns
        for row, _ in _chunk_rows(arrow_column(ds, field), lambda chunk: pa.array(is_blank(chunk))):
            found.setdefault(row, f"field '{field}' is empty")
    rows = np.array(sorted(found), dtype=np.int64)
    return rows, [found[row] for row in rows.tolist()]


def _chunk_rows(column: pa.ChunkedArray, flag):
    """(position, value) of each row where `flag(chunk)` is true, a chunk at a time."""
    offset = 0
    for chunk in column.chunks:
        hits = np.flatnonzero(np.asarray(flag(chunk).fill_null(False)))
        for index in hits.tolist():
            yield offset + index, chunk[index].as_py()
        offset += len(chunk)


def _ensure_ids(ds: Dataset, id_column: str, label: str) -> Dataset:
    if id_column not in ds.column_names:
        # Stable for the same input file: the row's position, `row-0000042`; built in Arrow, not per row.
        positions = pc.utf8_lpad(pc.cast(pa.array(np.arange(ds.num_rows)), pa.string()), width=7, padding="0")
        return ds.add_column("id", pc.binary_join_element_wise("row-", positions, ""))
    if id_column != "id":
        if "id" in ds.column_names:
            raise DivsftError(f"{label}: both '{id_column}' and 'id' exist; rename one of them")
        ds = ds.rename_column(id_column, "id")
    if not pa.types.is_string(ds.features.arrow_schema.field("id").type):
        ds = ds.cast_column("id", Value("string"))
    ids = arrow_column(ds, "id")
    if pc.any(pc.is_null(ids)).as_py():
        raise DivsftError(f"{label}: row {pc.index(pc.is_null(ids), True).as_py()}: field 'id' is empty")
    if pc.count_distinct(ids).as_py() != ds.num_rows:
        counts = pc.value_counts(ids)
        duplicate = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise DivsftError(
            f"{label}: field 'id' repeats the value {duplicate!r}; ids must be unique "
            "(drop the column to get generated ids)"
        )
    return ds


def pool_fingerprint(ds: Dataset) -> str:
    """Content hash of the normalised pool (ids and texts), the same on every machine."""
    digest = hashlib.sha256()
    for column in ("id", *COMPONENTS):
        for chunk in arrow_column(ds, column).chunks:
            for start in range(0, len(chunk), 10_000):
                digest.update(_terminated_texts(chunk.slice(start, 10_000)))
    return digest.hexdigest()


def _terminated_texts(texts: pa.Array) -> memoryview:
    """The UTF-8 bytes of each text followed by a NUL, back to back: read from one Arrow buffer, not
    decoded into one Python string per row."""
    joined = pc.binary_join_element_wise(texts, "", "\x00")  # text + NUL + ""
    joined = joined.cast(pa.large_string()) if pa.types.is_string(joined.type) else joined
    if not len(joined):
        return memoryview(b"")
    first = joined.offset
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)[first : first + len(joined) + 1]
    return memoryview(joined.buffers()[2])[offsets[0] : offsets[-1]]


def strip_special_tokens(text: str) -> str:
    """Text without chat/special-token markers, for embedders and taggers that would read them as words."""
    return SPECIAL_TOKEN.sub(" ", text).strip()


def arrow_column(ds: Dataset, column: str) -> pa.ChunkedArray:
    """A column as Arrow, honouring any `select`/`filter` indices (zero-copy when there are none)."""
    return ds.with_format("arrow")[column]
