"""Load an SFT pool from anywhere `datasets` can read it and normalise it to `id`, `instruction`, `response`.

Accepted sources: a Hub dataset id, a local Hub-layout folder (README + data files), a folder written by
`Dataset.save_to_disk`, or `.jsonl` / `.json` / `.parquet` files. Columns are `instruction` + `response`
(an `input` column is appended to the instruction) or a chat `messages` column. Every other pool column
is kept, so subsets carry whatever metadata the pool had.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Value, load_dataset, load_from_disk

from .errors import DivsftError, reason

SPECIAL_TOKEN = re.compile(r"<\|[^|>]{1,40}\|>")  # e.g. the `<|endoftext|>` some sources leave in text
DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
TEXT_COLUMNS = ("instruction", "response")


@dataclass
class PoolColumns:
    """Which pool columns hold each field; the CLI's `--*-column` flags set these."""

    instruction: str = "instruction"
    response: str = "response"
    input: str = "input"
    messages: str = "messages"
    id: str = "id"


def load_pool(source: str, columns: PoolColumns | None = None, split: str = "train") -> Dataset:
    """Read `source` and return a dataset with string columns `id`, `instruction`, `response`."""
    columns = columns or PoolColumns()
    raw = _read(str(source), split)
    if raw.num_rows == 0:
        raise DivsftError(f"{source}: the pool has no rows")
    return _normalise(raw, columns, label=str(source))


def _read(source: str, split: str) -> Dataset:
    path = Path(source)
    try:
        if path.is_file():
            builder = DATA_FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DivsftError(f"{source}: unsupported file type; use .jsonl, .json or .parquet")
            if _is_blank(path):
                raise DivsftError(f"{source}: the pool has no rows")
            return load_dataset(builder, data_files=str(path), split="train")
        if path.is_dir():
            if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
                saved = load_from_disk(str(path))
                return saved[split] if isinstance(saved, DatasetDict) else saved
            return load_dataset(str(path), split=split)
        if source.startswith((".", "/", "~")) or Path(source).suffix.lower() in DATA_FILE_BUILDERS:
            raise DivsftError(f"{source}: no such file or folder")
        return load_dataset(source, split=split)
    except DivsftError:
        raise
    except Exception as err:  # datasets raises many types; the user needs the file and the reason
        raise DivsftError(f"{source}: cannot be read as a dataset ({reason(err)})") from err


def _is_blank(path: Path) -> bool:
    with path.open("rb") as handle:
        return not any(chunk.strip() for chunk in iter(lambda: handle.read(1 << 16), b""))


def _normalise(ds: Dataset, columns: PoolColumns, label: str) -> Dataset:
    names = set(ds.column_names)
    if columns.instruction not in names and columns.response not in names and columns.messages in names:
        ds = _from_messages(ds, columns.messages, label)
    else:
        ds = _rename_text_columns(ds, columns, label)
        if columns.input in ds.column_names:
            ds = _append_input(ds, columns.input, label)
    for field in TEXT_COLUMNS:
        _check_text_column(ds, field, label)
    return _ensure_ids(ds, columns.id, label)


def _rename_text_columns(ds: Dataset, columns: PoolColumns, label: str) -> Dataset:
    found = ", ".join(ds.column_names)
    for field in TEXT_COLUMNS:
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

    def join(batch: dict) -> dict:
        return {
            "instruction": [
                f"{text}\n\n{extra}" if extra and extra.strip() else text
                for text, extra in zip(batch["instruction"], batch[input_column])
            ]
        }

    return ds.map(join, batched=True, desc="Appending input to instruction")


def _from_messages(ds: Dataset, messages_column: str, label: str) -> Dataset:
    def first_turns(batch: dict, indices: list[int]) -> dict:
        out = {"instruction": [], "response": []}
        for index, messages in zip(indices, batch[messages_column]):
            turns = {}
            for message in messages or []:
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    turns.setdefault(message.get("role"), message["content"])
            for role, field in (("user", "instruction"), ("assistant", "response")):
                if role not in turns:
                    raise DivsftError(
                        f"{label}: row {index}: field '{messages_column}' has no {role} turn "
                        "(expected a list of {'role', 'content'} with a user and an assistant turn)"
                    )
                out[field].append(turns[role])
        return out

    return ds.map(first_turns, batched=True, with_indices=True, desc="Reading chat messages")


def _check_string_type(ds: Dataset, column: str, label: str) -> None:
    dtype = ds.features.arrow_schema.field(column).type
    if not (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)):
        raise DivsftError(f"{label}: column '{column}' holds {dtype}, not text; map a text column instead")


def _check_text_column(ds: Dataset, column: str, label: str) -> None:
    _check_string_type(ds, column, label)
    values = arrow_column(ds, column)
    empty = pc.or_kleene(pc.is_null(values), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0))
    if pc.any(empty).as_py():
        row = pc.index(empty, True).as_py()
        raise DivsftError(f"{label}: row {row}: field '{column}' is empty; drop or fill such rows first")


def _ensure_ids(ds: Dataset, id_column: str, label: str) -> Dataset:
    if id_column not in ds.column_names:
        # Stable for the same input file: the row's position.
        return ds.add_column("id", [f"row-{index:07d}" for index in range(ds.num_rows)])
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
    for column in ("id", *TEXT_COLUMNS):
        for chunk in arrow_column(ds, column).chunks:
            for text in chunk.to_pylist():
                digest.update(text.encode("utf-8"))
                digest.update(b"\x00")
    return digest.hexdigest()


def ids_sha256(ds: Dataset) -> str:
    """The digest a manifest records for a subset: sha256 of its ids, one per line, in row order."""
    ids = arrow_column(ds, "id").to_pylist()
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def strip_special_tokens(text: str) -> str:
    """Text without chat/special-token markers, for embedders and taggers that would read them as words."""
    return SPECIAL_TOKEN.sub(" ", text).strip()


def arrow_column(ds: Dataset, column: str) -> pa.ChunkedArray:
    """A column as Arrow, honouring any `select`/`filter` indices (zero-copy when there are none)."""
    return ds.with_format("arrow")[column]
