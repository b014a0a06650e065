"""What a run says and hears: log lines to stdout and log.txt, and Ctrl-C/SIGTERM as a flag."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import IO, Any

from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

from ..errors import MnistliteError


class Echo:
    """Prints a line to stdout and appends it to the run's log.txt."""

    def __init__(self, log_path: Path | None, quiet: bool = False):
        self.log: IO[str] | None = open(log_path, "a") if log_path else None  # closed by close()
        self.quiet = quiet

    def __call__(self, line: str) -> None:
        if not self.quiet:
            tqdm.write(line, file=sys.stdout)
        if self.log:
            try:
                self.log.write(line + "\n")
                self.log.flush()
            except OSError as e:  # a full disk: one line, not a traceback
                raise MnistliteError(f"cannot write {self.log.name} ({e.strerror or e})") from None

    def close(self) -> None:
        if self.log:
            with suppress(OSError):  # the write that failed has already been reported
                self.log.close()


@contextmanager
def stop_requests() -> Iterator[list[str]]:
    """Turn the first Ctrl-C/SIGTERM into a flag checked after each batch; a second signal gets the
    default behaviour, so a stuck run can still be killed."""
    requested: list[str] = []
    handlers: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        if requested:
            signal.signal(signum, handlers[signal.Signals(signum)])
            raise KeyboardInterrupt
        requested.append(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(ValueError):  # not the main thread: no signal handling there
            handlers[sig] = signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
