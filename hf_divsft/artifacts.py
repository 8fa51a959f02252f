"""The one way hf-divsft writes outputs: build in a temporary sibling, move into place when complete.

A crash or a bad input therefore never leaves a half-written folder or file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DivsftError


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final` in one rename."""
    final = Path(final)
    check_free(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        # Keep the old output until the new one is complete, then swap.
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        final.rename(trash / final.name)
        staging.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(final)


def check_free(final: Path, overwrite: bool) -> None:
    if final.exists() and not overwrite:
        raise DivsftError(f"{final}: already exists; pass --overwrite or choose another --out")


@contextlib.contextmanager
def staged_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in `final`'s folder; on success it replaces `final` (`os.replace`)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make shared outputs unreadable to others
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write JSON atomically: a half-written file is never visible under `path`."""
    with staged_file(path) as tmp:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, ensure_ascii=False, allow_nan=False)
            handle.write("\n")
