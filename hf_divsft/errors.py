"""The one error type users see: a one-line message that names the file, row or field and what to do."""


class DivsftError(ValueError):
    """Bad input or an impossible request; the CLI prints it on one line and exits with code 2."""


def reason(err: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
