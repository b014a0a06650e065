"""`mnistlite models` and `mnistlite summary`: the zoo, as a table, JSON or a layer table."""

from __future__ import annotations

import json

from ..errors import MnistliteError
from ..modelinfo import EXPERIMENTS, candidates, profile_registered, summary_text
from ..models import BUDGET, get_entry, list_models


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
