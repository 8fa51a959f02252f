"""The one error type users see: a one-line message that names the file, row or field and what to do."""


class DivsftError(ValueError):
    """Bad input or an impossible request; the CLI prints it on one line and exits with code 2."""
