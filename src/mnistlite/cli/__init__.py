"""The `mnistlite` command: one subcommand per module in this package.

Each module exposes `register(subparsers)`, which adds its parser and sets
`func`. Errors the user can fix arrive as MnistliteError and leave as one line
on stderr with exit code 2; nothing else is caught here, so bugs stay visible.
"""

from __future__ import annotations

import importlib
import sys

from ..errors import MnistliteError
from .common import Parser

# Order is the order of `mnistlite --help`.
COMMANDS = [
    "init",
    "train",
    "seeds",
    "table",
    "models",
    "bench",
    "experiment",
    "report",
    "compare",
    "search",
    "tune",
    "export",
    "predict",
    "serve",
]


def build_parser() -> Parser:
    parser = Parser(prog="mnistlite", description="Train tiny MNIST classifiers under hard budgets.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"mnistlite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
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
