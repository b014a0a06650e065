"""`mnistlite tune FILE.toml`: train every candidate of a tuning file per seed and rank them on validation."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import MnistliteError
from .common import add_dry_run, add_file_run_flags, add_jobs_flag, command_line, file_out, file_overrides, file_seeds

DEFAULT_ROOT = Path("runs") / "tune"


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="compare candidate architectures + recipes on the validation split (TOML file)",
        description="Train every candidate of FILE for every seed into OUT/<candidate>/seed<S>/ through one pool "
        "of --jobs workers, skipping runs already done with the same config, then rank the candidates by "
        "final-epoch validation accuracy in OUT/tuning.json and OUT/tuning.md. The test set is not read.",
    )
    p.add_argument("file", metavar="FILE", help="tuning file, e.g. experiments/tuning/frontier.toml")
    add_file_run_flags(p, "candidate", "runs/tune/<file stem>")
    add_jobs_flag(p, "runs trained at once; on CUDA they share the GPU")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads per run (default: cores // jobs)")
    add_dry_run(p, "1 epoch on 1,000 images per run, into runs/tune/<stem>-dry-run unless --out is given")


def run(args) -> int:
    from ..reports.tuning import failed_runs, table
    from ..tuning import TUNING_JSON, TUNING_MD, load_tuning, run_tuning

    if args.threads < 0:
        raise MnistliteError(f"--threads must be 0 (cores // jobs) or more, got {args.threads}")
    seeds = file_seeds(args)
    tf = load_tuning(args.file)
    overrides = file_overrides(args)
    if overrides:  # a bad --epochs fails here, before any worker starts
        for c in tf.candidates:
            tf.config(c, tf.seeds[0], overrides)
    out = file_out(args, DEFAULT_ROOT)
    ranking = run_tuning(
        tf,
        out,
        seeds=seeds,
        overrides=overrides,
        jobs=args.jobs,
        threads=args.threads,
        command=command_line("tune", args, extra=("jobs",) + (("threads",) if args.threads else ())),
    )
    print(table(ranking))
    print(f"wrote {out / TUNING_JSON} and {out / TUNING_MD}")
    failed = failed_runs(ranking)
    if failed:
        print(f"{failed} run(s) have no result; see {out / TUNING_MD}", file=sys.stderr)
    return 1 if failed else 0
