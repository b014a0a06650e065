"""The one error type users see.

The user's fault raises `MnistliteError`: the CLI prints one line on stderr and exits 2; a bug may traceback.
"""


class MnistliteError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""

    exit_code = 2
