"""Pool loading: every accepted source and column layout, and a clear one-line error for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from hf_divsft import DivsftError, PoolColumns, load_pool
from hf_divsft.data import pool_fingerprint

from .conftest import POOL_DIR, error_line, run_divsft


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_hub_layout_folder_loads_the_whole_shared_pool():
    pool = load_pool(str(POOL_DIR))
    assert pool.num_rows == 75_636
    assert {"id", "source", "instruction", "response"} <= set(pool.column_names)
    assert pool[0]["id"] == "t0/adversarial_qa_dbert_answer_the_following_q/0"


def test_jsonl_input_column_is_appended_and_ids_are_generated(tmp_path):
    path = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"instruction": "Translate", "input": "bonjour", "response": "hello"},
            {"instruction": "Say hi", "input": "", "response": "hi"},
        ],
    )
    pool = load_pool(str(path))
    assert pool["instruction"][:] == ["Translate\n\nbonjour", "Say hi"]
    assert pool["id"][:] == ["row-0000000", "row-0000001"]
    assert load_pool(str(path))["id"][:] == pool["id"][:]  # stable across loads


def test_chat_messages_give_every_user_turn_and_every_assistant_turn(tmp_path):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    pool = load_pool(str(write_jsonl(tmp_path / "chat.jsonl", [{"messages": messages}])))
    assert (pool[0]["instruction"], pool[0]["response"]) == ("What is 2+2?\n\nand 3+3?", "4\n\n6")
    assert "messages" in pool.column_names  # pool columns are kept


def test_column_mapping_and_parquet_and_saved_dataset(tmp_path):
    table = pa.table({"uid": ["a", "b"], "prompt": ["p1", "p2"], "completion": ["c1", "c2"]})
    pq.write_table(table, tmp_path / "pool.parquet")
    columns = PoolColumns(instruction="prompt", response="completion", id="uid")
    pool = load_pool(str(tmp_path / "pool.parquet"), columns)
    assert pool.column_names == ["id", "instruction", "response"]
    Dataset.from_dict(pool.to_dict()).save_to_disk(str(tmp_path / "saved"))
    assert load_pool(str(tmp_path / "saved"))["response"][:] == ["c1", "c2"]


def test_fingerprint_depends_on_content_only(tmp_path):
    rows = [{"id": "x", "instruction": "a", "response": "b"}]
    first = pool_fingerprint(load_pool(str(write_jsonl(tmp_path / "one.jsonl", rows))))
    again = pool_fingerprint(load_pool(str(write_jsonl(tmp_path / "two.jsonl", rows))))
    rows[0]["response"] = "c"
    other = pool_fingerprint(load_pool(str(write_jsonl(tmp_path / "three.jsonl", rows))))
    assert first == again != other


BAD_POOLS = {
    "missing file": (None, "no such file or folder"),
    "missing column": ([{"instruction": "a", "answer": "b"}], "no column 'response'"),
    "non-string column": ([{"instruction": "a", "response": 3}], "column 'response' holds int64"),
    "empty text": (
        [{"instruction": "a", "response": "b"}, {"instruction": "  ", "response": "b"}],
        "row 1: field 'instruction' is empty",
    ),
    "no rows": ([], "no rows"),
    "duplicate ids": (
        [{"id": "x", "instruction": "a", "response": "b"}, {"id": "x", "instruction": "c", "response": "d"}],
        "repeats the value 'x'",
    ),
    "chat without assistant": (
        [{"messages": [{"role": "user", "content": "hi"}]}],
        "row 0: no assistant turn",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_POOLS))
def test_bad_pool_is_one_line_error_naming_file_and_field(case, tmp_path):
    rows, expected = BAD_POOLS[case]
    path = tmp_path / "pool.jsonl"
    if rows is not None:
        write_jsonl(path, rows)
    with pytest.raises(DivsftError, match=expected.replace("(", r"\(").replace("+", r"\+")):
        load_pool(str(path))
    out = tmp_path / "out"
    result = run_divsft("build", "--pool", path, "--strategy", "response-micro", "--size", 1, "--out", out)
    assert result.returncode == 2
    message = error_line(result.stderr)
    assert message.startswith("error: ") and str(path) in message and expected in message
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"instruction": "a", "response": \n')
    with pytest.raises(DivsftError, match="broken.jsonl: line 1: not valid JSON"):
        load_pool(str(path))
