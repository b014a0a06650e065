"""`mnistlite report`: regenerate a report from existing runs, without training."""

from __future__ import annotations

from pathlib import Path

from ..errors import MnistliteError
from ..reports.render import render_experiment, render_runs
from ..reports.sections import is_experiment_dir


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a markdown report from an experiment folder or from run directories (no training)",
        description="EXPERIMENT_DIR (a folder written by 'mnistlite experiment'): re-render its report.md. "
        "RUN_DIR...: a report with one section per run, in the order given.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="one experiment folder, or one or more run directories")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="report file (default: EXPERIMENT_DIR/report.md, or report.md beside the run directories)",
    )


def run(args) -> None:
    dirs = [Path(d) for d in args.dirs]
    exps = [d for d in dirs if is_experiment_dir(d)]
    if exps:
        if len(dirs) > 1:
            raise MnistliteError(f"{exps[0]} is an experiment folder: report on it alone, or list run directories only")
        report = render_experiment(exps[0], args.out)
    else:
        report = render_runs(dirs, args.out)
    print(f"wrote {report}")
