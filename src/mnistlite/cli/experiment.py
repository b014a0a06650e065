"""`mnistlite experiment FILE`: train every step of an experiment file per seed, then write its report."""

from __future__ import annotations

from pathlib import Path

from ..reports.experiment import load_experiment, run_experiment
from . import common

DEFAULT_ROOT = Path("runs") / "experiments"


def register(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="run an experiment file (TOML: steps x seeds) and write its report.md",
        description="Train every step of FILE for every seed into OUT/<step>/seed<k>/, skipping runs already "
        "done with the same config and resuming interrupted ones, then write OUT/report.md.",
    )
    p.add_argument("file", metavar="FILE", help="experiment file, e.g. experiments/progression.toml")
    common.add_file_run_flags(p, "step", "runs/experiments/<file stem>")
    common.add_dry_run(p, "1 epoch on 1,000 images per run, into runs/experiments/<stem>-dry-run unless --out is given")
    p.add_argument("--plan", action="store_true", help="validate the file and print what would run; train nothing")
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="move aside (to <run>.old-<timestamp>) and retrain runs whose saved config differs from the file's",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_jobs_flag(p, "runs trained at once in worker processes (no per-epoch lines)")
    common.add_storage_flags(p, "runs", "experiment-<out folder>")
    p.set_defaults(func=run)


def run(args) -> None:
    exp = load_experiment(args.file)
    overrides = common.file_overrides(args)
    out = common.file_out(args, DEFAULT_ROOT)
    run_experiment(
        exp,
        out,
        seeds=common.file_seeds(args),
        overrides=overrides,
        rerun_changed=args.rerun_changed,
        plan_only=args.plan,
        progress=False if args.no_progress else None,
        command=common.command_line("experiment", args, switches=("dry_run", "rerun_changed")),
        storage=args.storage,
        study=args.study,
        jobs=args.jobs,
    )
