"""`mnistlite table --tag TAG`: a multi-seed table over every model with a tag: `--tag seed` the
reproduction table (with each seed README's claim), `--tag ladder` the params -> accuracy frontier.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MnistliteError
from ..models import list_models
from ..reports import leaderboard as lb
from .common import add_config_flags, add_dry_run, add_seed_flags, config_overrides, seeds_from_args


def register(sub) -> None:
    p = sub.add_parser("table", help="multi-seed table (and frontier plot) over every model with a tag")
    p.add_argument("--tag", required=True, help="seed (reproductions), ladder (params -> accuracy), ...")
    add_seed_flags(p, " per model")
    p.add_argument("--out", metavar="DIR", help="sweeps folder (default: runs/table/<tag>)")
    p.add_argument("--markdown", metavar="FILE", help="write the table (and plot beside it) here")
    p.add_argument("--no-train", action="store_true", help="only render from finished sweeps")
    add_config_flags(p, skip=("model", "seed"))
    add_dry_run(p)


# Why the time column needs its caveat: the rows were trained over many sessions.
TIME_NOTE = (
    "MACs/image: multiply-accumulates of one forward pass (torchinfo). s per run: the median over seeds of each"
    " run's `wall_seconds` (result.json), the whole run with its evaluations, on the CPU thread count shown"
    ' (config.json) and on whatever machine trained it (docs/accuracy.md, "Where the runs ran"), one or two'
    " runs at a time: compare times only between rows trained alike."
)


def run(args) -> None:
    if not list_models(args.tag):
        raise MnistliteError(f"no model has the tag {args.tag!r}; see 'mnistlite models --json' for tags")
    seeds = seeds_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / "table" / args.tag
    rows = (
        lb.load_rows(out, args.tag)
        if args.no_train
        else lb.run_table(args.tag, seeds, out, jobs=args.jobs, overrides=config_overrides(args))
    )
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
