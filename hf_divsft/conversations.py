"""Chat pools: each row a conversation, OpenAI `messages` (role/content) or ShareGPT `conversations`
(from/value).

A conversation's *instruction* component is its user turns and its *response* component its assistant
turns, each joined by a blank line (`"\\n\\n"`), so a single-turn conversation gives exactly its two texts.
A system turn is kept in the row but belongs to neither component. The conversation column itself is
never changed. Everything here works on Arrow arrays, a batch at a time: no Python object per turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TURN_JOIN = "\n\n"
USER, ASSISTANT, SYSTEM = 0, 1, 2


@dataclass(frozen=True)
class ChatFormat:
    """Where a conversation's turns keep their speaker and text, and what each speaker name means."""

    name: str
    role_field: str
    text_field: str
    roles: dict[str, int]


MESSAGES = ChatFormat("messages", "role", "content",
                      {"user": USER, "assistant": ASSISTANT, "system": SYSTEM, "developer": SYSTEM})
SHAREGPT = ChatFormat("sharegpt", "from", "value",
                      {"human": USER, "user": USER, "gpt": ASSISTANT, "assistant": ASSISTANT,
                       "system": SYSTEM})
PROBLEM = "_problem"  # a per-row column: why the row is not a usable conversation (null when it is)


def chat_format(column_type: pa.DataType) -> ChatFormat | None:
    """The format of a list-of-turns column, or None if its turns are not structs with a known pair of
    fields."""
    if not (pa.types.is_list(column_type) or pa.types.is_large_list(column_type)):
        return None
    turn = column_type.value_type
    if not pa.types.is_struct(turn):
        return None
    names = {turn.field(i).name for i in range(turn.num_fields)}
    return next((f for f in (MESSAGES, SHAREGPT) if {f.role_field, f.text_field} <= names), None)


class ConversationComponents:
    """Batched Arrow map function: `instruction`, `response` and `_problem` from a conversation column (the
    new columns only)."""

    def __init__(self, column: str, fmt: ChatFormat):
        self.column = column
        self.fmt = fmt

    def __call__(self, batch: pa.Table) -> pa.Table:
        conversations = batch.column(self.column).combine_chunks()
        n = len(conversations)
        turns = conversations.flatten()
        # .flatten() applies the slice offset
        fields = dict(zip((f.name for f in turns.type), turns.flatten()))
        parents = np.asarray(pc.list_parent_indices(conversations), dtype=np.int64)
        names = fields[self.fmt.role_field]
        roles = _roles(names, self.fmt)
        texts, is_text = _texts(fields[self.fmt.text_field])
        columns = {"instruction": _joined(texts, parents, (roles == USER) & is_text, n),
                   "response": _joined(texts, parents, (roles == ASSISTANT) & is_text, n)}
        problems = self._problems(conversations, parents, roles, names, is_text, columns, n)
        return pa.table({**columns, PROBLEM: problems})

    def _problems(self, conversations, parents, roles, names, is_text, columns, n) -> pa.Array:
        problems: list[str | None] = [None] * n
        found = np.zeros(n, dtype=bool)

        def note(rows_with, describe) -> None:
            for row in np.flatnonzero(rows_with & ~found):
                problems[row] = describe(row)
            found[:] |= rows_with

        note(np.asarray(conversations.is_null()), lambda row: "no conversation")
        note(_any_per_row(parents, roles < 0, n),
             lambda row: f"unknown role {_first(names, parents, roles < 0, row)!r}")
        note(_any_per_row(parents, ~is_text, n), lambda row: "a turn whose content is not text")
        note(~_any_per_row(parents, roles == USER, n), lambda row: "no user turn")
        note(~_any_per_row(parents, roles == ASSISTANT, n), lambda row: "no assistant turn")
        # checked here, while the texts are at hand, so no later pass has to read them again
        note(is_blank(columns["instruction"]), lambda row: "its user turns are empty")
        note(is_blank(columns["response"]), lambda row: "its assistant turns are empty")
        return pa.array(problems, type=pa.string())


def is_blank(texts: pa.Array) -> np.ndarray:
    """Per text: null, empty or only white space."""
    blank = pc.or_kleene(pc.is_null(texts), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0))
    return np.asarray(blank.fill_null(True))


def _roles(names: pa.Array, fmt: ChatFormat) -> np.ndarray:
    """USER, ASSISTANT or SYSTEM per turn; -1 for a speaker the format does not know."""
    codes = np.asarray(pc.index_in(names, pa.array(list(fmt.roles))).fill_null(-1), dtype=np.int64)
    return np.array(list(fmt.roles.values()) + [-1])[codes]


def _texts(contents: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(the turns' texts, whether each is text): strings as they are; `datasets`' Json columns decoded."""
    if pa.types.is_string(contents.type) or pa.types.is_large_string(contents.type):
        return contents, np.asarray(contents.is_valid())
    if isinstance(contents.type, pa.BaseExtensionType) and pa.types.is_string(contents.type.storage_type):
        values = [json.loads(v) if v is not None else None for v in contents.storage.to_pylist()]
        is_text = np.array([isinstance(v, str) for v in values], dtype=bool)
        return pa.array([v if isinstance(v, str) else None for v in values], type=pa.string()), is_text
    return pa.nulls(len(contents), pa.string()), np.zeros(len(contents), dtype=bool)


def _joined(texts: pa.Array, parents: np.ndarray, keep: np.ndarray, n: int) -> pa.Array:
    """Per row, the kept turns' texts joined by a blank line ("" for a row with none)."""
    mask = pa.array(keep)
    counts = np.bincount(parents[keep], minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), texts.filter(mask).cast(pa.string()))
    return pc.binary_join(lists, TURN_JOIN)


def _any_per_row(parents: np.ndarray, flags: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(parents[flags], minlength=n) > 0


def _first(names: pa.Array, parents: np.ndarray, flags: np.ndarray, row: int):
    return names[int(np.flatnonzero(flags & (parents == row))[0])].as_py()


def turn_counts(conversations: pa.ChunkedArray, fmt: ChatFormat) -> dict[str, int]:
    """Turns per role over a whole conversation column, a chunk at a time."""
    totals = np.zeros(3, dtype=np.int64)
    for chunk in conversations.chunks:
        turns = chunk.flatten()
        roles = _roles(dict(zip((f.name for f in turns.type), turns.flatten()))[fmt.role_field], fmt)
        totals += np.bincount(roles[roles >= 0], minlength=3)
    return {"instruction": int(totals[USER]), "response": int(totals[ASSISTANT]),
            "system": int(totals[SYSTEM])}
