"""`mnistlite compare`: a table of runs side by side, and their test accuracy in one plot."""

from __future__ import annotations

import json

from ..reports.compare import compare, format_compare

DEFAULT_PNG = "runs/compare.png"


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare run directories: a table of headline numbers and an overlay plot of test accuracy",
    )
    p.add_argument(
        "dirs", nargs="+", metavar="RUN_DIR", help="run directories (an experiment folder stands for all its runs)"
    )
    p.add_argument("--out", metavar="PNG", default=DEFAULT_PNG, help=f"overlay plot (default: {DEFAULT_PNG})")
    p.add_argument("--json", action="store_true", help="print the rows as JSON, for scripts")
    p.set_defaults(func=run)


def run(args) -> int:
    rows, png = compare(args.dirs, args.out)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_compare(rows))
        print(f"\nplot: {png}")
    return 0
