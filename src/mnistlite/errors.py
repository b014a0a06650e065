"""The one error type users see.

The user's fault (a bad flag, a missing file, an unknown model) raises `MnistliteError`: the CLI prints
one line on stderr and exits 2. Anything else is a bug and may traceback.
"""


class MnistliteError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""

    exit_code = 2
