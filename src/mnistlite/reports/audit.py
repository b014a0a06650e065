"""`mnistlite audit DIR`: every test reading under DIR, and the claims (consistency.json, ladder.md rows) after them.

Per claim, in its budget: the readings before it, those made during a choice (a run with a validation split), and
every model or recipe first seen after another one's test reading: a round started by a test result.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from ..challenge import BUDGET
from ..engine import rundir as rd
from ..errors import MnistliteError

BUDGETS = (1_000, 2_000, 5_000, BUDGET, 20_000)  # the zoo's under<N>k tags, and the 20k ladder row


def budget_of(params: int | None) -> int | None:
    """The smallest standard budget above `params` (None: above them all, or unknown)."""
    return next((b for b in BUDGETS if params is not None and params < b), None)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


class Dates:
    """A file's date and its source: git's first add (`last`: last change), else its mtime; `sources` counts each."""

    def __init__(self, root: Path) -> None:
        """`git`: each file under `root` that git knows -> the commit times that first added and last changed
        it; a pure move (R100) keeps its dates, a rename with new content (another run) is a new file."""
        top = _git(root, "rev-parse", "--show-toplevel")
        log = top and _git(root, "log", "--reverse", "--diff-filter=AMR", "--name-status", "--format=@%cI", "--", ".")
        self.git: dict[Path, tuple[datetime, datetime]] = {}
        self.sources = {"git": 0, "mtime": 0}
        when = datetime.min
        for line in (log or "").splitlines():
            if line.startswith("@"):
                when = _utc(line[1:])
            elif line:
                status, *paths = line.split("\t")
                old, new = (Path(top.strip(), p).resolve() for p in (paths[0], paths[-1]))  # type: ignore[union-attr]
                moved = self.git.get(old) if status == "R100" else None
                self.git[new] = moved or (self.git[new][0] if status == "M" and new in self.git else when, when)

    def __call__(self, path: Path, last: bool = False) -> tuple[datetime, str]:
        known = self.git.get(path.resolve())
        self.sources["git" if known else "mtime"] += 1
        if known:
            return known[last], "git"
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc), "mtime"


@cache
def _built_hash(name: str) -> str:
    """A run from before the record: the architecture its name builds now (else the name itself)."""
    from ..models import create_model
    from ..models.family import build
    from ..search.space import spec_from_dict

    try:
        family = name.startswith("family:")  # a tuning round's spec, built without registering it
        net = build(spec_from_dict(json.loads(name[7:]))) if family else create_model(name)
        return rd.model_hash(net.state_dict())
    except Exception:  # noqa: BLE001 -- a name the zoo no longer knows still names a model
        return "name:" + hashlib.sha256(name.encode()).hexdigest()[:11]


def read_run(folder: Path, root: Path, dates: Dates) -> list[dict[str, Any]]:
    """A run's test readings, each with what the audit keys on; a run that read nothing: one line, `when` only."""
    cfg = rd.read_json(folder / rd.CONFIG)
    metrics = folder / rd.METRICS
    dated, source = dates(metrics if metrics.is_file() else folder / rd.CONFIG, last=True)  # retrained in place
    recorded = folder / rd.READINGS
    if recorded.is_file():
        readings = [{**r, "when": _utc(r["when"]), "dated_by": "record"} for r in rd.read_jsonl(recorded)]
    else:  # from before the record: the test column, dated by its file
        rows = [r for r in rd.read_metrics(metrics) if r.get("test_acc") is not None] if metrics.is_file() else []
        test = {"epochs": [r["epoch"] for r in rows], "test_acc": [r["test_acc"] for r in rows]}
        readings = [{**test, "when": dated, "dated_by": source}] if rows else []
    result = rd.read_json(folder / rd.RESULT) if (folder / rd.RESULT).is_file() else {}
    params = result.get("params") or next((r["params"] for r in readings if "params" in r), None)
    sha = cfg.get("model_sha256")
    recorded_hash = next((r["model_hash"] for r in readings if "model_hash" in r), None)
    model_hash = recorded_hash or (sha[:16] if sha else _built_hash(cfg["model"]))
    run = {"run": folder.relative_to(root).as_posix(), "model": cfg["model"], "params": params}
    run |= {"budget": budget_of(params), "model_hash": model_hash, "recipe_hash": rd.recipe_hash(cfg)}
    run["first"] = min([dated, *(r["when"] for r in readings)])
    choice = cfg.get("val_size")
    return [{**r, **run, "choice": bool(r.get("val_size", choice))} for r in readings] or [{**run, "when": None}]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def ladder_claims(md: Path, root: Path, dates: Dates) -> list[dict[str, Any]]:
    """The model rows of a ladder table (`mnistlite table`); a row's own runs are in the folder named like the table."""
    lines = md.read_text().splitlines()
    header = next((_cells(line) for line in lines if line.startswith("| model |")), [])
    when, source = dates(md)
    out = []
    for m in (re.match(r"\| `([^`]+)` \|", line) for line in lines if "params" in header):
        if m:
            params = int(_cells(m.string)[header.index("params")].replace(",", ""))
            claim = f"{md.relative_to(root).as_posix()}: {m[1]}"
            own = md.with_suffix("") / m[1]
            out.append({"claim": claim, "model": m[1], "params": params, "when": when, "dated_by": source, "own": own})
    return out


def _flags(readings: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each model and recipe of one budget whose first run came after a test reading of another one."""
    out = []
    for kind in ("model_hash", "recipe_hash"):
        first: dict[str, dict[str, Any]] = {}
        for run in sorted(runs, key=lambda r: (r["first"], r["run"])):
            first.setdefault(run[kind], run)
        for key, run in first.items():
            if prior := [r for r in readings if r[kind] != key and r["when"] < run["first"]]:
                what = {"kind": kind.removesuffix("_hash"), "hash": key, "model": run["model"], "first_run": run["run"]}
                after = {"after_reading": prior[-1]["id"], "readings_before_it": len(prior)}
                out.append({**what, "first_seen": _iso(run["first"]), **after, "budget": run["budget"]})
    return sorted(out, key=lambda f: (f["first_seen"], f["first_run"], f["kind"]))


def audit(root: str | Path) -> dict[str, Any]:
    """The audit of `root` as a JSON-able dict (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise MnistliteError(f"{root}: no such directory")
    dates = Dates(root)
    runs: dict[Path, list[dict[str, Any]]] = {}
    claims: list[dict[str, Any]] = []
    for folder, _, files in os.walk(root):  # symlinked runs are other runs' folders: not walked twice
        here = Path(folder)
        if rd.CONFIG in files:
            runs[here.resolve()] = read_run(here, root, dates)
        if "consistency.json" in files:
            c, (when, source) = rd.read_json(here / "consistency.json"), dates(here / "consistency.json")
            name = (here / "consistency.json").relative_to(root).as_posix()
            claim = {"claim": name, "model": c.get("model"), "params": c.get("params"), "own": here}
            claims.append({**claim, "when": when, "dated_by": source})
        if "ladder.md" in files:
            claims += ladder_claims(here / "ladder.md", root, dates)
    readings = sorted((r for run in runs.values() for r in run if r["when"]), key=lambda r: (r["when"], r["run"]))
    for i, r in enumerate(readings):
        r["id"] = i
    flags: list[dict[str, Any]] = []
    for budget in {run[0]["budget"] for run in runs.values()}:
        band = [run[0] for run in runs.values() if run[0]["budget"] == budget]
        flags += _flags([r for r in readings if r["budget"] == budget], band)
    flags.sort(key=lambda f: (f["first_seen"], f["first_run"], f["kind"]))
    for i, f in enumerate(flags):
        f["id"] = i
    out = []
    first = {run[0]["run"]: run[0]["first"] for run in runs.values()}
    for c in claims:  # its own runs: its folder's seed<k>/ runs, links to other folders' runs included
        found = [runs.get(p.parent.resolve()) for p in [c["own"] / rd.CONFIG, *c["own"].glob(f"*/{rd.CONFIG}")]]
        c["own"] = {run[0]["run"] for run in found if run}
        c["when"] = max([c["when"], *(first[r] for r in c["own"])])  # a claim file may be rewritten later
    for c in sorted(claims, key=lambda c: (c["when"], c["claim"])):
        budget, own, when = budget_of(c["params"]), c["own"], _iso(c["when"])
        before = [r for r in readings if r["budget"] == budget and r["when"] <= c["when"] and r["run"] not in own]
        flagged = [f["id"] for f in flags if f["budget"] == budget and f["first_seen"] <= when]
        claim = {**{k: c[k] for k in ("claim", "model", "params", "dated_by")}, "budget": budget, "when": when}
        claim |= {"own_runs": sorted(own), "readings_before": [r["id"] for r in before]}
        choice = sum(r["choice"] for r in before)
        out.append({**claim, "choice_readings_before": choice, "started_after_a_reading": flagged})
    readings = [{**{k: v for k, v in r.items() if k != "first"}, "when": _iso(r["when"])} for r in readings]
    head = {"dir": str(root), "budgets": list(BUDGETS), "files_dated_by": dates.sources, "runs": len(runs)}
    return {**head, "claims": out, "started_after_a_reading": flags, "readings": readings}


def to_json(doc: dict[str, Any]) -> str:
    """The audit as JSON, one claim or reading a line (a diff of two audits shows what moved)."""
    listed = ("claims", "started_after_a_reading", "readings")
    head = json.dumps({k: v for k, v in doc.items() if k not in listed})
    lists = [f'"{k}": [\n' + ",\n".join(json.dumps(x) for x in doc[k]) + "\n]" for k in listed]
    return head[:-1] + ",\n" + ",\n".join(lists) + "}\n"


def _reading_line(r: dict[str, Any]) -> str:
    acc, ep = r["test_acc"], r["epochs"]
    epochs = f"epoch {ep[0]}" if len(ep) == 1 else f"epochs {ep[0]}-{ep[-1]}"
    tta = f", TTA {r['tta_acc']:.2f}" if "tta_acc" in r else ""
    model = r["model"] if len(r["model"]) <= 32 else r["model"][:29] + "..."
    kind = "choice" if r["choice"] else "final "
    return f"  {r['when']}  {kind}  {r['run']}  {model}  test {acc[-1]:.2f}{tta} ({epochs}; dated by {r['dated_by']})"


def render(doc: dict[str, Any]) -> str:
    """The audit as text: one section per budget, its claims in time order, each with its counts and
    then what is new since the budget's previous claim (so each reading is listed once per budget)."""
    readings = doc["readings"]
    choice = sum(r["choice"] for r in readings)
    dated = doc["files_dated_by"]
    lines = [
        f"mnistlite audit {doc['dir']}: {doc['runs']} runs, {len(readings)} test readings ({choice} during a choice: "
        f"a run with a validation split), {len(doc['claims'])} claims; files dated by git ({dated['git']}) "
        f"or mtime ({dated['mtime']}), recorded readings by their record"
    ]
    for budget in sorted({c["budget"] for c in doc["claims"]}, key=lambda b: b or 1 << 62):
        claims = [c for c in doc["claims"] if c["budget"] == budget]
        band = [r for r in readings if r["budget"] == budget]
        name = f"under {budget:,} parameters" if budget else f"{BUDGETS[-1]:,} parameters or more (or unknown)"
        lines += [
            "",
            f"== {name}: {len(claims)} claims, {len(band)} test readings "
            f"({sum(r['choice'] for r in band)} during a choice) ==",
        ]
        seen: set[int] = set()
        flagged: set[tuple[str, str]] = set()
        for c in claims:
            flags = [doc["started_after_a_reading"][i] for i in c["started_after_a_reading"]]
            lines += [
                "",
                f"-- {c['when']}  {c['claim']}  ({c['model']}, {c['params']:,} params)",
                f"   before it: {len(c['readings_before'])} test readings ({c['choice_readings_before']} during a "
                f"choice); {len(flags)} models or recipes first seen after another's test reading",
            ]
            new = [readings[i] for i in c["readings_before"] if i not in seen]
            if new:
                lines += [f"   readings since the previous claim ({len(new)}):", *map(_reading_line, new)]
            seen.update(c["readings_before"])
            fresh = [f for f in flags if (f["kind"], f["hash"]) not in flagged]
            if fresh:
                lines.append(f"   started after a test reading, since the previous claim ({len(fresh)}):")
                for f in fresh:
                    r = readings[f["after_reading"]]
                    lines.append(
                        f"  {f['first_seen']}  new {f['kind']} {f['hash']} ({f['model'][:32]}) in {f['first_run']}, "
                        f"after {f['readings_before_it']} readings; the last: {r['run']} test {r['test_acc'][-1]:.2f}"
                    )
            flagged.update((f["kind"], f["hash"]) for f in flags)
    return "\n".join(lines) + "\n"
