"""The `mnistlite` command. Each module's `register(subparsers)` adds its commands' parsers and sets the function
that runs each (it returns None or an exit code). A MnistliteError leaves as one line on stderr; nothing else
is caught. common.py: the one-line-error parser and the shared flags. The commands, in `--help`'s order:
training.py (init, train, seeds, table), models.py (models, summary, bench), reports.py (experiment, report, compare,
evaluate, audit), search.py (search, tune), deploy.py (export, predict, serve).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import MnistliteError
from .common import Parser

MODULES = ("training", "models", "reports", "search", "deploy")  # in the order of `mnistlite --help`


# Commands that train (or time training): `--malloc-tuning auto` tunes the allocator for these only.
TUNED_COMMANDS = frozenset({"train", "seeds", "table", "bench", "experiment", "search", "tune"})
MALLOC_TUNING = ("auto", "on", "off")
MALLOC_TUNING_HELP = (
    "glibc's malloc tuning: faster CPU training, process-wide, cannot be undone (default auto: on for "
    "train, seeds, table, bench, experiment, search and tune, off for the other commands, serve among "
    "them, unless MNISTLITE_MALLOC_TUNING=1/0 says otherwise)"
)

EPILOG = (
    "--malloc-tuning {auto,on,off} may also follow the command. environment: MNISTLITE_MALLOC_TUNING=1/0 "
    "turns the malloc tuning on or off where --malloc-tuning is auto."
)


def malloc_tuning_wanted(command: str, flag: str = "auto", env: str | None = None) -> bool:
    """--malloc-tuning on/off, else the environment's 1/0 (`env`), else on for the training commands."""
    if flag != "auto":
        return flag == "on"
    asked = (env or "").strip()
    if asked in ("0", "1"):
        return asked == "1"
    return command in TUNED_COMMANDS


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """os.environ[name] = value while the block runs; put back after, for `main()` called in-process."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextmanager
def allocator_choice(command: str, flag: str = "auto") -> Iterator[bool]:
    """Apply the allocator choice for `command`; yields whether the tuning is on. The CLI, not the library, decides:
    it is process-wide and cannot be undone. MNISTLITE_MALLOC_TUNING hands the choice to spawned workers."""
    from ..engine.device import MALLOC_TUNING_ENV, tune_cpu_allocator

    on = malloc_tuning_wanted(command, flag, os.environ.get(MALLOC_TUNING_ENV))
    with _environ(MALLOC_TUNING_ENV, "1" if on else "0"):
        yield tune_cpu_allocator() if on else False


def build_parser() -> Parser:
    parser = Parser(prog="mnistlite", description="Train tiny MNIST classifiers under hard budgets.", epilog=EPILOG)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"mnistlite {__version__}")
    parser.add_argument("--malloc-tuning", choices=MALLOC_TUNING, default="auto", help=MALLOC_TUNING_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for command in sub.choices.values():
        # After the command too; SUPPRESS leaves the value given before it (or auto) when absent here.
        command.add_argument(
            "--malloc-tuning", choices=MALLOC_TUNING, default=argparse.SUPPRESS, help=MALLOC_TUNING_HELP
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "storage_patience", None) is not None:
        from ..runs.storage import set_patience

        set_patience(args.storage_patience)
    from ..engine.rundir import COMMAND_ENV

    command = shlex.join(["mnistlite", *(sys.argv[1:] if argv is None else argv)])
    try:  # MNISTLITE_COMMAND: the command line that every test reading records
        with _environ(COMMAND_ENV, command), allocator_choice(args.command, args.malloc_tuning):
            return int(args.func(args) or 0)
    except MnistliteError as e:
        print(f"mnistlite {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"mnistlite {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mnistlite models | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
