"""`mnistlite models` and `mnistlite summary`: the zoo, as a table, JSON or a layer table."""

from __future__ import annotations

import json

from ..modelinfo import profile_registered, summary_text
from ..models import BUDGET, get_entry, list_models


def register(sub) -> None:
    p = sub.add_parser("models", help="list the registered models")
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
    p.set_defaults(func=run_models)

    s = sub.add_parser("summary", help="print a model's layer table, parameters, MACs and budget verdict")
    s.add_argument("model", help="a registered name, or your own: my_models.py:Net")
    s.set_defaults(func=run_summary)


def model_rows(tag: str | None = None, files: list[str] | tuple[str, ...] = ()) -> list[dict]:
    from ..models.usercode import file_entries

    rows = []
    names = list_models(tag) + [e.name for f in files for e in file_entries(f) if tag is None or tag in e.tags]
    for name in names:
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
            }
        )
    return rows


def run_models(args) -> int:
    rows = model_rows(args.tag, args.files)
    if not rows and args.tag:
        from ..errors import MnistliteError

        tags = sorted({t for n in list_models() for t in get_entry(n).tags})
        raise MnistliteError(f"no model has tag {args.tag!r}; known tags: {', '.join(tags)}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':<{w}}  {'params':>7}  {'MACs':>10}  {'<8k':>3}  source")
    for r in rows:
        ok = "yes" if r["fits_budget"] else "no"
        print(f"{r['name']:<{w}}  {r['params']:>7,}  {r['macs']:>10,}  {ok:>3}  {r['source']}")
    return 0


def run_summary(args) -> int:
    get_entry(args.model)  # unknown names fail before torchinfo runs
    print(summary_text(args.model))
    return 0
