"""`mnistlite models`, `summary` and `bench`: the zoo, as a table, JSON or a layer table; a model's training and
eval throughput and epoch time against the seeds' pipeline."""

from __future__ import annotations

import json

from .. import bench
from ..errors import MnistliteError
from ..modelinfo import EXPERIMENTS, candidates, profile_registered, summary_text
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


def model_rows(tag: str | None = None, files: list[str] | tuple[str, ...] = (), all_: bool = False) -> list[dict]:
    from ..models.usercode import file_entries

    names = list_models(tag) + [e.name for f in files for e in file_entries(f) if tag is None or tag in e.tags]
    rounds = {c.entry.name: list(c.rounds) for c in (candidates() if all_ and EXPERIMENTS.is_dir() else ())}
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
    return rows


def _source(row: dict) -> str:
    rounds = row.get("candidate_of")
    if not rounds:
        return row["source"]
    more = f" (and {len(rounds) - 1} more)" if len(rounds) > 1 else ""
    return f"candidate of {rounds[0]}{more}"


def run_models(args) -> None:
    rows = model_rows(args.tag, args.files, args.all)
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
        print(f"{r['name']:<{w}}  {r['params']:>7,}  {r['macs']:>10,}  {ok:>3}  {_source(r)}")


def run_summary(args) -> None:
    get_entry(args.model)  # unknown names fail before torchinfo runs
    print(summary_text(args.model))


def run_bench(args) -> None:
    if args.steps < 1:
        raise MnistliteError("--steps must be at least 1")
    check_at_least(args, rounds=1)
    if args.baseline_workers < 0:
        raise MnistliteError(f"--baseline-workers must be 0 (no worker processes) or more, got {args.baseline_workers}")
    over = {"batch_size": args.batch_size} if args.batch_size is not None else {}  # 0 is refused, not ignored
    r = bench.run_bench(
        args.model,
        device=args.device,
        data_dir=args.data_dir,
        steps=args.steps,
        baseline_batches=None if args.baseline_batches < 0 else args.baseline_batches,
        baseline_workers=args.baseline_workers,
        epoch=not args.no_epoch,
        full=args.full,
        threads=args.threads,
        overrides=over,
        against=args.against,
        precision=not args.no_precision,
        paths=not args.no_paths,
        rounds=args.rounds,
    )
    print(json.dumps(r, indent=2) if args.json else bench.format_bench(r))
