"""`mnistlite experiment FILE`: train every step of an experiment file per seed, then write its report."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import MnistliteError
from ..reports.experiment import load_experiment, run_experiment
from .common import DRY_RUN

DEFAULT_ROOT = Path("runs") / "experiments"


def register(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="run an experiment file (TOML: steps x seeds) and write its report.md",
        description="Train every step of FILE for every seed into OUT/<step>/seed<k>/, skipping runs already "
        "done with the same config and resuming interrupted ones, then write OUT/report.md.",
    )
    p.add_argument("file", metavar="FILE", help="experiment file, e.g. experiments/progression.toml")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, metavar="N", help="seeds 1..N (default: the file's `seeds`, else 1)")
    seeds.add_argument("--seed-list", metavar="S1,S2", help="these seeds, comma-separated")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/experiments/<file stem>)")
    p.add_argument("--epochs", type=int, metavar="N", help="override every step's epochs")
    p.add_argument("--limit-train", type=int, metavar="N", help="train on the first N images only (smoke runs)")
    p.add_argument("--data-dir", metavar="DIR", help="data root holding MNIST/raw/")
    p.add_argument("--device", metavar="DEV", help="auto, cpu or cuda (default: each recipe's, i.e. auto)")
    p.add_argument(
        "--dry-run", action="store_true",
        help="1 epoch on 1,000 images per run, into runs/experiments/<stem>-dry-run unless --out is given",
    )
    p.add_argument("--plan", action="store_true", help="validate the file and print what would run; train nothing")
    p.add_argument("--rerun-changed", action="store_true",
                   help="delete and retrain runs whose saved config differs from the file's")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--storage", metavar="URL",
                   help="share the runs among workers through an Optuna storage (sqlite:///f.db, postgresql://...)")
    p.add_argument("--study", metavar="NAME", help="sweep name in --storage (default: experiment-<out folder>)")
    p.set_defaults(func=run)


def parse_seeds(args) -> tuple[int, ...] | None:
    if args.seeds is not None:
        if args.seeds < 1:
            raise MnistliteError(f"--seeds must be at least 1, got {args.seeds}")
        return tuple(range(1, args.seeds + 1))
    if args.seed_list is not None:
        try:
            seeds = tuple(int(s) for s in args.seed_list.split(",") if s.strip())
        except ValueError:
            raise MnistliteError(f"--seed-list must be integers separated by commas, got {args.seed_list!r}") from None
        if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise MnistliteError(f"--seed-list must be distinct integers >= 0, got {args.seed_list!r}")
        return seeds
    return None


def command_line(args) -> str:
    """The command as typed, rebuilt from the parsed flags (for the report's provenance line)."""
    parts = ["mnistlite", "experiment", args.file]
    for flag in ("seeds", "seed_list", "out", "epochs", "limit_train", "data_dir", "device"):
        v = getattr(args, flag)
        if v is not None:
            parts += ["--" + flag.replace("_", "-"), str(v)]
    parts += [f"--{f.replace('_', '-')}" for f in ("dry_run", "rerun_changed") if getattr(args, f)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    exp = load_experiment(args.file)
    overrides = {"epochs": args.epochs, "limit_train": args.limit_train, "data_dir": args.data_dir,
                 "device": args.device}
    if args.dry_run:
        overrides.update({k: v for k, v in DRY_RUN.items() if overrides.get(k) is None})
    overrides = {k: v for k, v in overrides.items() if v is not None}
    stem = Path(args.file).stem + ("-dry-run" if args.dry_run else "")
    out = Path(args.out) if args.out else DEFAULT_ROOT / stem
    run_experiment(
        exp, out, seeds=parse_seeds(args), overrides=overrides, rerun_changed=args.rerun_changed,
        plan_only=args.plan, progress=False if args.no_progress else None, command=command_line(args),
        storage=args.storage, study=args.study,
    )
    return 0
