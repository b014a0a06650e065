"""`mnistlite init`, `train`, `seeds` and `table`: a starter project with the user's own models; one run of one model;
one recipe under N seeds and the consistency verdict; a multi-seed table over every model with a tag (`--tag seed`:
the reproductions, `--tag ladder`: the params -> accuracy frontier)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..engine import resume, train
from ..engine.rundir import default_run_dir
from ..errors import MnistliteError
from ..models import list_models
from ..reports import leaderboard as lb
from ..runs import seeds as sweeps
from . import common

STARTER = Path(__file__).resolve().parent.parent / "starter"


def register(sub) -> None:
    p = sub.add_parser(
        "init",
        help="create a starter project: two plain-torch models, an experiment file, a README",
        description="Write DIR/models/model_1.py and model_2.py (a baseline and one improved step), "
        "DIR/experiment.toml (the two as a progression) and DIR/README.md (the commands to train, "
        "compare and write the report). DIR must not exist yet, or be empty.",
    )
    p.add_argument("dir", metavar="DIR", help="folder to create")
    p.set_defaults(func=run_init)

    p = sub.add_parser("train", help="train one model with its recipe; every recipe field is a flag")
    common.add_config_flags(p)
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<model>-s<seed>-<time>)")
    p.add_argument("--runs-root", metavar="DIR", default="runs", help="parent of default run directories")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last epoch")
    common.add_trust_code(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_dry_run(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("seeds", help="train one recipe under several seeds and aggregate (consistency.json/.png)")
    p.add_argument("model", help="model name (see 'mnistlite models')")
    common.add_seed_flags(p)
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: runs/seeds/<model>)")
    common.add_storage_flags(p, "seeds", "seeds-<model>")
    p.add_argument(
        "--reuse",
        metavar="DIR",
        action="append",
        default=[],
        help="an earlier sweep folder: its finished seeds of the same recipe are linked into --out, "
        "not trained again (repeatable)",
    )
    common.add_config_flags(p, skip=("model", "seed"))
    common.add_dry_run(p)
    p.set_defaults(func=run_seeds)

    p = sub.add_parser("table", help="multi-seed table (and frontier plot) over every model with a tag")
    p.add_argument("--tag", required=True, help="seed (reproductions), ladder (params -> accuracy), ...")
    common.add_seed_flags(p, " per model")
    p.add_argument("--out", metavar="DIR", help="sweeps folder (default: runs/table/<tag>)")
    p.add_argument("--markdown", metavar="FILE", help="write the table (and plot beside it) here")
    p.add_argument("--no-train", action="store_true", help="only render from finished sweeps")
    common.add_config_flags(p, skip=("model", "seed"))
    common.add_dry_run(p)
    p.set_defaults(func=run_table)


def run_init(args) -> None:
    out = Path(args.dir)
    files = sorted(p.relative_to(STARTER) for p in STARTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MnistliteError(f"{out} already exists and is not an empty folder; choose another DIR")
    try:
        for rel in files:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(STARTER / rel, out / rel)
    except OSError as e:
        raise MnistliteError(f"cannot write {out} ({e.strerror or e})") from None
    for rel in files:
        print(f"wrote {out / rel}")
    print(f"next: cd {out} && mnistlite experiment experiment.toml --dry-run")


def run_train(args) -> None:
    if args.resume:
        resume(Path(args.resume), progress=False if args.no_progress else None, trust_code=args.trust_code)
        return
    cfg = common.config_from_args(args)
    out = Path(args.out) if args.out else default_run_dir(args.runs_root, cfg.model, cfg.seed)
    train(cfg, run_dir=out, progress=False if args.no_progress else None)


def run_seeds(args) -> None:
    seeds = common.seeds_from_args(args)
    cfg = common.config_from_args(args, model=args.model)
    out = Path(args.out) if args.out else Path("runs") / "seeds" / args.model
    reuse = [Path(d) for d in args.reuse]
    missing = next((d for d in reuse if not d.is_dir()), None)
    if missing is not None:
        raise MnistliteError(f"--reuse {missing}: no such folder")
    agg = sweeps.run_seeds(cfg, seeds, out, jobs=args.jobs, storage=args.storage, study=args.study, reuse=reuse)
    print(sweeps.format_aggregate(agg))
    print(f"wrote {out / 'consistency.json'} and {out / 'consistency.png'}")


# Why the time column needs its caveat: the rows were trained over many sessions.
TIME_NOTE = (
    "MACs/image: multiply-accumulates of one forward pass (torchinfo). s per run: the median over seeds of each"
    " run's `wall_seconds` (result.json), the whole run with its evaluations, on the CPU thread count shown"
    ' (config.json) and on whatever machine trained it (docs/accuracy.md, "Where the runs ran"), one or two'
    " runs at a time: compare times only between rows trained alike."
)


def run_table(args) -> None:
    if not list_models(args.tag):
        raise MnistliteError(f"no model has the tag {args.tag!r}; see 'mnistlite models --json' for tags")
    seeds = common.seeds_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / "table" / args.tag
    if args.no_train:
        rows = lb.load_rows(out, args.tag)
    else:
        rows = lb.run_table(args.tag, seeds, out, jobs=args.jobs, overrides=common.config_overrides(args))
    if not rows:
        raise MnistliteError(f"no finished sweeps under {out}; run without --no-train first")
    lb.attach_threads(rows, out)
    table = lb.markdown_table(rows, claims=args.tag == "seed", cost=args.tag != "seed")
    print(table)
    if args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        parts = [table, "", lb.HOLDING_NOTE, ""]
        if args.tag != "seed":
            png = md.with_suffix(".png")
            lb.plot_frontier(rows, png)
            parts += [TIME_NOTE, "", lb.anchors_table(), "", f"![params vs accuracy]({png.name})"]
        md.write_text("\n".join(parts) + "\n")
        print(f"wrote {md}")
