"""`mnistlite tune`: train every (candidate, seed) of a tuning file (tuning_file.py), then rank them.

The ranking (tuning.json; tuning.md by reports/tuning.py) reads validation accuracy only: choosing on
test accuracy would turn the test set into a second validation split.
"""

from __future__ import annotations

import os
import statistics
from functools import partial
from pathlib import Path
from typing import Any

from .challenge import LAST_EPOCHS
from .engine import rundir as rd
from .modelinfo import profile_registered
from .reports.tuning import markdown
from .runs import plan, splits
from .search.space import describe_spec, spec_to_dict
from .tuning_file import Candidate, TuningFile, load_tuning, register_candidate  # noqa: F401  (the API)

TUNING_JSON = "tuning.json"
TUNING_MD = "tuning.md"
LEGACY_DEVICE_FILE = "device.txt"  # where runs made before result.json had "device" recorded it
TIE_PP = 0.02  # one image in 5,000: closer means are a tie, and the smaller model wins it


def run_dir(out: Path, c: Candidate, seed: int) -> Path:
    return out / c.name / f"seed{seed}"


def run_tuning(
    tf: TuningFile,
    out: Path,
    *,
    seeds: tuple[int, ...] | None = None,
    overrides: dict[str, Any] | None = None,
    jobs: int | str = 1,
    threads: int = 0,
    command: str = "",
) -> dict[str, Any]:
    """Train every (candidate, seed) not already done into OUT/<candidate>/seed<S>/, then rank."""
    seeds = tuple(seeds or tf.seeds)
    rd.prepare_run_dir(out, resume=True)
    runs = [
        plan.plan_run(
            f"{c.name}/seed{s}", tf.config(c, s, overrides), run_dir(out, c, s), partial(register_candidate, c), c.reuse
        )
        for c in tf.candidates
        for s in seeds
    ]
    runs = plan.link_reused(runs, print)
    for r in runs:
        if r.status == "done":
            print(f"{r.label}: already done")
    todo = [r for r in runs if r.status != "done"]
    if jobs == "auto":
        jobs, threads = splits.resolve(todo, jobs, threads, echo=print, record=out)
    jobs = max(1, min(int(jobs), len(todo)))
    threads = plan.threads_per_run(jobs, threads)
    print(f"{len(todo)} of {len(runs)} run(s) to train, {jobs} at a time, {threads} thread(s) each")

    def done(k: int, n: int, r: plan.PlannedRun, _result: Any, error: str | None) -> None:
        what = f"FAILED: {error}" if error else _line(r.run_dir)
        print(f"[{k}/{n}] {r.run_dir.relative_to(out)}: {what}")

    # A too-hot candidate (TrainingDiverged) must not stop the others: keep_going.
    errors = plan.execute(todo, jobs=jobs, threads=threads, keep_going=True, on_done=done)
    ranking = build_ranking(tf, out, seeds, errors, command, overrides)
    rd.write_json(out / TUNING_JSON, ranking)
    rd.atomic_write_text(out / TUNING_MD, markdown(ranking))
    return ranking


def _line(run: Path) -> str:
    rows = rd.read_metrics(run / rd.METRICS)
    wall = rd.read_json(run / rd.RESULT).get("wall_seconds", 0.0)
    return f"val {rows[-1]['val_acc']:.2f}% at epoch {rows[-1]['epoch']} in {wall:.0f}s"


def _seed_record(out: Path, c: Candidate, seed: int, error: str | None) -> dict[str, Any]:
    run = run_dir(out, c, seed)
    where = str(run.relative_to(out))  # relative: the tuning folder can move
    if not (run / rd.RESULT).is_file():
        return {"error": error or "not finished", "run_dir": where}
    metrics = rd.read_metrics(run / rd.METRICS)
    raw = [r.get("raw_val_acc") for r in metrics]  # an EMA run: the same trajectory's raw weights
    result = rd.read_json(run / rd.RESULT)
    legacy = run / LEGACY_DEVICE_FILE
    device = result.get("device") or (legacy.read_text().strip() if legacy.is_file() else None)
    return {
        **_accuracies("val", [r["val_acc"] for r in metrics]),
        **(_accuracies("raw_val", raw) if None not in raw else {}),
        "wall_seconds": result.get("wall_seconds"),
        "device": device,
        "run_dir": where,
        **({"linked_to": os.readlink(run)} if run.is_symlink() else {}),  # runs/plan.py link_reused
    }


def _accuracies(kind: str, acc: list[float]) -> dict[str, Any]:
    last = f"last{LAST_EPOCHS}_min_{kind}_acc"
    return {f"final_{kind}_acc": acc[-1], last: min(acc[-LAST_EPOCHS:]), f"{kind}_acc_per_epoch": acc}


def _raw_columns(per_seed: dict[str, dict[str, Any]], complete: bool) -> dict[str, Any]:
    """For EMA candidates, the raw weights' figures from the same runs: a paired comparison."""
    seeds, last = per_seed.values(), f"last{LAST_EPOCHS}_min_raw_val_acc"
    if not complete or not all("final_raw_val_acc" in p for p in seeds):
        return {}
    mean = statistics.fmean(p["final_raw_val_acc"] for p in seeds)
    return {"mean_final_raw_val_acc": mean, f"min_{last}": min(p[last] for p in seeds)}


def rank(rows: list[dict[str, Any]]) -> None:
    """Set `rank`: best mean final val accuracy first; within TIE_PP of the best left, fewest params first.
    Greedy, so the rule stays well defined when near-ties chain (A~B, B~C, A!~C)."""
    left = [r for r in rows if r["mean_final_val_acc"] is not None]
    for r in rows:
        r["rank"] = None
    for k in range(1, len(left) + 1):
        best = max(r["mean_final_val_acc"] for r in left)
        tied = [r for r in left if best - r["mean_final_val_acc"] <= TIE_PP + 1e-9]
        pick = min(tied, key=lambda r: (r["params"], -r["mean_final_val_acc"], r["name"]))
        pick["rank"] = k
        left.remove(pick)


def build_ranking(
    tf: TuningFile, out: Path, seeds: tuple[int, ...], errors: dict[str, str], command: str, overrides: dict | None
) -> dict[str, Any]:
    last = f"last{LAST_EPOCHS}_min_val_acc"
    rows = []
    for c in tf.candidates:
        per_seed = {str(s): _seed_record(out, c, s, errors.get(str(run_dir(out, c, s)))) for s in seeds}
        finals = [p["final_val_acc"] for p in per_seed.values() if "final_val_acc" in p]
        complete = len(finals) == len(seeds)
        walls = [p["wall_seconds"] for p in per_seed.values() if p.get("wall_seconds") is not None]
        row = {
            "name": c.name,
            "model": c.model,
            "arch": describe_spec(c.spec) if c.spec else c.model,
            "spec": spec_to_dict(c.spec) if c.spec else None,
            "params": c.params,
            "macs": profile_registered(c.model).macs,
            "recipe": c.recipe,
            "epochs": tf.config(c, seeds[0], overrides).epochs,
            "per_seed": per_seed,
            "mean_final_val_acc": statistics.fmean(finals) if complete else None,
            "std_final_val_acc": (statistics.stdev(finals) if len(finals) > 1 else 0.0) if complete else None,
            f"min_{last}": min(p[last] for p in per_seed.values()) if complete else None,
            **_raw_columns(per_seed, complete),
            "mean_wall_seconds": statistics.fmean(walls or [0.0]),
        }
        rows.append(row)
    rank(rows)
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0))
    return {
        "kind": "mnistlite-tuning",
        "file": str(tf.path),
        "command": command,
        "budget": tf.budget,
        "val_size": tf.val_size,
        "seeds": list(seeds),
        "overrides": dict(overrides or {}),
        "selection": f"mean final-epoch validation accuracy; within {TIE_PP} points, fewer parameters first",
        "test_set": "not read: candidates are compared on the validation split only",
        "devices": sorted({p["device"] for r in rows for p in r["per_seed"].values() if p.get("device")}),
        "candidates": rows,
    }
