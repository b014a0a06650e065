"""`mnistlite audit DIR`: the test readings under DIR that came before each claim (reports/audit.py)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "audit", help="list, per budget and claim, the test readings that came before it and the rounds they started"
    )
    p.add_argument(
        "dir", metavar="DIR", help="a folder of runs and claims (consistency.json, ladder.md), e.g. docs/results"
    )
    p.add_argument("--json", action="store_true", help="print the audit as JSON, for scripts")


def run(args) -> None:
    from ..reports.audit import audit, render, to_json

    doc = audit(args.dir)
    print(to_json(doc) if args.json else render(doc), end="")
