"""`mnistlite models`, `summary` and `bench`: the zoo, as a table, JSON or a layer table; a model's training and
eval throughput and epoch time against the seeds' pipeline."""

from __future__ import annotations

import json

from .. import bench
from ..errors import MnistliteError
from ..modelinfo import EXPERIMENTS, candidates, profile_registered
from ..models import BUDGET, get_entry, list_models
from .common import check_at_least


def register(sub) -> None:
    p = sub.add_parser("models", help="list the supported models (--all: and the tuning candidates)")
    p.add_argument("--json", action="store_true", help="a JSON list of objects, for scripts")
    p.add_argument("--tag", help="only models with this tag (seed, under8k, flagship, frontier, user, ...)")
    p.add_argument(
        "--from",
        dest="files",
        action="append",
        default=[],
        metavar="FILE",
        help="also list the models of your file (its @register_model names, else its nn.Module classes)",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help=f"also list the tuning candidates: the models of the files that the experiment and tuning files "
        f"under ./{EXPERIMENTS}/ name (`models = [...]`), each with the rounds that ran it",
    )
    p.set_defaults(func=run_models)

    s = sub.add_parser("summary", help="print a model's layer table, parameters, MACs and budget verdict")
    s.add_argument("model", help="a registered name, or your own: my_models.py:Net")
    s.set_defaults(func=run_summary)

    p = sub.add_parser("bench", help="measure speed against a naive per-sample DataLoader baseline")
    p.add_argument(
        "--model", default="mnistlite8k_model3", help="model to time: a name or file.py:Name (default: seed 000 Model3)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--data-dir", help="data root")
    p.add_argument("--steps", type=int, default=100, help="training steps for the throughput figure")
    p.add_argument(
        "--baseline-batches", type=int, default=100, help="baseline batches to time (0 skips it, -1 times a full epoch)"
    )
    p.add_argument("--baseline-workers", type=int, default=2, help="DataLoader workers of the baseline")
    p.add_argument("--no-epoch", action="store_true", help="skip the full-epoch timing")
    p.add_argument(
        "--rounds", type=int, default=3, help="time epoch and baseline this many times in turns; medians (default 3)"
    )
    p.add_argument("--full", action="store_true", help="also time a complete run of the model's recipe")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--batch-size", type=int, help="override the batch size")
    p.add_argument(
        "--against",
        metavar="MODEL",
        help="also time this model (e.g. your plain-torch file.py:Net) with the same recipe, "
        "on the fused unit and on torch's layers",
    )
    p.add_argument(
        "--no-precision", action="store_true", help="skip the fp32 against bf16 autocast training comparison"
    )
    p.add_argument("--no-paths", action="store_true", help="skip the BN paths (fused unit against torch's layers)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_bench)


def run_models(args) -> None:
    from ..models.usercode import file_entries

    tag = args.tag
    names = list_models(tag) + [e.name for f in args.files for e in file_entries(f) if tag is None or tag in e.tags]
    rounds = {c.entry.name: list(c.rounds) for c in (candidates() if args.all and EXPERIMENTS.is_dir() else ())}
    rows = []
    for name in names + [n for n in rounds if tag is None or tag in get_entry(n).tags]:
        e, p = get_entry(name), profile_registered(name)
        rows.append(
            {
                "name": name,
                "params": p.params,
                "macs": p.macs,
                "source": e.source,
                "tags": list(e.tags),
                "fits_budget": p.params < BUDGET,
                "stated_params": e.stated_params,
                "recipe": e.recipe,
                "description": e.description,
                **({"candidate_of": rounds[name]} if name in rounds else {}),
            }
        )
    if not rows and args.tag:
        tags = sorted({t for n in list_models() for t in get_entry(n).tags})
        raise MnistliteError(f"no model has tag {args.tag!r}; known tags: {', '.join(tags)}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    w = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':<{w}}  {'params':>7}  {'MACs':>10}  {'<8k':>3}  source")
    for r in rows:
        ok = "yes" if r["fits_budget"] else "no"
        rounds_of = r.get("candidate_of") or []
        more = f" (and {len(rounds_of) - 1} more)" if len(rounds_of) > 1 else ""
        source = f"candidate of {rounds_of[0]}{more}" if rounds_of else r["source"]
        print(f"{r['name']:<{w}}  {r['params']:>7,}  {r['macs']:>10,}  {ok:>3}  {source}")


def run_summary(args) -> None:
    entry = get_entry(args.model)  # unknown names fail before torchinfo runs
    p = profile_registered(args.model)
    print(f"{entry.name}: {entry.source}\n{p}")
    if entry.stated_params is not None:
        same = "matches" if entry.stated_params == p.params else "DIFFERS from"
        print(f"Source states:    {entry.stated_params:,} parameters ({same} ours)")


def run_bench(args) -> None:
    check_at_least(args, steps=1, rounds=1)
    if args.baseline_workers < 0:
        raise MnistliteError(f"--baseline-workers must be 0 (no worker processes) or more, got {args.baseline_workers}")
    over = {"batch_size": args.batch_size} if args.batch_size is not None else {}  # 0 is refused, not ignored
    same = ("device", "data_dir", "steps", "baseline_workers", "full", "threads", "against", "rounds")  # flag = keyword
    r = bench.run_bench(
        args.model,
        baseline_batches=None if args.baseline_batches < 0 else args.baseline_batches,
        epoch=not args.no_epoch,
        overrides=over,
        precision=not args.no_precision,
        paths=not args.no_paths,
        **{k: getattr(args, k) for k in same},
    )
    print(json.dumps(r, indent=2) if args.json else bench.format_bench(r))
