"""The one way hf-divsft writes outputs: check the location first, build in a temporary sibling, move into
place.

Every command calls `check_output` before its first expensive step: the output must not overlap an input,
must be writable, and may replace only an earlier output of the same command (recognised by its format
owner), and only with `--overwrite`. A crash or a bad input therefore never leaves a half-written folder
or file behind, and never touches anything the command did not write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import DivsftError

Owned = Callable[[Path], bool]  # does this existing path hold an earlier output of the command?


def check_output(final: str | os.PathLike, *, overwrite: bool, owned: Owned, what: str,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse, before any work, an output location the command may not write; returns it as a Path."""
    final = Path(final)
    for source in inputs:
        _refuse_overlap(final, source)
    if final.exists() or final.is_symlink():
        if not owned(final):
            raise DivsftError(f"{final}: exists and is not {what}; choose another output path "
                              "(nothing but a command's own earlier output is ever replaced)")
        if not overwrite:
            raise DivsftError(f"{final}: already exists; pass --overwrite or choose another output path")
    _check_writable(final)
    return final


def _refuse_overlap(final: Path, source: str | os.PathLike | None) -> None:
    if source is None or not Path(source).exists():
        return  # a Hub id, or nothing on disk to protect
    out, src = final.resolve(), Path(source).resolve()
    if out == src or src.is_relative_to(out) or (src.is_dir() and out.is_relative_to(src)):
        raise DivsftError(f"{final}: overlaps the input {source}; write the output somewhere else")


def _check_writable(final: Path) -> None:
    """The nearest existing folder above `final` must take a new file (probed, so read-only mounts count)."""
    parent = final.parent
    while not parent.exists():
        if parent.is_symlink() or parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise DivsftError(f"{final}: cannot be created: {parent} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".divsft-probe-", dir=parent)
    except OSError as err:
        raise DivsftError(f"{final}: cannot be written: {parent} refuses new files "
                          f"({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, *, overwrite: bool, owned: Owned, what: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final` in one rename."""
    final = check_output(final, overwrite=overwrite, owned=owned, what=what)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would hide shared outputs from others
    check_output(final, overwrite=overwrite, owned=owned, what=what)  # nothing new appeared meanwhile
    if final.exists():
        # Keep the old output until the new one is complete, then swap.
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        final.rename(trash / final.name)
        staging.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(final)


def staged_cache_dir(final: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """`staged_dir` for an entry of our own cache (a converted model or tokenizer): everything there is
    ours, so a leftover entry (an older or broken conversion) is replaced without asking."""
    return staged_dir(final, overwrite=True, owned=lambda path: True, what="a cache entry")


@contextlib.contextmanager
def staged_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in `final`'s folder; on success it replaces `final` (`os.replace`).

    Callers check `final` with `check_output` first; parts of a staged folder need no check.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make shared outputs unreadable to others
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write JSON atomically: a half-written file is never visible under `path`."""
    with staged_file(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """One JSON object per line, atomically."""
    with staged_file(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, what: str):
    """A JSON file's content, or one line naming the file and what is wrong with it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DivsftError(f"{path}: missing; is this {what}?") from None
    except OSError as err:
        raise DivsftError(f"{path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise DivsftError(f"{path}: not UTF-8 text; is this {what}?") from None
    except json.JSONDecodeError as err:
        raise DivsftError(f"{path}: line {err.lineno}: invalid JSON ({err.msg}); is this {what}?") from None
