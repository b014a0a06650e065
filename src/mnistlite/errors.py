"""The one error type users see.

Anything that is the user's fault (a bad flag, a missing or corrupt file, an
unknown model) raises `MnistliteError`. The CLI turns it into a one-line
message on stderr and exit code 2; everything else is a bug and may traceback.
"""


class MnistliteError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""

    exit_code = 2
