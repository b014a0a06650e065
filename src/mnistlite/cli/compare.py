"""`mnistlite compare`: a table of runs side by side, and their test accuracy in one plot."""

from __future__ import annotations

import json
from pathlib import Path

from ..reports.compare import compare, format_compare, format_paired, is_seeds_dir, paired_seeds

DEFAULT_PNG = "runs/compare.png"


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare run directories: a table of headline numbers and an overlay plot of test accuracy; "
        "two seeds folders are also paired seed by seed",
    )
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories (an experiment or seeds folder stands for all its runs); exactly two seeds folders "
        "(consistency.json) add a paired comparison: A - B over their common seeds, its standard error, A's wins",
    )
    p.add_argument("--out", metavar="PNG", default=DEFAULT_PNG, help=f"overlay plot (default: {DEFAULT_PNG})")
    p.add_argument("--json", action="store_true", help="print the rows as JSON, for scripts")


def run(args) -> None:
    rows, png = compare(args.dirs, args.out)
    dirs = [Path(d) for d in args.dirs]
    pair = paired_seeds(*dirs) if len(dirs) == 2 and all(map(is_seeds_dir, dirs)) else None
    if args.json:
        print(json.dumps(rows if pair is None else {"runs": rows, "paired": pair}, indent=2))
    else:
        print(format_compare(rows))
        if pair is not None:
            print()
            print(format_paired(pair))
        print(f"\nplot: {png}")
