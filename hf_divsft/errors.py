"""The one error type users see: a one-line message that names the file, row or field and what to do."""

from __future__ import annotations

import re

RAISED = re.compile(r"^([A-Za-z_][\w.]*): (.+)$", re.MULTILINE)  # a traceback's `module.Error: message` line


class DivsftError(ValueError):
    """Bad input or an impossible request; the CLI prints it on one line and exits with code 2."""


def reason(err: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def last_raised(traceback: str, skip: str | None = None) -> tuple[str, str] | None:
    """(name, message) of the exception another process's traceback text ends in: its last `Name: message`
    line whose name does not start with `skip`. Callers pass ours (named `hf_divsft.…`) on as they read."""
    raised = [match for match in RAISED.finditer(traceback) if not (skip and match.group(1).startswith(skip))]
    return raised[-1].groups() if raised else None
