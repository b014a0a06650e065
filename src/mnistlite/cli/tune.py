"""`mnistlite tune FILE.toml`: train every candidate of a tuning file per seed and rank them on validation."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..errors import MnistliteError
from .common import DRY_RUN

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
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, metavar="N", help="seeds 1..N (default: the file's `seeds`)")
    seeds.add_argument("--seed-list", metavar="S1,S2", help="these seeds, comma-separated")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (default 1); on CUDA they share the GPU")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads per run (default: cores // jobs)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device of every run (default auto)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/tune/<file stem>)")
    p.add_argument("--epochs", type=int, metavar="E", help="override every candidate's epochs")
    p.add_argument("--limit-train", type=int, metavar="N", help="train on the first N images only (smoke runs)")
    p.add_argument("--data-dir", metavar="DIR", help="data root holding MNIST/raw/")
    p.add_argument("--dry-run", action="store_true",
                   help="1 epoch on 1,000 images per run, into runs/tune/<stem>-dry-run unless --out is given")
    p.set_defaults(func=run)


def command_line(args) -> str:
    """The command rebuilt from the parsed flags, for tuning.md's provenance line."""
    parts = ["mnistlite", "tune", args.file, "--jobs", str(args.jobs)]
    parts += ["--threads", str(args.threads)] if args.threads else []
    for flag in ("seeds", "seed_list", "device", "out", "epochs", "limit_train", "data_dir"):
        v = getattr(args, flag)
        if v is not None:
            parts += ["--" + flag.replace("_", "-"), str(v)]
    return " ".join(shlex.quote(p) for p in parts + (["--dry-run"] if args.dry_run else []))


def run(args) -> int:
    from ..consistency import parse_seed_list
    from ..tuning import TUNING_JSON, TUNING_MD, failed_runs, load_tuning, run_tuning, table

    if args.jobs < 1:
        raise MnistliteError(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads < 0:
        raise MnistliteError(f"--threads must be 0 (cores // jobs) or more, got {args.threads}")
    if args.seeds is not None and args.seeds < 1:
        raise MnistliteError(f"--seeds must be at least 1, got {args.seeds}")
    seeds = (
        tuple(range(1, args.seeds + 1)) if args.seeds is not None
        else tuple(parse_seed_list(args.seed_list)) if args.seed_list else None
    )
    tf = load_tuning(args.file)
    overrides = {"epochs": args.epochs, "limit_train": args.limit_train, "device": args.device,
                 "data_dir": args.data_dir}
    if args.dry_run:
        overrides.update({k: v for k, v in DRY_RUN.items() if overrides.get(k) is None})
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:  # a bad --epochs fails here, before any worker starts
        for c in tf.candidates:
            tf.config(c, tf.seeds[0], overrides)
    out = Path(args.out) if args.out else DEFAULT_ROOT / (Path(args.file).stem + ("-dry-run" if args.dry_run else ""))
    summary = run_tuning(tf, out, seeds=seeds, overrides=overrides, jobs=args.jobs, threads=args.threads,
                         command=command_line(args))
    print(table(summary))
    print(f"wrote {out / TUNING_JSON} and {out / TUNING_MD}")
    failed = failed_runs(summary)
    if failed:
        print(f"{failed} run(s) have no result; see {out / TUNING_MD}", file=sys.stderr)
    return 1 if failed else 0
