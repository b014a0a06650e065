"""`mnistlite seeds MODEL`: the same recipe under N seeds, and the consistency verdict."""

from __future__ import annotations

from pathlib import Path

from ..errors import MnistliteError
from ..runs.seeds import format_aggregate, run_seeds
from .common import add_config_flags, add_dry_run, add_seed_flags, add_storage_flags, config_from_args, seeds_from_args


def register(sub) -> None:
    p = sub.add_parser("seeds", help="train one recipe under several seeds and aggregate (consistency.json/.png)")
    p.add_argument("model", help="model name (see 'mnistlite models')")
    add_seed_flags(p)
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: runs/seeds/<model>)")
    add_storage_flags(p, "seeds", "seeds-<model>")
    p.add_argument(
        "--reuse",
        metavar="DIR",
        action="append",
        default=[],
        help="an earlier sweep folder: its finished seeds of the same recipe are linked into --out, "
        "not trained again (repeatable)",
    )
    add_config_flags(p, skip=("model", "seed"))
    add_dry_run(p)


def run(args) -> None:
    seeds = seeds_from_args(args)
    cfg = config_from_args(args, model=args.model)
    out = Path(args.out) if args.out else Path("runs") / "seeds" / args.model
    reuse = [Path(d) for d in args.reuse]
    missing = next((d for d in reuse if not d.is_dir()), None)
    if missing is not None:
        raise MnistliteError(f"--reuse {missing}: no such folder")
    agg = run_seeds(cfg, seeds, out, jobs=args.jobs, storage=args.storage, study=args.study, reuse=reuse)
    print(format_aggregate(agg))
    print(f"wrote {out / 'consistency.json'} and {out / 'consistency.png'}")
