"""Chat pools: OpenAI `messages` and ShareGPT `conversations` with several turns, real pool texts in them;
malformed conversations refused, or skipped and counted; whole conversations in the subsets; the dry run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset, load_from_disk

from hf_divsft.data import read_pool

from .conftest import error_line, read_manifest, run_divsft

ROWS = 400
BUILD = ("--strategy", "response-micro", "--size", 150, "--band", "5,200", "--levels", "0,100",
         "--no-metrics")


def conversations(pool_file: Path, sharegpt: bool = False) -> list[dict]:
    """1 to 3 real instruction/response pairs per conversation, every third one opened by a system turn."""
    pool = load_dataset("parquet", data_files=str(pool_file), split="train")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(ROWS):
        picks = rng.integers(0, pool.num_rows, rng.integers(1, 4)).tolist()
        turns = [("system", "You are a helpful assistant.")] if index % 3 == 0 else []
        for pick in picks:
            turns += [("user", pool[pick]["instruction"]), ("assistant", pool[pick]["response"])]
        if sharegpt:
            names = {"system": "system", "user": "human", "assistant": "gpt"}
            conversation = [{"from": names[role], "value": text} for role, text in turns]
            rows.append({"conversations": conversation, "origin": "sharegpt"})
        else:
            conversation = [{"role": role, "content": text} for role, text in turns]
            rows.append({"id": f"chat-{index:04d}", "messages": conversation, "origin": "messages"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def chat_pool(pool_file, tmp_path_factory) -> tuple[Path, list[dict]]:
    rows = conversations(pool_file)
    return write_jsonl(tmp_path_factory.mktemp("chat") / "chat.jsonl", rows), rows


def test_components_are_each_roles_turns_joined_and_the_system_turn_belongs_to_neither(chat_pool):
    path, rows = chat_pool
    pool = read_pool(str(path))
    assert pool.chat_column == "messages" and pool.rows.num_rows == ROWS and pool.skipped["rows"] == 0
    for row, normalised in zip(rows[:30], pool.rows.select(range(30))):
        turns = row["messages"]
        assert normalised["instruction"] == "\n\n".join(t["content"] for t in turns if t["role"] == "user")
        assert normalised["response"] == "\n\n".join(t["content"] for t in turns if t["role"] == "assistant")
        assert "You are a helpful assistant." not in normalised["instruction"] + normalised["response"]
        assert normalised["messages"] == turns  # the conversation itself, unchanged


def test_sharegpt_conversations_read_the_same_way(pool_file, tmp_path):
    rows = conversations(pool_file, sharegpt=True)
    pool = read_pool(str(write_jsonl(tmp_path / "sharegpt.jsonl", rows)))
    first = rows[1]["conversations"]
    assert pool.chat_column == "conversations"
    assert pool.rows[1]["instruction"] == "\n\n".join(t["value"] for t in first if t["from"] == "human")
    assert pool.rows[1]["response"] == "\n\n".join(t["value"] for t in first if t["from"] == "gpt")
    assert pool.rows[1]["id"] == "row-0000001"


def test_a_chat_build_keeps_whole_conversations_and_every_pool_column(chat_pool, tmp_path):
    path, rows = chat_pool
    out = tmp_path / "chat-build"
    result = run_divsft("build", "--pool", path, *BUILD, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = read_manifest(out)
    assert manifest["chat_column"] == "messages" and manifest["skipped"] == {"rows": 0, "reasons": {}}
    source = {row["id"]: row for row in rows}
    for entry in manifest["levels"]:
        subset = load_from_disk(str(out / entry["config"]))
        assert subset.num_rows == 150 and {"id", "messages", "origin", "types"} <= set(subset.column_names)
        for row in subset.select(range(40)):
            assert row["messages"] == source[row["id"]]["messages"] and row["origin"] == "messages"
    multi = sum(len(row["messages"]) > 3
                for row in load_from_disk(str(out / manifest["levels"][-1]["config"])))
    assert multi > 0  # multi-turn conversations are selected whole


MALFORMED = {
    "no user turn": [{"role": "assistant", "content": "an answer nobody asked for"}],
    "no assistant turn": [{"role": "user", "content": "a question without an answer"}],
    "unknown role 'tool'": [{"role": "user", "content": "call it"}, {"role": "tool", "content": "{}"},
                            {"role": "assistant", "content": "done"}],
    "a turn whose content is not text": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                         {"role": "assistant", "content": "hello"}],
}


@pytest.fixture(scope="module")
def malformed_pool(chat_pool, tmp_path_factory) -> Path:
    _, rows = chat_pool
    bad = [{"id": f"bad-{reason.split()[1]}-{n}", "messages": messages, "origin": "bad"}
           for reason, messages in MALFORMED.items() for n in range(2)]
    return write_jsonl(tmp_path_factory.mktemp("malformed") / "malformed.jsonl", rows[:5] + bad + rows[5:])


def test_a_malformed_conversation_is_refused_in_one_line_naming_its_row_id(malformed_pool, tmp_path):
    out = tmp_path / "refused"
    result = run_divsft("build", "--pool", malformed_pool, *BUILD, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_line(result.stderr) == (
        f"error: {malformed_pool}: row 5: no user turn (id 'bad-user-0'); fix or drop the row, "
        "or pass --skip-invalid to skip such rows")
    assert not out.exists()


def test_skip_invalid_skips_them_and_the_manifest_counts_each_reason(malformed_pool, tmp_path):
    out = tmp_path / "skipped"
    result = run_divsft("build", "--pool", malformed_pool, *BUILD, "--skip-invalid", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = read_manifest(out)
    assert manifest["pool_rows"] == ROWS + 8
    assert manifest["skipped"]["rows"] == 8
    assert manifest["skipped"]["reasons"] == {
        reason: {"rows": 2, "first_ids": [f"bad-{reason.split()[1]}-0", f"bad-{reason.split()[1]}-1"]}
        for reason in MALFORMED}
    chosen = {row_id for entry in manifest["levels"]
              for row_id in load_from_disk(str(out / entry["config"]))["id"]}
    assert not any(row_id.startswith("bad-") for row_id in chosen)


def test_the_dry_run_counts_turns_and_tokens_and_writes_nothing(chat_pool, tmp_path):
    path, rows = chat_pool
    out = tmp_path / "planned"
    result = run_divsft("build", "--pool", path, *BUILD, "--dry-run", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    users = sum(turn["role"] == "user" for row in rows for turn in row["messages"])
    assistants = sum(turn["role"] == "assistant" for row in rows for turn in row["messages"])
    assert f"dry run: {path}: {ROWS:,} rows (of {ROWS:,})" in result.stdout
    assert f"instruction: {users:,} turns, about " in result.stdout
    assert f"response: {assistants:,} turns, about " in result.stdout
    assert "prune types once (Algorithm 1)" in result.stdout and "nothing was written" in result.stdout
    assert not out.exists()
