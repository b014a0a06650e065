"""`mnistlite seeds MODEL`: the same recipe under N seeds, and the consistency verdict."""
from __future__ import annotations

from pathlib import Path

from ..consistency import format_summary, parse_seed_list, run_seeds
from .common import DRY_RUN, add_config_flags, add_dry_run, config_from_args


def register(sub) -> None:
    p = sub.add_parser("seeds", help="train one recipe under several seeds and aggregate (consistency.json/.png)")
    p.add_argument("model", help="model name (see 'mnistlite models')")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seeds", type=int, default=5, metavar="N", help="run seeds 1..N (default 5)")
    g.add_argument("--seed-list", metavar="S,S,...", help="run exactly these seeds, e.g. 7,8,9")
    p.add_argument("--jobs", type=int, default=1, help="seeds trained at once, each on cores/jobs threads")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: runs/seeds/<model>)")
    p.add_argument("--storage", metavar="URL",
                   help="share the seeds among workers through an Optuna storage (sqlite:///f.db, postgresql://...)")
    p.add_argument("--study", metavar="NAME", help="sweep name in --storage (default: seeds-<model>)")
    add_config_flags(p, skip=("model", "seed"))
    add_dry_run(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import MnistliteError

    seeds = parse_seed_list(args.seed_list) if args.seed_list else list(range(1, args.seeds + 1))
    if args.seeds < 1:
        raise MnistliteError(f"--seeds must be at least 1, got {args.seeds}")
    if args.jobs < 1:
        raise MnistliteError(f"--jobs must be at least 1, got {args.jobs}")
    cfg = config_from_args(args, model=args.model, **(DRY_RUN if args.dry_run else {}))
    out = Path(args.out) if args.out else Path("runs") / "seeds" / args.model
    summary = run_seeds(cfg, seeds, out, jobs=args.jobs, storage=args.storage, study=args.study)
    print(format_summary(summary))
    print(f"wrote {out / 'consistency.json'} and {out / 'consistency.png'}")
    return 0
