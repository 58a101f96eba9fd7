"""Errors that the CLI turns into a one-line message and a non-zero exit code."""


class KedgeError(Exception):
    """A failure with a message meant for the operator (no traceback)."""

    exit_code = 1
