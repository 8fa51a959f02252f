"""Property-based refusals of bad input, for every `divsft` subcommand (issue 16).

"Bad input gets a clear message naming the file, row or field and what to do, a non-zero exit, and no
half-written output", and "no command may delete or overwrite anything but its own earlier output, and
only with --overwrite". For every generated bad input each test checks the whole contract:

* exit code 2 and no uncaught exception (a SystemExit is how the CLI exits);
* stderr is exactly one non-empty line starting with `error: ` (validation comes before any work, so
  there is no progress bar either), it names the option, file or path at fault, and nothing is printed
  anywhere as a "Traceback"; stdout stays empty;
* every output path is as it was (absent stays absent, an existing file or folder is byte-for-byte
  unchanged) and the folder that would have held it gains no entry (no `.*.partial` staging folder,
  no `.divsft-probe-*` file, nothing else);
* every input file and folder is byte-for-byte unchanged (a hash of the whole tree, names included).

The classes of bad input are fixed per test and hypothesis varies the examples: bad option values,
bad files of each format (pools, YAML configs, build folders, eval runs, measure reports, training
records) and bad output locations. The CLI runs in-process (`typer.testing.CliRunner`); a few examples
also run through the installed console script to show the in-process results hold for it.
Each example's base arguments are otherwise valid and tiny, so a bad input the CLI wrongly accepts
shows up as a run that exits 0 or writes output, never as a silent pass.

The module counts the inputs it generates per command and prints a table at its end (`pytest -s`),
also written to `cli_properties_counts.json` in pytest's base temporary folder.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.resources
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hf_divsft.cli import app

from . import factories
from .conftest import REPO, SHARED, run_divsft

EVAL_SET = SHARED / "data" / "sft-eval"
SMOKE_RECIPE = REPO / "recipes" / "smollm2-135m" / "sft" / "config_smoke.yaml"
STRATEGY = "response-micro"

# Shrinking is off: every example runs the real CLI, and the failure is reported as first found (the
# test ids and the drawn values say which class and value). No example database is written, and the
# examples are the same on every run (derandomize), so a test for a bug fails until the bug is fixed;
# set derandomize=False here to explore new examples on each run.
PROPS = settings(max_examples=20, deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
                 derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                        HealthCheck.data_too_large, HealthCheck.filter_too_much])

COUNTS: collections.Counter = collections.Counter()  # command -> inputs generated
CLASSES: collections.Counter = collections.Counter()  # (command, class of bad input) -> inputs generated


# -- running the CLI ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


class _CurrentStderr:
    """A logging stream that writes to whatever `sys.stderr` is at the time (CliRunner swaps it per call)."""

    name = "<stderr>"

    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        with contextlib.suppress(ValueError):
            sys.stderr.flush()


def _follow_stderr() -> None:
    """Library loggers (datasets, transformers) keep the stderr of the first call; point them at the current
    one.

    In a real process their messages land on stderr, so in-process they must land in the captured stderr
    too, instead of failing on a closed stream of an earlier call.
    """
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if (type(handler) is logging.StreamHandler and getattr(handler.stream, "name", None) == "<stderr>"
                    and not isinstance(handler.stream, _CurrentStderr)):
                handler.stream = _CurrentStderr()


def command_of(args) -> str:
    words = [str(a) for a in args]
    if not words:
        return "divsft"
    return f"recipes {words[1]}" if words[0] == "recipes" and len(words) > 1 else words[0]


EXAMPLE_CPU_SECONDS = 20  # a refusal takes well under a second (libraries are imported up front)


class ExampleTookTooLong(BaseException):
    """Raised in an in-process run that went on working (a bad input was accepted); BaseException so no
    `except Exception` in the library swallows it."""


def _too_long(signum, frame):
    raise ExampleTookTooLong(f"still running after {EXAMPLE_CPU_SECONDS} s of CPU: the input was not refused")


def in_process(args, cwd: Path | None = None) -> Outcome:
    _follow_stderr()
    previous = signal.signal(signal.SIGPROF, _too_long)  # CPU time: SIGALRM stays pytest-timeout's
    signal.setitimer(signal.ITIMER_PROF, EXAMPLE_CPU_SECONDS)
    try:
        with contextlib.chdir(cwd) if cwd else contextlib.nullcontext():
            result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
    return Outcome(result.exit_code, result.stdout, result.stderr, result.exception)


def console_script(args, cwd: Path | None = None) -> Outcome:
    done = run_divsft(*args, cwd=cwd)
    return Outcome(done.returncode, done.stdout, done.stderr)


# -- what a refusal must leave behind -------------------------------------------------------------------
def tree_digest(path: Path) -> str:
    """sha256 over a file or a whole folder tree: relative names, kinds, modes, link targets and contents."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return "absent"
    digest = hashlib.sha256()

    def add(item: Path, name: str) -> None:
        info = item.lstat()
        digest.update(f"{name}\0{info.st_mode:o}\0".encode("utf-8", "surrogateescape"))
        if item.is_symlink():
            digest.update(os.readlink(item).encode("utf-8", "surrogateescape"))
        elif item.is_file():
            digest.update(hashlib.sha256(item.read_bytes()).digest())
        digest.update(b"\n")

    add(path, ".")
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs + files):
                item = Path(root, name)
                add(item, item.relative_to(path).as_posix())
    return digest.hexdigest()


def nearest_folder(path: Path) -> Path:
    """The nearest existing folder at or above `path` (where a new output, or its staging folder, would
    go)."""
    path = Path(os.path.abspath(path))
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


@dataclass
class Case:
    """One generated command line and what it reads and would write."""

    args: list
    inputs: list = field(default_factory=list)  # files and folders that must stay byte-for-byte unchanged
    outputs: list = field(default_factory=list)  # output paths: absent stays absent, existing stays unchanged
    named: tuple = ()  # the error line must contain one of these (the option, file or path at fault)
    mentions: tuple = ()  # ... and one of these (what is wrong, e.g. the row), where the class calls for it
    cwd: Path | None = None
    label: str = ""  # the class of bad input, for the summary
    command: str = ""  # counted under this command (default: the subcommand in `args`)


def check_refused(case: Case, root: Path, runner=in_process) -> Outcome:
    """Run `case` and assert every part of the refusal contract; returns the outcome."""
    command = case.command or command_of(case.args)
    COUNTS[command] += 1
    CLASSES[(command, case.label)] += 1
    outputs = [Path(case.cwd or ".", p) for p in case.outputs]
    inputs = [Path(case.cwd or ".", p) for p in case.inputs]
    watched = {nearest_folder(p.parent if p.exists() or p.is_symlink() else p) for p in outputs}
    watched = {folder for folder in watched if folder.is_relative_to(root)}  # not /proc or /etc
    if case.cwd:
        watched.add(Path(case.cwd))
    before_inputs = {p: tree_digest(p) for p in inputs}
    before_outputs = {p: tree_digest(p) for p in outputs}
    before_listing = {folder: sorted(os.listdir(folder)) for folder in watched}

    outcome = runner(case.args, cwd=case.cwd)

    problems = []
    if outcome.exit_code != 2:
        problems.append(f"exit code {outcome.exit_code}, expected 2")
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        problems.append(f"uncaught {type(outcome.exception).__name__}: {outcome.exception}")
    err = outcome.stderr
    if "Traceback" in err or "Traceback" in outcome.stdout:
        problems.append("a traceback was printed")
    if not (err.endswith("\n") and err.count("\n") == 1 and "\r" not in err):
        problems.append(f"stderr is not exactly one line ({err.count(chr(10))} newlines, "
                        f"{err.count(chr(13))} carriage returns)")
    error_lines = [line for line in err.replace("\r", "\n").split("\n") if line.startswith("error: ")]
    line = error_lines[-1] if error_lines else err.rstrip("\n").rsplit("\n", 1)[-1]
    if not line.startswith("error: ") or not line[len("error: "):].strip():
        problems.append("no line starting with 'error: ' and a message")
    elif case.named and not any(str(name) in line for name in case.named):
        problems.append(f"the error line names none of {[str(n) for n in case.named]}")
    elif case.mentions and not any(word in line.lower() for word in case.mentions):
        problems.append(f"the error line says none of {list(case.mentions)}")
    if outcome.stdout.strip():
        problems.append(f"stdout is not empty: {outcome.stdout[-300:]!r}")
    for path, digest in before_inputs.items():
        if tree_digest(path) != digest:
            problems.append(f"input {path} was changed")
    for path, digest in before_outputs.items():
        if tree_digest(path) != digest:
            problems.append(f"output {path} was {'created' if digest == 'absent' else 'changed or removed'}")
    for folder, names in before_listing.items():
        now = sorted(os.listdir(folder)) if folder.is_dir() else []
        if now != names:
            added, gone = sorted(set(now) - set(names)), sorted(set(names) - set(now))
            problems.append(f"{folder} changed: added {added}, removed {gone}")
    if problems:
        shown = " ".join(shlex_quote(a) for a in case.args)
        raise AssertionError(
            f"`divsft {shown}` (cwd {case.cwd}) [{case.label}] broke the refusal contract:\n  - "
            + "\n  - ".join(problems)
            + f"\n  exit code: {outcome.exit_code}\n  stderr: {err[-1500:]!r}"
              f"\n  stdout: {outcome.stdout[-500:]!r}"
        )
    return outcome


def shlex_quote(arg) -> str:
    import shlex

    return shlex.quote(str(arg))


# -- strategies for the values --------------------------------------------------------------------------
ARG_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
ARG_TEXT = st.text(ARG_CHARS, max_size=12)
NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1,
               max_size=10).filter(lambda s: s[0] != "-")


def _parses(kind, text: str) -> bool:
    try:
        kind(text)
    except (ValueError, OverflowError):
        return False
    return True


def _not_an_integer(text: str) -> bool:
    """No reading of `text` gives a whole number (the CLI's parser takes "5.0" and " 5" as 5, so those are
    out)."""
    if _parses(int, text):
        return False
    try:
        number = float(text)
    except (ValueError, OverflowError):
        return True
    return not (math.isfinite(number) and number.is_integer())


NON_INT = st.one_of(
    st.sampled_from(["", " ", "ten", "1.5", "0x10", "1,000", "--", "½", "1 2", "nan", "inf", "+", "-",
                     "3rd"]),
    ARG_TEXT.filter(_not_an_integer),
    st.floats().map(repr).filter(_not_an_integer),
)
NON_FLOAT = st.one_of(st.sampled_from(["", "high", "0,5", "1/2", "0.5.1", "--", "½"]),
                      ARG_TEXT.filter(lambda s: not _parses(float, s)))


def bad_int(low: int, high: int | None = None):
    """Text that is not a whole number in [low, high]: below, above, or no integer at all."""
    options = [st.integers(max_value=low - 1).map(str), NON_INT]
    if high is not None:
        options.append(st.integers(min_value=high + 1).map(str))
    return st.one_of(options)


BAD_FRACTION = st.one_of(  # outside (0, 1]
    st.floats(max_value=0.0).map(repr),
    st.floats(min_value=1.0, exclude_min=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "0", "-0.0", "1.0000001", "1e-400"]),
    NON_FLOAT,
)


def junk_word(valid) -> st.SearchStrategy[str]:
    """One list item that is not a valid choice (after the CLI strips it); no comma inside."""
    return ARG_TEXT.map(lambda s: s.replace(",", "")).filter(lambda s: s.strip() and s.strip() not in valid)


def bad_choice(valid) -> st.SearchStrategy[str]:
    near = st.sampled_from(valid).flatmap(
        lambda v: st.sampled_from([v.upper(), v.title(), f" {v}", f"{v}x", v[:-1], v.replace("-", "_"),
                                   f"{v}\n"]))
    return st.one_of(near.filter(lambda s: s not in valid), ARG_TEXT.filter(lambda s: s not in valid))


def bad_word_list(valid) -> st.SearchStrategy[str]:
    """A comma-separated list with at least one item that is no valid choice, or no item at all."""
    with_junk = st.tuples(st.lists(st.sampled_from(valid), max_size=2), junk_word(valid), st.randoms()).map(
        lambda t: ",".join(t[2].sample(t[0] + [t[1]], len(t[0]) + 1)))
    empty = st.sampled_from(["", ",", " , ", ",,"])
    return st.one_of(with_junk, empty)


def int_list_with(bad_item) -> st.SearchStrategy[str]:
    return st.tuples(st.lists(st.integers(0, 100).map(str), max_size=3), bad_item, st.randoms()).map(
        lambda t: ",".join(t[2].sample(t[0] + [t[1]], len(t[0]) + 1)))


NOT_A_LEVEL = st.one_of(st.integers(max_value=-1).map(str), st.integers(min_value=101).map(str),
                        junk_word(()).filter(_not_an_integer))
REPEATED_LEVELS = st.lists(st.integers(0, 100), min_size=1, max_size=4).flatmap(
    lambda levels: st.permutations(levels + [levels[0]])).map(lambda levels: ",".join(map(str, levels)))
BAD_LEVELS = st.one_of(REPEATED_LEVELS, int_list_with(NOT_A_LEVEL), st.sampled_from(["", ",", " ", ", ,"]))


def bad_pair(allow_equal: bool) -> st.SearchStrategy[str]:
    """Not two whole numbers LOW,HIGH with 0 <= LOW < HIGH (or <= when `allow_equal`)."""
    ints = st.integers(-10**6, 10**6)
    wrong_count = st.lists(ints.map(str), max_size=5).filter(lambda items: len(items) != 2).map(",".join)
    reversed_ = st.tuples(ints, ints).filter(lambda p: p[0] > p[1] or (p[0] == p[1] and not allow_equal))
    negative = st.tuples(st.integers(max_value=-1), ints)
    not_numbers = st.tuples(st.one_of(ints.map(str), junk_word(()).filter(_not_an_integer)),
                            junk_word(()).filter(_not_an_integer)).flatmap(st.permutations)
    return st.one_of(wrong_count, reversed_.map(lambda p: f"{p[0]},{p[1]}"),
                     negative.map(lambda p: f"{p[0]},{p[1]}"), not_numbers.map(",".join))


ASCII_SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
BAD_VERSION = st.one_of(
    st.sampled_from(["01.0.0", "1.0", "v1.0.0", "1.0.0-rc", "1.0.0+build", "1.0.0.0", "", "1..0", " 1.0.0",
                     "1.00.0"]),
    st.lists(st.text("0123456789", min_size=1, max_size=3), min_size=1, max_size=5).map(".".join),
    st.tuples(st.sampled_from(["", "v", "V", "=", " "]), st.integers(0, 20), st.integers(0, 20),
              st.integers(0, 20), st.sampled_from(["", "-rc1", "-alpha", "+x", " ", ".0", "\n"]))
      .map(lambda t: f"{t[0]}{t[1]}.{t[2]}.{t[3]}{t[4]}"),
    st.text("0123456789.v-", max_size=10),
    ARG_TEXT,
).filter(lambda v: not ASCII_SEMVER.fullmatch(v))

REPO_PART = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
BAD_REPO = st.one_of(
    st.sampled_from(["../..", "a/b/c", "-x/y", "a..b/c", "", "/", "a/", "/b", "a/b/", "a b/c", "a/b c", "-/-",
                     "./x", "x/.", "a--b/c", "a/b--c", "a/.b", "a/b.", "name"]),
    REPO_PART,  # no namespace: the command needs ORG/NAME
    st.lists(REPO_PART, min_size=3, max_size=5).map("/".join),  # too many parts
    st.tuples(REPO_PART, REPO_PART, st.sampled_from(list(" @#$%^&*()+=[]{}|\\:;\"'<>,?!~`")),
              st.integers(0, 8), st.booleans())
      .map(lambda t: (t[0][:t[3]] + t[2] + t[0][t[3]:] + "/" + t[1]) if t[4]
           else (t[0] + "/" + t[1][:t[3]] + t[2] + t[1][t[3]:])),
    st.tuples(REPO_PART, REPO_PART, st.sampled_from(["-", ".", "--", "..", "_-", "-."]),
              st.sampled_from("abcd"))
      .map(lambda t: {"a": f"{t[2]}{t[0]}/{t[1]}", "b": f"{t[0]}{t[2]}/{t[1]}", "c": f"{t[0]}/{t[1]}{t[2]}",
                      "d": f"{t[0]}/{t[2]}{t[1]}"}[t[3]]).filter(lambda r: not _hub_valid(r)),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_./", max_size=12).filter(lambda r: not _hub_valid(r)),
)

_HUB_PART = re.compile(r"[A-Za-z0-9_.\-]{1,96}")


def _hub_valid(repo: str) -> bool:
    """ORG/NAME by the Hub's published rules (our own oracle, not the product's check)."""
    parts = repo.split("/")
    if len(parts) != 2:
        return False
    return all(_HUB_PART.fullmatch(p) and p[0] not in "-." and p[-1] not in "-." and "--" not in p
               and ".." not in p and not p.endswith(".git") for p in parts)


# -- valid files to start from ----------------------------------------------------------------------------
def png_with_software(software: bytes = b"hf-divsft plot") -> bytes:
    """A 1x1 PNG whose text chunk names `divsft plot` as its software (how plot knows its own output)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"tEXt", b"Software\x00" + software) + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
            + chunk(b"IEND", b""))


def level_report(build: Path) -> dict:
    """A `divsft measure` report of a build folder, from its manifest (what plot reads)."""
    manifest = json.loads((build / "manifest.json").read_text())
    return {"source": str(build), "settings": manifest["metrics_settings"],
            "hf_divsft_version": manifest["hf_divsft_version"], "strategy": manifest["strategy"],
            "levels": [{"level": e["level"], "config": e["config"], "metrics": e["metrics"]}
                       for e in manifest["levels"]]}


def write_run(folder: Path, build: Path) -> Path:
    """A valid `divsft eval` folder of a model trained on the build's last level."""
    manifest = json.loads((build / "manifest.json").read_text())
    entry = manifest["levels"][-1]
    subset = {"source": str(build), "config": entry["config"], "strategy": manifest["strategy"],
              "level": entry["level"], "ids_sha256": entry["ids_sha256"], "num_rows": entry["num_rows"]}
    factories.write_json(folder / "summary.json", factories.summary(1.5, subset))
    (folder / "generations.jsonl").write_text(json.dumps(
        {"id": "p1", "config": "alpaca_eval", "instruction": "Say hi", "reference": "Hi", "output": "Hello",
         "tokens": 2}) + "\n")
    (folder / "judgments.jsonl").write_text(json.dumps({"id": "p1", "nll_sum": 3.25, "tokens": 2}) + "\n")
    return folder


class Rows(list):
    """Real pool rows; printed short in hypothesis's reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} pool rows>"


@dataclass(repr=False)
class World:
    root: Path
    rows: list  # real pool rows: id, source, instruction, response
    small_pool: Path  # 600 real rows (parquet)
    tiny_pool: Path  # 30 real rows (jsonl)
    build: Path  # a real response-micro build, levels 0 and 100 (read-only: copy it to vary it)
    _ids: itertools.count = field(default_factory=itertools.count)

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"World({self.root})"

    def scratch(self, label: str) -> Path:
        folder = self.root / f"{label}-{next(self._ids):05d}"
        folder.mkdir()
        return folder

    def copy_build(self, dest: Path) -> Path:
        shutil.copytree(self.build, dest, symlinks=True)
        return dest

    def run_folder(self, dest: Path, build: Path | None = None) -> Path:
        return write_run(dest, build or self.build)

    def yaml_recipe(self, build: Path, output_dir: Path, **changes) -> dict:
        recipe = yaml.safe_load(SMOKE_RECIPE.read_text())
        recipe.update(dataset=str(build), dataset_config="response_micro_d100", output_dir=str(output_dir),
                      max_samples=2, max_steps=1)
        recipe.update(changes)
        return recipe


def _import_what_the_commands_import() -> None:
    """Import once what the commands import lazily, so that no example pays for an import (see the
    watchdog)."""
    import matplotlib.pyplot  # noqa: F401
    import peft  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    import hf_divsft.analysis
    import hf_divsft.demo
    import hf_divsft.evaluation.run
    import hf_divsft.publish
    import hf_divsft.train  # noqa: F401
    from hf_divsft.embedding import load_embedder
    from hf_divsft.train import parse_args

    load_embedder("minilm-static")
    with contextlib.suppress(Exception):
        parse_args(["--help-is-not-given", "x"])  # builds TRL's parser once


@pytest.fixture(scope="module")
def world(tmp_path_factory, pool_file) -> World:
    import pyarrow.parquet as pq

    from hf_divsft import BuildConfig, build

    root = tmp_path_factory.mktemp("cli-properties")
    table = pq.read_table(pool_file).slice(0, 600)
    small_pool = root / "pool-600.parquet"
    pq.write_table(table, small_pool)
    rows = Rows(table.slice(0, 60).to_pylist())
    tiny_pool = root / "pool-30.jsonl"
    tiny_pool.write_text("".join(json.dumps(row) + "\n" for row in rows[:30]))
    _import_what_the_commands_import()
    real_build = root / "real-build"
    build(BuildConfig(pool=str(small_pool), strategy=STRATEGY, out=str(real_build), levels=[0, 100], size=20,
                      band=(3, 100)))
    return World(root, rows, small_pool, tiny_pool, real_build)


@pytest.fixture(scope="module", autouse=True)
def example_counts(tmp_path_factory):
    """Prints (with `pytest -s`) and writes how many inputs were generated per command."""
    start = time.monotonic()
    yield
    seconds = time.monotonic() - start
    total = sum(COUNTS.values())
    lines = ["", f"{total} inputs generated over {len(COUNTS)} commands in {seconds:.0f} s:",
             f"  {'command':<16}{'inputs':>8}"]
    lines += [f"  {command:<16}{n:>8}" for command, n in sorted(COUNTS.items())]
    lines += ["  by class of bad input:"]
    lines += [f"    {command:<16}{label:<36}{n:>6}" for (command, label), n in sorted(CLASSES.items())]
    print("\n".join(lines))
    report = {"total": total, "commands": len(COUNTS), "seconds": round(seconds, 1),
              "per_command": dict(COUNTS),
              "per_class": {f"{command}: {label}": n for (command, label), n in sorted(CLASSES.items())}}
    path = tmp_path_factory.getbasetemp() / "cli_properties_counts.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"  written to {path}")


@pytest.fixture(scope="module", autouse=True)
def shared_digests():
    """The shared data and the repository's recipes, hashed before the module's examples."""
    return {path: tree_digest(path) for path in (SHARED / "data", REPO / "recipes")}


# -- base command lines: valid and tiny, so that only the generated part is bad ------------------------
@dataclass
class Base:
    command: list  # e.g. ["recipes", "copy"]
    positionals: list
    options: dict  # flag -> value (None for a bare flag)
    inputs: list
    outputs: list
    cwd: Path | None = None

    def args(self, **override) -> list:
        options = {**self.options, **override}
        flat = [part for flag, value in options.items() if value is not False
                for part in ([flag] if value is None else [flag, str(value)])]
        return [*self.command, *map(str, self.positionals), *flat]


def base(command: str, w: World, s: Path) -> Base:
    """The command with valid, tiny arguments in scratch folder `s` (its output paths do not exist yet)."""
    if command == "build":
        return Base(["build"], [], {"--pool": w.small_pool, "--strategy": STRATEGY, "--out": s / "out",
                                    "--tokenizer": "whitespace", "--no-metrics": None, "--band": "1,100",
                                    "--size": 5, "--levels": "0,100"}, [w.small_pool], [s / "out"])
    if command == "measure":
        return Base(["measure"], [w.tiny_pool], {"--out": s / "out.json", "--tokenizer": "whitespace"},
                    [w.tiny_pool], [s / "out.json"])
    if command == "plot":
        build = w.copy_build(s / "build")
        return Base(["plot"], [build], {"--out": s / "out.png"}, [build], [s / "out.png"])
    if command == "publish":
        build = w.copy_build(s / "build")
        return Base(["publish"], [build], {"--repo": "my-org/sft-diversity", "--version": "1.0.0",
                                           "--hub-dir": s / "hub"}, [build], [s / "hub"])
    if command == "eval":
        return Base(["eval"], [], {"--out": s / "out", "--eval-set": EVAL_SET, "--limit": 1,
                                   "--max-new-tokens": 1, "--batch-size": 1}, [EVAL_SET], [s / "out"])
    if command == "analyze":
        build = w.copy_build(s / "build")
        run = w.run_folder(s / "run", build)
        return Base(["analyze"], [run], {"--out": s / "out"}, [run, build], [s / "out"])
    if command == "demo-results":
        return Base(["demo-results"], [], {"--out": s / "out", "--pool": w.small_pool,
                                           "--eval-set": EVAL_SET, "--pool-rows": 200, "--size": 4,
                                           "--prompts": 1, "--train-steps": 1, "--max-new-tokens": 1},
                    [w.small_pool, EVAL_SET], [s / "out"])
    if command == "train":
        build = w.copy_build(s / "build")
        return Base(["train"], [], {"--config": SMOKE_RECIPE, "--dataset": build,
                                    "--dataset_config": "response_micro_d100", "--output_dir": s / "out",
                                    "--max_steps": 1, "--max_samples": 2}, [build, SMOKE_RECIPE], [s / "out"])
    if command == "experiment":  # its builds only: the cheapest stage that writes
        spec = s / "experiment.yaml"
        spec.write_text(json.dumps({"pool": str(w.small_pool), "strategies": [STRATEGY], "levels": [0, 100],
                                    "size": 5, "train": {"recipe": str(SMOKE_RECIPE)},
                                    "build": {"tokenizer": "whitespace", "metrics": False, "band": [1, 100]}}))
        return Base(["experiment"], [spec], {"--out": s / "out", "--only": "build"}, [spec, w.small_pool],
                    [s / "out"])
    if command == "recipes copy":
        return Base(["recipes", "copy"], [s / "recipes"], {}, [], [s / "recipes"])
    if command == "recipes list":
        return Base(["recipes", "list"], [], {}, [], [])
    raise ValueError(command)


def refuse(w: World, b: Base, label: str, named=(), extra_inputs=(), extra_outputs=(), cwd=None,
           runner=in_process, args=None, mentions=(), **override) -> Outcome:
    case = Case(args if args is not None else b.args(**override), inputs=[*b.inputs, *extra_inputs],
                outputs=[*b.outputs, *extra_outputs], named=tuple(named), cwd=cwd or b.cwd, label=label,
                mentions=tuple(mentions))
    return check_refused(case, w.root, runner)


@contextlib.contextmanager
def scratch(w: World, label: str):
    """A fresh folder per example; removed when the example passed, kept to look at when it failed."""
    folder = w.scratch(label)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# == 1. bad option values ===============================================================================
INT_OPTIONS = {  # flag -> (lowest valid, highest valid or None), as documented in the README and --help
    "build": {"--size": (1, None), "--seed": (0, None), "--num-proc": (1, None), "--tag-alpha": (1, None),
              "--min-cluster-size": (2, None), "--umap-epochs": (0, None)},
    "measure": {"--max-n": (1, 8), "--self-bleu-sample": (0, None), "--seed": (0, None),
                "--num-proc": (1, None)},
    "eval": {"--limit": (1, None), "--batch-size": (1, None), "--seed": (0, None),
             "--max-new-tokens": (1, None), "--judge-max-tokens": (1, None), "--judge-retries": (0, None)},
    "demo-results": {"--pool-rows": (1, None), "--size": (1, None), "--prompts": (1, None),
                     "--train-steps": (1, None), "--max-new-tokens": (1, None), "--seed": (0, None)},
}


@pytest.mark.parametrize("command", sorted(INT_OPTIONS))
@settings(PROPS, max_examples=45)
@given(data=st.data())
def test_bad_integer_option_is_refused(world, command, data):
    flag = data.draw(st.sampled_from(sorted(INT_OPTIONS[command])), label="flag")
    value = data.draw(bad_int(*INT_OPTIONS[command][flag]), label="value")
    with scratch(world, "int") as s:
        refuse(world, base(command, world, s), "integer option", named=[flag], **{flag: value})


@settings(PROPS, max_examples=30)
@given(flag=st.sampled_from(["--tag-similarity", "--tag-association"]), value=BAD_FRACTION)
def test_bad_fraction_option_is_refused(world, flag, value):
    with scratch(world, "float") as s:
        refuse(world, base("build", world, s), "fraction outside (0, 1]", named=[flag], **{flag: value})


CHOICES = {
    "build": {"--strategy": ["instruction-macro", "instruction-meso", "instruction-micro", "response-macro",
                             "response-meso", "response-micro"],
              "--frequency": ["occurrences", "samples"], "--noise": ["drop", "type"],
              "--tagger": ["spacy", "openai", "transformers"]},
    "measure": {"--components": ["instruction", "response"]},
    "eval": {"--judge": ["reference-nll", "pairwise"], "--configs": ["alpaca_eval", "arena_hard"]},
}
LIST_CHOICES = {"--components", "--configs"}


@pytest.mark.parametrize("command", sorted(CHOICES))
@settings(PROPS, max_examples=30)
@given(data=st.data())
def test_bad_choice_is_refused(world, command, data):
    flag = data.draw(st.sampled_from(sorted(CHOICES[command])), label="flag")
    valid = CHOICES[command][flag]
    value = data.draw(bad_word_list(valid) if flag in LIST_CHOICES else bad_choice(valid), label="value")
    with scratch(world, "choice") as s:
        refuse(world, base(command, world, s), "choice option", named=[flag], **{flag: value})


@settings(PROPS, max_examples=20)
@given(configs=st.lists(st.sampled_from(["alpaca_eval", "arena_hard"]), min_size=2, max_size=4).filter(
    lambda items: len(set(items)) < len(items)))
def test_eval_configs_given_twice_are_refused(world, configs):
    with scratch(world, "configs") as s:
        refuse(world, base("eval", world, s), "repeated eval config", named=["--configs"],
               **{"--configs": ",".join(configs)})


LIST_OPTIONS = {"build": {"--levels": BAD_LEVELS, "--band": bad_pair(allow_equal=False),
                          "--response-tokens": bad_pair(allow_equal=True)},
                # demo: >= 2 levels
                "demo-results": {"--levels": st.one_of(BAD_LEVELS, st.integers(0, 100).map(str))}}


@pytest.mark.parametrize("command", sorted(LIST_OPTIONS))
@settings(PROPS, max_examples=45)
@given(data=st.data())
def test_bad_list_option_is_refused(world, command, data):
    flag = data.draw(st.sampled_from(sorted(LIST_OPTIONS[command])), label="flag")
    value = data.draw(LIST_OPTIONS[command][flag], label="value")
    with scratch(world, "list") as s:
        refuse(world, base(command, world, s), "list option", named=[flag], **{flag: value})


@settings(PROPS, max_examples=20)
@given(data=st.data())
def test_llm_tagger_or_judge_without_its_model_is_refused(world, data):
    command = data.draw(st.sampled_from(["build", "eval"]), label="command")
    model = data.draw(st.sampled_from([False, ""]), label="model flag (False: not given)")
    url = data.draw(st.sampled_from([False, "http://127.0.0.1:9/v1"]), label="base url")
    with scratch(world, "llm") as s:
        if command == "build":
            tagger = data.draw(st.sampled_from(["openai", "transformers"]), label="tagger")
            refuse(world, base("build", world, s), "LLM tagger without --tagger-model", named=["--tagger"],
                   **{"--strategy": "response-meso", "--tagger": tagger, "--tagger-model": model,
                      "--base-url": url})
        else:
            refuse(world, base("eval", world, s), "pairwise judge without --judge-model", named=["--judge"],
                   **{"--judge": "pairwise", "--judge-model": model, "--judge-base-url": url})


def _commands():
    """(name, click command) of every command that runs, `recipes list` and `recipes copy` included."""
    import typer.main

    for name, command in typer.main.get_command(app).commands.items():
        subcommands = command.commands.items() if name == "recipes" else [(None, command)]
        for sub, cmd in subcommands:
            yield (f"recipes {sub}" if sub else name), cmd


# every command's own options, so a generated unknown one surely is unknown
KNOWN_OPTIONS = {name: {opt for p in cmd.params for opt in (*p.opts, *getattr(p, "secondary_opts", ()))}
                 | {"--help"} for name, cmd in _commands()}
ALL_COMMANDS = ["build", "measure", "plot", "publish", "eval", "analyze", "demo-results", "train",
                "experiment", "recipes copy", "recipes list"]
UNKNOWN_FLAG = st.from_regex(r"--[a-z][a-z0-9-]{0,14}", fullmatch=True)


@pytest.mark.parametrize("command", ALL_COMMANDS)
@settings(PROPS, max_examples=15)
@given(data=st.data())
def test_unknown_option_or_extra_argument_is_refused(world, command, data):
    with scratch(world, "unknown") as s:
        b = base(command, world, s)
        if command == "train":  # argparse accepts unique prefixes: "--zq..." begins no TRL option
            flag = data.draw(st.from_regex(r"--zq[a-z_]{0,12}", fullmatch=True), label="flag")
        else:
            flag = data.draw(UNKNOWN_FLAG.filter(lambda f: f not in KNOWN_OPTIONS[command]), label="flag")
        kind = data.draw(st.sampled_from(["flag", "flag with value", "extra argument"] if command in (
            "recipes list", "recipes copy", "build", "measure", "eval", "demo-results", "train")
            else ["flag", "flag with value"]), label="kind")
        args = b.args()
        if kind == "flag":
            args.append(flag)
        elif kind == "flag with value":
            args += [flag, data.draw(NAME, label="value")]
        else:
            word = data.draw(NAME, label="argument")
            args.append(word)
            flag = word
        refuse(world, b, f"unknown {kind}", named=[flag], args=args)


def _value_flags() -> dict[str, list[str]]:
    """Each command's options that take a value (not the on/off flags), from the CLI's own declarations."""
    return {name: sorted(opt for p in cmd.params if getattr(p, "param_type_name", "") == "option"
                         and not p.is_flag for opt in p.opts) for name, cmd in _commands()}


VALUE_FLAGS = {command: flags for command, flags in _value_flags().items() if command != "train"}
VALUE_FLAGS["train"] = ["--config", "--dataset", "--dataset_config", "--output_dir", "--max_samples",
                        "--learning_rate", "--model_name_or_path"]
VALUE_FLAGS = {command: flags for command, flags in VALUE_FLAGS.items() if flags}  # recipes copy has none


@pytest.mark.parametrize("command", sorted(VALUE_FLAGS))
@settings(PROPS, max_examples=6)
@given(data=st.data())
def test_option_without_its_value_is_refused(world, command, data):
    """A flag that takes a value, given last with none (a shell variable that was empty and unquoted)."""
    flag = data.draw(st.sampled_from(VALUE_FLAGS[command]), label="flag")
    with scratch(world, "novalue") as s:
        b = base(command, world, s)
        b.options.pop(flag, None)
        refuse(world, b, "option without a value", named=[flag], args=[*b.args(), flag])


@settings(PROPS, max_examples=15)
@given(name=NAME.filter(lambda n: n not in {*ALL_COMMANDS, "recipes", "copy", "list"}),
       under_recipes=st.booleans())
def test_unknown_subcommand_is_refused(world, name, under_recipes):
    args = ["recipes", name] if under_recipes else [name]
    check_refused(Case(args, named=(name,), label="unknown subcommand",
                       command="recipes" if under_recipes else "divsft"), world.root)


@settings(PROPS, max_examples=45)
@given(repo=BAD_REPO)
@example(repo="../..")
@example(repo="a/b/c")
@example(repo="-x/y")
@example(repo="a..b/c")
def test_publish_refuses_a_repo_that_is_no_hub_id(world, repo):
    with scratch(world, "repo") as s:
        refuse(world, base("publish", world, s), "--repo not ORG/NAME", named=["--repo"], **{"--repo": repo})


@settings(PROPS, max_examples=45)
@given(version=BAD_VERSION)
@example(version="01.0.0")
@example(version="1.0")
@example(version="v1.0.0")
@example(version="1.0.0-rc")
def test_publish_refuses_a_version_that_is_not_x_y_z(world, version):
    with scratch(world, "version") as s:
        refuse(world, base("publish", world, s), "--version not X.Y.Z", named=["--version"],
               **{"--version": version})


@settings(PROPS, max_examples=1, phases=(Phase.generate,))  # one example: an accepted value loads a model
@given(max_samples=st.integers(max_value=-1))
def test_train_refuses_a_negative_max_samples(world, max_samples):
    """A negative sample count is refused before any model is loaded (today: traceback, exit 1, half a
    run)."""
    with scratch(world, "train-int") as s:
        refuse(world, base("train", world, s), "negative --max_samples",
               named=["--max_samples", "max_samples"], **{"--max_samples": max_samples})


@settings(PROPS, max_examples=3, phases=(Phase.generate,))  # each example reads and samples the subset
@given(max_samples=st.integers(1, 19), missing=NAME)
def test_train_refused_after_sampling_its_subset_leaves_the_build_unchanged(world, max_samples, missing):
    """`--max_samples` below the subset's size samples its rows; a run refused after that (here: the model
    does not exist) must leave the build folder as it was, with no `cache-*.arrow` written into it."""
    with scratch(world, "train-cache") as s:
        model = str(s / "nope" / missing)
        refuse(world, base("train", world, s), "missing model after sampling", named=[model],
               **{"--max_samples": max_samples, "--model_name_or_path": model})


# == 2. bad files ===========================================================================================
def _jsonl(rows) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80",
                                b"\xf8\x88\x80\x80\x80", b"caf\xe9"])
WRONG_TYPE_VALUE = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.just(None),
                             st.lists(st.text(max_size=3), max_size=2),
                             st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


POOL_KINDS = ["non-UTF-8 bytes", "malformed JSON", "missing column", "non-string column", "empty text",
              "duplicate ids", "no rows", "unsupported suffix", "corrupt parquet", "parquet: missing column",
              "parquet: non-string column", "parquet: empty text", "parquet: duplicate ids",
              "parquet: no rows"]


@st.composite
def bad_pool(draw, rows: list, kind: str) -> tuple[str, str, bytes]:
    """(class, file suffix, bytes) of a pool file of class `kind` that must be refused."""
    picked = [dict(row) for row in rows[: draw(st.integers(1, 12))]]
    n = len(picked)
    at = draw(st.integers(0, n - 1))
    field_ = draw(st.sampled_from(["instruction", "response"]))
    suffix = draw(st.sampled_from([".jsonl", ".json"]))
    if kind == "non-UTF-8 bytes":
        marker = "\u2603SNOWMAN\u2603"
        picked[at][field_] = picked[at][field_][:20] + marker
        data = (_jsonl(picked) if suffix == ".jsonl"
                else json.dumps(picked, ensure_ascii=False).encode("utf-8"))
        return kind, suffix, data.replace(marker.encode("utf-8"), draw(INVALID_UTF8), 1)
    if kind == "malformed JSON":
        lines = _jsonl(picked).decode("utf-8").splitlines(keepends=True)
        broken = draw(st.sampled_from(['{"instruction": \n', "{\n", '{"instruction": "a", "response": "b"\n',
                                       "not json\n", '{"instruction": "a" "response": "b"}\n', "]\n",
                                       '{"instruction": "a", "response": "b"}}\n']))
        lines.insert(draw(st.integers(0, len(lines))), broken)
        if suffix == ".json":
            text = json.dumps(picked)
            cut = draw(st.integers(1, len(text) - 1))
            return kind, suffix, text[:cut].encode("utf-8")
        return kind, suffix, "".join(lines).encode("utf-8")
    if kind == "missing column":
        for row in picked:
            row[f"{field_}_x"] = row.pop(field_)
        return kind, suffix, _jsonl(picked)
    if kind == "non-string column":
        values = draw(st.lists(WRONG_TYPE_VALUE.filter(lambda v: not isinstance(v, str)),
                               min_size=n, max_size=n))
        same_type = draw(st.booleans())
        for row, value in zip(picked, values):
            row[field_] = values[0] if same_type else value
        return kind, suffix, _jsonl(picked)
    if kind == "empty text":
        picked[at][field_] = draw(st.sampled_from(["", " ", "\n", "\t \n"]))
        return kind, suffix, _jsonl(picked)
    if kind == "duplicate ids":
        other = draw(st.integers(0, n))  # n: a new row that repeats row `at`'s id
        if other == n or other == at:
            picked.append({**picked[at], "instruction": "another instruction",
                           "response": "another response"})
        else:
            picked[other]["id"] = picked[at]["id"]
        return kind, suffix, _jsonl(picked)
    if kind == "no rows":
        return kind, suffix, draw(st.sampled_from([b"", b"\n", b" \n\t\n"]
                                                  + ([b"[]"] if suffix == ".json" else [])))
    if kind == "unsupported suffix":
        suffix = draw(st.sampled_from([".csv", ".txt", ".tsv", ".xlsx", ".jsonl.gz", ".yaml", "",
                                       ".jsonlines", ".parq", ".arrow"]))
        return kind, suffix, _jsonl(picked)
    if kind == "corrupt parquet":
        return kind, ".parquet", draw(st.one_of(st.binary(max_size=64), st.just(b"PAR1garbagePAR1"),
                                                st.binary(max_size=32).map(lambda b: b"PAR1" + b)))
    return kind, ".parquet", _parquet_variant(kind, picked, field_, at, draw)


def _parquet_variant(kind: str, picked: list, field_: str, at: int, draw) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: [row[name] for row in picked] for name in picked[0]}
    if kind == "parquet: missing column":
        columns[f"{field_}_x"] = columns.pop(field_)
    elif kind == "parquet: non-string column":
        columns[field_] = draw(st.sampled_from([list(range(len(picked))), [1.5] * len(picked),
                                                [True] * len(picked), [[c] for c in columns[field_]],
                                                [None] * len(picked)]))
    elif kind == "parquet: empty text":
        columns[field_][at] = draw(st.sampled_from(["", "   ", None]))
    elif kind == "parquet: duplicate ids":
        columns = {name: values + [values[at]] for name, values in columns.items()}
    elif kind == "parquet: no rows":
        columns = {name: [] for name in columns}
    table = pa.table({name: pa.array(values, type=pa.string())
                      if name != field_ or kind != "parquet: non-string column"
                      else pa.array(values) for name, values in columns.items()})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()



POOL_MENTIONS = {  # what the one line must say, beyond the file, for these classes
    "malformed JSON": ("line", "row"), "no rows": ("no rows", "empty", "no data"),
    "parquet: no rows": ("no rows", "empty", "no data"), "non-UTF-8 bytes": ("utf-8",),
    "empty text": ("empty",), "parquet: empty text": ("empty",), "duplicate ids": ("id",),
    "parquet: duplicate ids": ("id",),
}


def _pool_case(world, command, s, pool):
    b = base(command, world, s)
    if command == "measure":
        b.positionals = [pool]
        b.inputs = [pool]
        return b, {}
    b.inputs = [pool] + [p for p in b.inputs if p != world.small_pool]
    return b, {"--pool": pool}


POOL_CASES = [(command, kind) for command in ("build", "measure") for kind in POOL_KINDS] + [
    ("demo-results", kind) for kind in ("non-UTF-8 bytes", "malformed JSON", "missing column", "no rows",
                                        "corrupt parquet")]


@pytest.mark.parametrize("command,kind", POOL_CASES)
@settings(PROPS, max_examples=5)
@given(data=st.data())
def test_bad_pool_file_is_refused(world, command, kind, data):
    kind, suffix, content = data.draw(bad_pool(world.rows, kind), label="pool")
    name = data.draw(NAME, label="file name")
    with scratch(world, "pool") as s:
        pool = s / "in" / f"{name}{suffix}"
        pool.parent.mkdir()
        pool.write_bytes(content)
        b, override = _pool_case(world, command, s, pool)
        refuse(world, b, f"pool: {kind}", named=[str(pool)], mentions=POOL_MENTIONS.get(kind, ()), **override)


# paths that name nothing: (how to make it, relative to the scratch folder, which is the working directory)
MISSING_KINDS = ("absolute", "relative ../", "relative ./", "under a regular file", "dangling symlink")


@st.composite
def missing_path(draw, s: Path, suffix: str = "", kinds=MISSING_KINDS) -> str:
    """A path (relative ones to `s`, the working directory) that names nothing."""
    name = draw(NAME) + suffix
    kind = draw(st.sampled_from(kinds))
    if kind == "absolute":
        return str(s / "nope" / name)
    if kind == "relative ../":
        return "../" * draw(st.integers(1, 3)) + f"nope-{draw(NAME)}/{name}"
    if kind == "relative ./":
        return f"./{name}"
    if kind == "under a regular file":
        (s / "plain.txt").write_text("plain")
        return f"plain.txt/{name}"
    link = s / f"link-{name}"
    link.symlink_to(s / "gone" / name)
    return str(link)


MISSING_INPUTS = {  # (command, which input) -> option (None: the positional argument)
    ("build", "--pool"): "--pool", ("build", "--config"): "--config",
    ("measure", "SOURCE"): None, ("plot", "SOURCES"): None, ("publish", "BUILDS"): None,
    ("analyze", "RUNS"): None, ("eval", "--eval-set"): "--eval-set", ("eval", "--adapter"): "--adapter",
    ("eval", "--model"): "--model", ("train", "--dataset"): "--dataset", ("train", "--config"): "--config",
    ("train", "--model_name_or_path"): "--model_name_or_path",
    ("demo-results", "--pool"): "--pool", ("demo-results", "--eval-set"): "--eval-set",
}


@pytest.mark.parametrize("command,which", sorted(MISSING_INPUTS))
@settings(PROPS, max_examples=8)
@given(data=st.data())
def test_input_that_does_not_exist_is_refused(world, command, which, data):
    with scratch(world, "missing") as s:
        b = base(command, world, s)
        suffix = {"--config": ".yaml", "--pool": ".jsonl"}.get(which, "")
        # `--model` and `--adapter` go to from_pretrained, which takes `dir/name` for a Hub id:
        # no such spelling
        hub_like = which in ("--model", "--adapter", "--model_name_or_path")
        kinds = MISSING_KINDS[:3] + MISSING_KINDS[4:] if hub_like else MISSING_KINDS
        path = data.draw(missing_path(s, suffix, kinds), label="path")
        b.cwd = s
        option = MISSING_INPUTS[(command, which)]
        if option is None:
            b.positionals = [path]
            b.inputs = [p for p in b.inputs if not str(p).startswith(str(s))]
            override = {}
        else:
            override = {option: path}
        refuse(world, b, f"missing {which}", named=[path, str(Path(path))], **override)


# -- YAML configs --------------------------------------------------------------------------------------
# key -> a strategy of values of the wrong type (strict: no "10" for 10, no 1.5, no bools)
BUILD_KEY_TYPES = {
    "size": st.one_of(st.text(max_size=4), st.floats(allow_nan=False), st.booleans(), st.just(None),
                      st.lists(st.integers(), max_size=2)),
    "seed": st.one_of(st.text(max_size=4), st.floats(allow_nan=False), st.booleans(), st.just(None)),
    "levels": st.one_of(st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
                        st.lists(st.one_of(st.text(min_size=1, max_size=3).filter(_not_an_integer),
                                           st.floats(allow_nan=False), st.booleans()),
                                 min_size=1, max_size=3)),
    "band": st.one_of(st.integers(), st.text("abcxyz- ", min_size=1, max_size=3),
                      st.lists(st.integers(), min_size=3, max_size=4),
                      st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)),
    "metrics": st.one_of(st.integers(), st.sampled_from(["maybe", "on", "yes please"]),
                         st.lists(st.booleans(), max_size=2)),
    "strategy": st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2),
                          st.sampled_from(["micro", "response"])),
    "pool": st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2), st.booleans()),
    "tokenizer": st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2)),
    "tag_similarity": st.one_of(st.text(max_size=3), st.lists(st.floats(), max_size=2), st.just(1.5),
                                st.just(0)),
    "columns": st.one_of(st.integers(), st.text(min_size=1, max_size=4),
                         st.lists(st.text(max_size=3), max_size=2),
                         st.fixed_dictionaries({"id": st.integers()}),
                         st.fixed_dictionaries({"bogus": st.just("x")})),
    "num_proc": st.one_of(st.text(min_size=1, max_size=3), st.just(0), st.integers(max_value=-1),
                          st.just(2.5)),
}
# our own keys of any type; TRL's keys only as text that does not parse (cheap to refuse)
TRAIN_KEY_TYPES = {
    "dataset": st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2), st.booleans()),
    "dataset_config": st.one_of(st.integers(), st.lists(st.integers(), max_size=2)),
    "max_samples": st.one_of(st.text(min_size=1, max_size=4).filter(_not_an_integer),
                             st.lists(st.integers(), min_size=1, max_size=2), st.just(1.5)),
    "learning_rate": st.text(min_size=1, max_size=5).filter(lambda t: not _parses(float, t)),
    "num_train_epochs": st.text(min_size=1, max_size=5).filter(lambda t: not _parses(float, t)),
    "bf16": st.sampled_from(["maybe", "2", "none", "enabled"]),
    "per_device_train_batch_size": st.text(min_size=1, max_size=4).filter(_not_an_integer),
}
YAML_SYNTAX_ERRORS = ["key: [1, 2\n", "key: {a: 1\n", "a: 1\n  b: 2\n", "a:\n\t- 1\n", 'a: "unclosed\n',
                      "a: b: c\n", "- a\nb: 1\n", "a: @x\n", "a: `x`\n", "? [\n", "a: 1\na 2\n", "{a: 1}}\n",
                      "a: *nowhere\n", "%TAG !\n---\n"]


YAML_KINDS = ["syntax error", "not a mapping", "unknown key", "wrongly typed value", "non-UTF-8 bytes",
              "empty"]


@st.composite
def bad_yaml(draw, valid: dict, key_types: dict, kind: str) -> tuple[str, bytes, str]:
    """(class, bytes, the key at fault or '') of a YAML config of class `kind` that must be refused."""
    if kind == "syntax error":
        good = yaml.safe_dump(valid, sort_keys=False)
        lines = good.splitlines(keepends=True)
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(YAML_SYNTAX_ERRORS)))
        text = "".join(lines)
        assume_broken(text)
        return kind, text.encode("utf-8"), ""
    if kind == "not a mapping":
        value = draw(st.one_of(st.lists(st.integers(), min_size=1, max_size=3), st.integers(),
                               st.text(min_size=1, max_size=8), st.just([valid]), st.booleans(),
                               st.floats(allow_nan=False)))
        return kind, yaml.safe_dump(value).encode("utf-8"), ""
    if kind == "unknown key":
        key = draw(st.from_regex(r"zz[a-z_]{1,10}", fullmatch=True))
        return kind, yaml.safe_dump({**valid, key: draw(st.integers())}, sort_keys=False).encode("utf-8"), key
    if kind == "wrongly typed value":
        key = draw(st.sampled_from(sorted(key_types)))
        value = draw(key_types[key])
        return kind, yaml.safe_dump({**valid, key: value}, sort_keys=False).encode("utf-8"), f"{key}|{value}"
    if kind == "non-UTF-8 bytes":
        text = yaml.safe_dump({**valid, "zz_note": "MARKER"}, sort_keys=False).encode("utf-8")
        where = draw(st.sampled_from(["value", "comment"]))
        bad = draw(INVALID_UTF8)
        if where == "comment":
            return kind, b"# " + bad + b"\n" + text.replace(b"zz_note: MARKER\n", b""), ""
        return kind, text.replace(b"MARKER", bad), ""
    # nothing: pool is missing
    return kind, draw(st.sampled_from([b"", b"\n", b"# nothing\n", b"---\n"])), "--pool"


def assume_broken(text: str) -> None:
    from hypothesis import assume

    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        return
    assume(False)


@pytest.mark.parametrize("kind", YAML_KINDS)
@pytest.mark.parametrize("command", ["build", "train"])
@settings(PROPS, max_examples=8)
@given(data=st.data())
def test_bad_yaml_config_is_refused(world, command, kind, data):
    with scratch(world, "yaml") as s:
        out = s / "out"
        if command == "build":
            valid = {"pool": str(world.small_pool), "strategy": STRATEGY, "out": str(out),
                     "tokenizer": "whitespace", "metrics": False, "band": [1, 100], "size": 5,
                     "levels": [0, 100]}
            kind, content, key = data.draw(bad_yaml(valid, BUILD_KEY_TYPES, kind), label="config")
            inputs = [world.small_pool]
        else:
            build = world.copy_build(s / "build")
            valid = world.yaml_recipe(build, out)
            kind, content, key = data.draw(bad_yaml(valid, TRAIN_KEY_TYPES, kind), label="recipe")
            inputs = [build]
        config = s / "config.yaml"
        config.write_bytes(content)
        named = [str(config), *(part for part in key.split("|") if part)]
        if command == "train" and key == "--pool":
            named = [str(config)]
        check_refused(Case([command, "--config", config], inputs=[config, *inputs], outputs=[out],
                           named=tuple(named), label=f"YAML: {kind}"), world.root)


# -- build folders --------------------------------------------------------------------------------------
MANIFEST_KINDS = ["corrupt JSON", "not an object", "wrongly typed field", "missing field", "bad level entry",
                  "no manifest", "non-UTF-8 bytes"]


@st.composite
def bad_manifest(draw, manifest: dict, kind: str) -> tuple[str, bytes | None]:
    """(class, bytes of manifest.json, None to remove it) of a build manifest of class `kind` to be
    refused."""
    text = json.dumps(manifest, indent=2)
    if kind == "corrupt JSON":
        how = draw(st.sampled_from(["truncated", "garbage", "trailing comma"]))
        if how == "truncated":
            return kind, text[: draw(st.integers(0, len(text) - 1))].encode("utf-8")
        if how == "garbage":
            return kind, draw(st.binary(max_size=40).filter(lambda b: _bad_json(b)))
        return kind, text.replace('"seed": 0', '"seed": 0,,').encode("utf-8")
    if kind == "not an object":
        return kind, json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(),
                                               st.text(max_size=5), st.just(None), st.booleans(),
                                               st.just([manifest])))).encode("utf-8")
    if kind == "non-UTF-8 bytes":
        return kind, text.encode("utf-8").replace(b'"pool": "', b'"pool": "' + draw(INVALID_UTF8), 1)
    if kind == "no manifest":
        return kind, None
    changed = json.loads(text)
    if kind == "missing field":
        del changed[draw(st.sampled_from(["pool", "pool_fingerprint", "pool_rows", "strategy", "size", "seed",
                                          "types_total", "typed_rows", "extractor", "hf_divsft_version",
                                          "levels"]))]
    elif kind == "wrongly typed field":
        key, value = draw(st.sampled_from([
            ("size", "ten"), ("size", 0), ("size", 10.5), ("size", True), ("size", None), ("levels", 3),
            ("levels", []), ("levels", "0,100"), ("levels", {}), ("seed", -1), ("seed", "0"),
            ("pool_rows", 0), ("strategy", "bogus"), ("strategy", 5), ("extractor", "micro"), ("pool", 5),
            ("pool_fingerprint", None), ("types_total", -3), ("typed_rows", "many"),
            ("hf_divsft_version", 1)]))
        changed[key] = value
    else:  # bad level entry
        at = draw(st.integers(0, len(changed["levels"]) - 1))
        key, value = draw(st.sampled_from([
            ("config", "../../etc"), ("config", "response_micro_d050"), ("config", "/etc/passwd"),
            ("config", ""), ("config", "response_micro_d100/../x"), ("config", 5), ("level", 101),
            ("level", -1), ("level", "50"), ("level", 50.0), ("k", -1), ("num_rows", "20"),
            ("ids_sha256", "XYZ"), ("ids_sha256", "a" * 63), ("rows_sha256", "not-hex"),
            ("type_entropy", "high"), ("metrics", "none"), ("metrics", {"bogus": {}}),
            ("duplicate", None), ("not an object", None)]))
        if key == "duplicate":
            changed["levels"].append(dict(changed["levels"][at]))
        elif key == "not an object":
            changed["levels"][at] = draw(st.one_of(st.integers(), st.text(max_size=4),
                                                   st.lists(st.integers(), max_size=2)))
        else:
            changed["levels"][at][key] = value
        kind = f"bad level entry ({key})"
    return kind, json.dumps(changed).encode("utf-8")


def _bad_json(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return True
    return False


MANIFEST_READERS = ["measure", "plot", "publish", "train", "analyze"]


# measure reads a folder without manifest.json as a plain dataset folder, by design
MANIFEST_CASES = [(command, kind) for command in MANIFEST_READERS for kind in MANIFEST_KINDS
                  if (command, kind) != ("measure", "no manifest")]


@pytest.mark.parametrize(("command", "kind"), MANIFEST_CASES)
@settings(PROPS, max_examples=5)
@given(data=st.data())
def test_bad_build_manifest_is_refused(world, command, kind, data):
    manifest = json.loads((world.build / "manifest.json").read_text())
    kind, content = data.draw(bad_manifest(manifest, kind), label="manifest")
    with scratch(world, "manifest") as s:
        b = base(command, world, s)
        build = s / "build"
        if not build.exists():
            world.copy_build(build)
        if command == "measure":
            b.positionals, b.inputs = [build], [build]
        if content is None:
            (build / "manifest.json").unlink()
        else:
            (build / "manifest.json").write_bytes(content)
        # the run then names no build: refused, for a reason of its own
        if command == "analyze" and content is None:
            refuse(world, b, f"manifest: {kind}", extra_inputs=[build])
        else:
            refuse(world, b, f"manifest: {kind}", named=[str(build)], extra_inputs=[build])


@st.composite
def damaged_subset(draw) -> tuple[str, str]:
    level = draw(st.sampled_from(["response_micro_d000", "response_micro_d100"]))
    kind = draw(st.sampled_from(["folder missing", "dataset_info.json missing", "arrow file truncated",
                                 "arrow file replaced", "state.json corrupt"]))
    return level, kind


def damage(build: Path, level: str, kind: str, data) -> None:
    folder = build / level
    if kind == "folder missing":
        shutil.rmtree(folder)
    elif kind == "dataset_info.json missing":
        (folder / "dataset_info.json").unlink()
    elif kind == "arrow file truncated":
        arrow = next(folder.glob("*.arrow"))
        content = arrow.read_bytes()
        arrow.write_bytes(content[: data.draw(st.integers(0, min(len(content) - 1, 400)),
                                              label="kept bytes")])
    elif kind == "arrow file replaced":
        next(folder.glob("*.arrow")).write_bytes(data.draw(st.binary(max_size=64), label="arrow bytes"))
    else:
        (folder / "state.json").write_bytes(data.draw(st.sampled_from([b"{", b"[]", b"",
                                                                       b'{"_data_files": 3}']),
                                                      label="state.json"))


@pytest.mark.parametrize("command", ["measure", "publish", "train"])
@settings(PROPS, max_examples=15)
@given(data=st.data())
def test_build_folder_with_a_missing_or_damaged_subset_is_refused(world, command, data):
    level, kind = data.draw(damaged_subset(), label="damage")
    with scratch(world, "subset") as s:
        b = base(command, world, s)
        build = s / "build"
        if not build.exists():
            world.copy_build(build)
        if command == "measure":
            b.positionals, b.inputs = [build], [build]
        damage(build, level, kind, data)
        override = {"--dataset_config": level} if command == "train" else {}
        refuse(world, b, f"subset: {kind}", named=[str(build)], extra_inputs=[build], **override)


@settings(PROPS, max_examples=10)
@given(level=st.sampled_from(["response_micro_d000", "response_micro_d100"]),
       column=st.sampled_from(["instruction", "response", "id"]), text=st.text(min_size=1, max_size=8))
def test_publish_refuses_a_subset_edited_after_its_build(world, level, column, text):
    from datasets import Dataset, load_from_disk

    with scratch(world, "edited") as s:
        b = base("publish", world, s)
        folder = s / "build" / level
        saved = load_from_disk(str(folder))
        rows = saved.to_list()
        rows[0][column] += text
        Dataset.from_list(rows, features=saved.features).save_to_disk(str(s / "edited"))
        del saved
        shutil.rmtree(folder)
        shutil.move(str(s / "edited"), str(folder))
        refuse(world, b, "subset rows edited", named=[str(folder)])


# -- eval runs, measure reports, training records ----------------------------------------------------------
@st.composite
def bad_run_file(draw, name: str) -> tuple[str, str, bytes | None]:
    """(file name, class, bytes or None to remove) of the eval run's file `name` that must be refused."""
    good_summary = factories.summary(1.5, None)
    if name == "summary.json":
        kind = draw(st.sampled_from(["corrupt JSON", "not an object", "wrongly typed field", "missing field",
                                     "non-UTF-8 bytes", "missing"]))
        if kind == "corrupt JSON":
            text = json.dumps(good_summary)
            return name, kind, text[: draw(st.integers(0, len(text) - 1))].encode("utf-8")
        if kind == "not an object":
            return name, kind, json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=2), st.integers(),
                                                         st.just(None), st.text(max_size=4)))).encode("utf-8")
        if kind == "wrongly typed field":
            key, value = draw(st.sampled_from([("score", "high"), ("n", -1), ("n", "4"), ("judge", "nll"),
                                               ("ci95", [1.0]), ("ci95", "wide"), ("model", 5),
                                               ("subset", "x"), ("subset", {"source": 5, "num_rows": 1}),
                                               ("subset", {"source": "x", "num_rows": -2}),
                                               ("configs", "alpaca_eval"), ("eval_set", None)]))
            return name, kind, json.dumps({**good_summary, key: value}).encode("utf-8")
        if kind == "missing field":
            key = draw(st.sampled_from(["judge", "metric", "score", "n", "model", "eval_set", "configs"]))
            return name, kind, json.dumps({k: v for k, v in good_summary.items()
                                           if k != key}).encode("utf-8")
        if kind == "non-UTF-8 bytes":
            return name, kind, json.dumps(good_summary).encode("utf-8").replace(b"smollm2",
                                                                                draw(INVALID_UTF8), 1)
        return name, kind, None
    good = ({"id": "p1", "config": "alpaca_eval", "instruction": "i", "reference": "r", "output": "o",
             "tokens": 2} if name == "generations.jsonl" else {"id": "p1", "nll_sum": 3.25, "tokens": 2})
    kind = draw(st.sampled_from(["corrupt line", "not an object", "wrongly typed field", "missing field",
                                 "non-UTF-8 bytes"]
                                + (["bad pairwise judgment"] if name == "judgments.jsonl" else [])))
    lines = [json.dumps(good)] * draw(st.integers(0, 3))
    at = draw(st.integers(0, len(lines)))
    if kind == "corrupt line":
        bad = draw(st.sampled_from(['{"id": ', "{", "nope", '{"id": "p1",}', "[1, 2"]))
    elif kind == "not an object":
        bad = json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=2), st.integers(),
                                        st.text(max_size=3), st.booleans())))
    elif kind == "wrongly typed field":
        key = draw(st.sampled_from(sorted(good)))
        bad = json.dumps({**good, key: draw(st.one_of(st.lists(st.integers(), max_size=1), st.dictionaries(
            st.text(max_size=2), st.integers(), max_size=1))) if key != "tokens" else -1})
    elif kind == "missing field":
        key = draw(st.sampled_from([k for k in good if k not in ("reference", "nll_sum")]))
        bad = json.dumps({k: v for k, v in good.items() if k != key})
    elif kind == "bad pairwise judgment":
        pairwise = {"id": "p1", "order": "model_first", "verdict": "A", "model_score": 1.0, "reply": "[[A]]"}
        key, value = draw(st.sampled_from([("order", "sideways"), ("order", "Model_First"), ("order", None),
                                           ("verdict", "D"), ("verdict", "a"), ("model_score", "1"),
                                           ("reply", None)]))
        bad = json.dumps({**pairwise, key: value})
    else:
        bad = None
    if bad is None:
        content = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
        content += b'{"id": "p' + draw(INVALID_UTF8) + b'", "tokens": 1}\n'
        return name, kind, content
    lines.insert(at, bad)
    return name, kind, ("\n".join(lines) + "\n").encode("utf-8")


@pytest.mark.parametrize("name", ["summary.json", "generations.jsonl", "judgments.jsonl"])
@settings(PROPS, max_examples=15)
@given(data=st.data())
def test_bad_eval_run_is_refused_by_analyze(world, name, data):
    name, kind, content = data.draw(bad_run_file(name), label="run file")
    with scratch(world, "run") as s:
        b = base("analyze", world, s)
        good_runs = [world.run_folder(s / f"good-{i}", s / "build")
                     for i in range(data.draw(st.integers(0, 2)))]
        bad_run = b.positionals[0]
        if content is None:
            (bad_run / name).unlink()
        else:
            (bad_run / name).write_bytes(content)
        runs = data.draw(st.permutations(good_runs + [bad_run]), label="order of runs")
        b.positionals = list(runs)
        refuse(world, b, f"{name}: {kind}", named=[str(bad_run)], extra_inputs=good_runs)


REPORT_KINDS = ["corrupt JSON", "not an object", "not a report", "no per-level metrics",
                "wrongly typed level", "bad strategy", "non-UTF-8 bytes"]


@st.composite
def bad_report(draw, report: dict, kind: str) -> tuple[str, bytes]:
    text = json.dumps(report)
    if kind == "corrupt JSON":
        return kind, text[: draw(st.integers(0, len(text) - 1))].encode("utf-8")
    if kind == "not an object":
        return kind, json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=2), st.integers(),
                                               st.just(None)))).encode()
    if kind == "non-UTF-8 bytes":
        return kind, text.encode("utf-8").replace(b'"source": "', b'"source": "' + draw(INVALID_UTF8), 1)
    changed = json.loads(text)
    if kind == "not a report":
        del changed[draw(st.sampled_from(["source", "settings", "hf_divsft_version"]))]
    elif kind == "no per-level metrics":
        how = draw(st.sampled_from(["single dataset", "empty levels", "a level without metrics"]))
        if how == "single dataset":
            changed["metrics"] = changed.pop("levels")[0]["metrics"]
            del changed["strategy"]
        elif how == "empty levels":
            changed["levels"] = []
        else:
            changed["levels"][draw(st.integers(0, len(changed["levels"]) - 1))]["metrics"] = None
    elif kind == "wrongly typed level":
        at = draw(st.integers(0, len(changed["levels"]) - 1))
        key, value = draw(st.sampled_from([("level", "50"), ("level", 101), ("level", -5), ("config", 5),
                                           ("metrics", {"bogus": {}}),
                                           ("metrics", {"response": {"token_entropy": {"value": "high"}}})]))
        changed["levels"][at][key] = value
    else:
        changed["strategy"] = draw(st.sampled_from(["bogus", "Response-Micro", "", "response_micro"]))
    return kind, json.dumps(changed).encode("utf-8")


@pytest.mark.parametrize("kind", REPORT_KINDS)
@settings(PROPS, max_examples=6)
@given(data=st.data())
def test_bad_measure_report_is_refused_by_plot(world, kind, data):
    kind, content = data.draw(bad_report(level_report(world.build), kind), label="report")
    with scratch(world, "report") as s:
        b = base("plot", world, s)
        report = s / "metrics.json"
        report.write_bytes(content)
        b.positionals = data.draw(st.permutations([report, *b.positionals[: data.draw(st.integers(0, 1))]]))
        refuse(world, b, f"report: {kind}", named=[str(report)], extra_inputs=[report])


@settings(PROPS, max_examples=20)
@given(data=st.data())
def test_bad_training_record_is_refused_by_eval(world, data):
    """`--adapter` (or a `--model` folder) whose training_subset.json is corrupt."""
    content = data.draw(st.one_of(
        st.sampled_from([b"{", b"[]", b"null", b'"x"', b'{"source": 5, "num_rows": 1}', b'{"num_rows": 1}',
                         b'{"source": "x", "num_rows": -1}', b'{"source": "x", "num_rows": "many"}',
                         b'{"source": "x", "num_rows": 1, "level": "high"}']),
        INVALID_UTF8.map(lambda b: b'{"source": "' + b + b'", "num_rows": 1}')), label="training_subset.json")
    where = data.draw(st.sampled_from(["--adapter", "--model"]), label="folder")
    with scratch(world, "record") as s:
        b = base("eval", world, s)
        folder = s / "trained"
        folder.mkdir()
        (folder / "training_subset.json").write_bytes(content)
        refuse(world, b, f"training record in {where}", named=[str(folder)], extra_inputs=[folder],
               **{where: folder})


# == 3. bad output locations ============================================================================
OUT_FLAG = {"build": "--out", "measure": "--out", "plot": "--out", "eval": "--out", "analyze": "--out",
            "demo-results": "--out", "train": "--output_dir", "publish": "--hub-dir", "recipes copy": None}


def set_out(b: Base, command: str, out) -> dict:
    flag = OUT_FLAG[command]
    if flag is None:
        b.positionals = [out]
        return {}
    return {flag: out}


def spellings(path: Path, cwd: Path) -> st.SearchStrategy[str]:
    """Ways to write `path` (which exists), each naming the very same file or folder."""
    rel = os.path.relpath(path, cwd)
    parent = path.parent
    variants = [str(path), rel, f"./{rel}",
                str(path).replace("/", "//", 1) if str(path).count("/") > 1 else str(path),
                f"{parent}/./{path.name}", f"{parent}/../{parent.name}/{path.name}"]
    if path.is_dir():
        variants += [f"{path}/", f"{rel}/."]
    return st.sampled_from(variants)


def _link_to(path: Path, s: Path, name: str) -> str:
    link = s / f"link-{name}"
    link.symlink_to(path)
    return str(link)


def overlap_targets(command: str, w: World, s: Path, b: Base) -> list[tuple[str, Path]]:
    """(what, input path) whose spellings, ancestors and insides the output must not be."""
    if command == "build":
        pool_dir = s / "pool-folder"
        (pool_dir / "data").mkdir(parents=True)
        shutil.copy(w.small_pool, pool_dir / "data" / "train-00000-of-00001.parquet")
        return [("pool file", w.small_pool), ("pool folder", pool_dir)]
    if command == "measure":
        build = w.copy_build(s / "build")
        return [("source file", w.tiny_pool), ("source build folder", build)]
    if command == "plot":
        report = s / "metrics.json"
        report.write_text(json.dumps(level_report(b.positionals[0])))
        return [("build folder", b.positionals[0]), ("measure report", report)]
    if command in ("publish", "train"):
        return [("build folder", b.inputs[0])]
    if command == "analyze":
        return [("run folder", b.positionals[0])]
    if command == "eval":
        adapter = s / "adapter"
        adapter.mkdir()
        (adapter / "training_subset.json").write_text(json.dumps({"source": "elsewhere", "num_rows": 3}))
        eval_set = s / "eval-set"
        shutil.copytree(EVAL_SET, eval_set)
        return [("adapter folder", adapter), ("eval set", eval_set)]
    if command == "demo-results":
        eval_set = s / "eval-set"
        shutil.copytree(EVAL_SET, eval_set)
        return [("pool file", w.small_pool), ("eval set", eval_set)]
    raise ValueError(command)


def use_target(command: str, b: Base, what: str, target: Path) -> dict:
    """Options that make `target` an input of the command line."""
    if command == "build" and what == "pool folder":
        return {"--pool": target}
    if command == "measure":
        b.positionals = [target]
    if command == "plot" and what == "measure report":
        b.positionals = [target]
    if command == "eval":
        return {"--adapter": target} if what == "adapter folder" else {"--eval-set": target}
    if command == "demo-results" and what == "eval set":
        return {"--eval-set": target}
    return {}


OVERLAP_COMMANDS = ["build", "measure", "plot", "publish", "eval", "analyze", "demo-results", "train"]


@pytest.mark.parametrize("command", OVERLAP_COMMANDS)
@settings(PROPS, max_examples=25)
@given(data=st.data())
def test_output_that_overlaps_an_input_is_refused(world, command, data):
    with scratch(world, "overlap") as s:
        b = base(command, world, s)
        b.cwd = s
        what, target = data.draw(st.sampled_from(overlap_targets(command, world, s, b)), label="input")
        override = use_target(command, b, what, target)
        b.inputs = [*b.inputs, target]
        how = data.draw(st.sampled_from(["the input itself", "a symlink to the input", "inside the input",
                                         "a folder holding the input"]), label="how")
        if how == "the input itself":
            out = data.draw(spellings(target, s), label="out")
        elif how == "a symlink to the input":
            out = _link_to(target, s, data.draw(NAME, label="link name"))
        elif how == "inside the input":
            if target.is_file():
                how = "a folder holding the input"
                out = data.draw(spellings(target.parent, s), label="out")
            else:
                parts = data.draw(st.lists(NAME, min_size=1, max_size=2), label="inside")
                out = str(target.joinpath(*parts))
        else:
            out = data.draw(spellings(target.parent, s), label="out")
        if how == "a folder holding the input" and target.parent == world.root:
            b.inputs.append(world.build)  # the module's own folder: its contents stay as they were
        b.outputs = [Path(out) if Path(out).is_absolute() else s / out]
        override.update(set_out(b, command, out))
        refuse(world, b, f"out: {how} ({what})", named=[out, str(Path(out)), str(target)], **override)


@st.composite
def foreign_thing(draw, world: World, s: Path, command: str) -> tuple[str, Path]:
    """An existing file or folder at the output path that no earlier run of `command` wrote."""
    path = s / f"existing-{draw(NAME)}"
    kind = draw(st.sampled_from(["a file", "a folder of files", "an empty folder", "a symlink to a file",
                                 "a dangling symlink", "another command's output"]))
    if kind == "an empty folder" and command == "train":
        kind = "a folder of files"  # an empty folder is a fine output_dir for a training run
    if kind == "a file":
        path.write_bytes(draw(st.binary(max_size=64)))
    elif kind in ("a folder of files", "an empty folder"):
        path.mkdir()
        if kind == "a folder of files":
            for name, content in draw(st.dictionaries(NAME, st.binary(max_size=16), min_size=1,
                                                      max_size=3)).items():
                (path / name).write_bytes(content)
    elif kind == "a symlink to a file":
        other = s / "elsewhere.txt"
        other.write_text("someone's notes")
        path.symlink_to(other)
    elif kind == "a dangling symlink":
        path.symlink_to(s / "nothing-here")
    else:
        other = draw(st.sampled_from([c for c in ("build", "eval", "analyze", "plot", "measure",
                                                  "recipes copy") if c != command]))
        make_earlier_output(other, path, world)
        kind = f"{other}'s output"
    return kind, path


def make_earlier_output(command: str, path: Path, world: World) -> Path:
    """What an earlier successful run of `command` leaves at `path` (as the format owners recognise it)."""
    if command == "build":
        world.copy_build(path)
    elif command == "measure":
        path.write_text(json.dumps(level_report(world.build)))
    elif command == "plot":
        path.write_bytes(png_with_software())
    elif command == "eval":
        world.run_folder(path)
    elif command == "analyze":
        path.mkdir()
        (path / "analysis.json").write_text(json.dumps({"runs": [], "slopes": {}}))
        (path / "results.md").write_text("# results\n")
    elif command == "demo-results":
        path.mkdir()
        (path / "demo.json").write_text(json.dumps({"settings": {}, "runs": 1}))
        (path / "pool-sample.parquet").write_bytes(world.small_pool.read_bytes())
    elif command == "recipes copy":
        path.mkdir()
        (path / ".divsft-recipes").write_text("copied by `divsft recipes copy`\n")
        (path / "accelerate_configs").mkdir()
        (path / "accelerate_configs" / "cpu.yaml").write_text("distributed_type: NO\n")
    elif command == "train":
        path.mkdir()
        (path / "training_subset.json").write_text(json.dumps({"source": str(world.build), "num_rows": 2}))
        (path / "adapter_model.safetensors").write_bytes(b"weights")
    elif command == "publish":
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)], check=True)
    else:
        raise ValueError(command)
    return path


@pytest.mark.parametrize("command", sorted(OUT_FLAG))
@settings(PROPS, max_examples=20)
@given(data=st.data())
def test_existing_output_that_is_not_the_commands_own_is_refused(world, command, data):
    with scratch(world, "foreign") as s:
        b = base(command, world, s)
        kind, path = data.draw(foreign_thing(world, s, command), label="existing")
        if command == "demo-results":  # should it get past the output check, it stops at once
            override_extra = {"--eval-set": s / "missing-eval-set"}
        else:
            override_extra = {}
        overwrite = data.draw(st.booleans(), label="--overwrite")
        override = {**set_out(b, command, path), **override_extra}
        if overwrite:
            if command == "train":
                override["--overwrite"] = "true"
            elif command != "publish":  # publish has no --overwrite: it only ever adds to a bare repository
                override["--overwrite"] = None
        b.outputs = [path]
        refuse(world, b, f"out exists: {kind}{' (--overwrite)' if overwrite else ''}",
               named=[str(path), str(path.resolve())], **override)


@st.composite
def unwritable(draw, s: Path) -> tuple[str, str]:
    tail = "/".join(draw(st.lists(NAME, min_size=1, max_size=3)))
    kind = draw(st.sampled_from(["under a regular file", "under /etc/hostname", "under /proc",
                                 "under a file, relative"]))
    if kind == "under a regular file":
        plain = s / "plain.bin"
        plain.write_bytes(b"not a folder")
        return kind, f"{plain}/{tail}"
    if kind == "under a file, relative":
        (s / "plain.bin").write_bytes(b"not a folder")
        return kind, f"plain.bin/{tail}"
    if kind == "under /etc/hostname":
        return kind, f"/etc/hostname/{tail}"
    return kind, f"/proc/{draw(st.sampled_from(['x', 'self', 'sys/kernel']))}/divsft-{tail}"


@pytest.mark.parametrize("command", sorted(OUT_FLAG))
@settings(PROPS, max_examples=10)
@given(data=st.data())
def test_output_that_cannot_be_written_is_refused(world, command, data):
    with scratch(world, "unwritable") as s:
        b = base(command, world, s)
        b.cwd = s
        kind, out = data.draw(unwritable(s), label="out")
        override = set_out(b, command, out)
        b.outputs = [Path(out) if Path(out).is_absolute() else s / out]
        refuse(world, b, f"out {kind}", named=[out, str(Path(out)), str((s / out).resolve())], **override)


# a bad input of each command that is only found after the output location was checked
def refused_late(command: str, w: World, s: Path, b: Base, data) -> tuple[str, dict]:
    nope = str(s / "nope" / data.draw(NAME, label="missing name"))
    if command == "build":
        return "missing pool", {"--pool": nope + ".jsonl"}
    if command == "measure":
        b.positionals = [nope + ".jsonl"]
        return "missing source", {}
    if command == "plot":
        b.positionals = [nope]
        return "missing source", {}
    if command == "eval":
        return "missing eval set", {"--eval-set": nope}
    if command == "analyze":
        (b.positionals[0] / "summary.json").write_text("{")
        return "corrupt summary.json", {}
    if command == "demo-results":
        return "missing pool", {"--pool": nope + ".jsonl"}
    if command == "train":
        return "missing dataset", {"--dataset": nope}
    if command == "publish":
        b.positionals = [nope]
        return "missing build", {}
    if command == "recipes copy":
        return "extra argument", {"extra-argument": None}
    raise ValueError(command)


@pytest.mark.parametrize("command", sorted(OUT_FLAG))
@settings(PROPS, max_examples=10)
@given(data=st.data())
def test_refused_run_keeps_the_commands_own_earlier_output(world, command, data):
    """With --overwrite, a run that is refused must leave the earlier output exactly as it was."""
    with scratch(world, "earlier") as s:
        b = base(command, world, s)
        earlier = make_earlier_output(command, s / f"earlier-{data.draw(NAME, label='name')}", world)
        if earlier.is_dir():  # whatever else the user keeps there goes with it only when the new run succeeds
            for name, content in data.draw(st.dictionaries(NAME, st.binary(max_size=16), max_size=2),
                                           label="files kept beside").items():
                (earlier / f"user-{name}").write_bytes(content)
        override = set_out(b, command, earlier)
        what, bad = refused_late(command, world, s, b, data)
        override.update(bad)
        if command == "train":
            override["--overwrite"] = "true"
        elif command != "publish":
            override["--overwrite"] = None
        b.outputs = [earlier]
        refuse(world, b, f"earlier output, then {what}", **override)


@pytest.mark.parametrize("command", sorted(OUT_FLAG))
def test_empty_output_path_is_refused(world, command):
    """`--out ""` (an unset shell variable) names no output: refused, never a run that writes nothing or
    elsewhere."""
    with scratch(world, "empty-out") as s:
        b = base(command, world, s)
        b.cwd = s
        override = set_out(b, command, "")
        b.outputs = []
        outcome = refuse(world, b, "out is empty", **override)
        if command == "publish":  # an empty --hub-dir must not mean "publish to the Hub"
            assert "huggingface.co" not in outcome.stderr, outcome.stderr


@pytest.mark.parametrize("command,what", [("eval", "--model"), ("train", "--model_name_or_path"),
                                          ("build", "--tokenizer"), ("analyze", "the run's build folder")])
@settings(PROPS, max_examples=5)
@given(data=st.data())
def test_output_inside_another_input_folder_is_refused(world, command, what, data):
    """A model, tokenizer or build folder a command reads is an input too: its output never goes inside it."""
    with scratch(world, "inside") as s:
        b = base(command, world, s)
        inside = data.draw(st.lists(NAME, min_size=1, max_size=2), label="inside")
        if what == "the run's build folder":
            folder = b.inputs[1]
            override = {}
        else:
            folder = s / "model"
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
            (folder / "tokenizer.json").write_text("{}")
            override = {what: folder}
        out = str(folder.joinpath(*inside))
        override.update(set_out(b, command, out))
        b.inputs.append(folder)
        b.outputs = [Path(out)]
        refuse(world, b, f"out inside {what}", named=[out], **override)


@settings(PROPS, max_examples=6)
@given(data=st.data())
def test_recipes_copy_never_writes_into_the_installed_recipes(world, data, monkeypatch):
    """The shipped recipes are `recipes copy`'s input: DEST inside them is refused (checked on a copy of
    them)."""
    with scratch(world, "recipes") as s:
        installed = s / "installed-recipes"
        shutil.copytree(REPO / "recipes", installed, ignore=shutil.ignore_patterns("__pycache__"))
        files = importlib.resources.files

        def fake_files(package):
            return installed if str(package) == "hf_divsft.recipes" else files(package)

        monkeypatch.setattr(importlib.resources, "files", fake_files)
        try:
            sub = data.draw(st.sampled_from(["", "smollm2-135m", "accelerate_configs", "smollm2-135m/sft"]),
                            label="under")
            dest = installed / sub / data.draw(NAME, label="dest")
            b = base("recipes copy", world, s)
            b.positionals, b.inputs, b.outputs = [dest], [installed], [dest]
            refuse(world, b, "DEST inside the installed recipes", named=[str(dest)])
        finally:
            monkeypatch.setattr(importlib.resources, "files", files)


# == 4. the console script gives the same answers =========================================================
CONSOLE_CASES = ["build --size 0", "publish --repo ../..", "recipes list extra", "plot --out under a file",
                 "analyze --out the run itself"]


def _console_case(label: str, w: World, s: Path):
    """(base, overriding options, names the error line must hold) of one console-script case."""
    if label == "build --size 0":
        return base("build", w, s), {"--size": "0"}, ["--size"]
    if label == "publish --repo ../..":
        return base("publish", w, s), {"--repo": "../.."}, ["--repo"]
    if label == "recipes list extra":
        return base("recipes list", w, s), {"extra": None}, ["extra"]
    if label == "plot --out under a file":
        return base("plot", w, s), {"--out": "/etc/hostname/x.png"}, ["/etc/hostname/x.png"]
    b = base("analyze", w, s)
    return b, {"--out": b.positionals[0]}, [str(b.positionals[0])]


@settings(PROPS, max_examples=4)
@given(data=st.data())
def test_console_script_refuses_like_the_in_process_cli(world, data):
    label = data.draw(st.sampled_from(CONSOLE_CASES), label="case")
    with scratch(world, "script") as s:
        b, override, named = _console_case(label, world, s)
        args = b.args(**override)
        inside = refuse(world, b, f"console script: {label}", named=named, args=args)
        real = refuse(world, b, f"console script: {label}", named=named, args=args, runner=console_script)
        assert real.stderr == inside.stderr.replace("`root ", "`divsft "), (real.stderr, inside.stderr)


# == 5. nothing shared was touched ==========================================================================
def test_shared_data_and_repository_recipes_are_unchanged(shared_digests):
    """Every example read the shared eval set or the repository's recipes at most; none changed them."""
    for path, digest in shared_digests.items():
        assert tree_digest(path) == digest, f"{path} changed during the property tests"
