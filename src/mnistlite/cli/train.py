"""`mnistlite train`: one run of one model, into its own run directory."""

from __future__ import annotations

from pathlib import Path

from ..engine import resume, train
from ..engine.rundir import default_run_dir
from .common import add_config_flags, add_dry_run, add_trust_code, config_from_args


def register(sub) -> None:
    p = sub.add_parser("train", help="train one model with its recipe; every recipe field is a flag")
    add_config_flags(p)
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<model>-s<seed>-<time>)")
    p.add_argument("--runs-root", metavar="DIR", default="runs", help="parent of default run directories")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last epoch")
    add_trust_code(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dry_run(p)


def run(args) -> None:
    if args.resume:
        resume(Path(args.resume), progress=False if args.no_progress else None, trust_code=args.trust_code)
        return
    cfg = config_from_args(args)
    out = Path(args.out) if args.out else default_run_dir(args.runs_root, cfg.model, cfg.seed)
    train(cfg, run_dir=out, progress=False if args.no_progress else None)
