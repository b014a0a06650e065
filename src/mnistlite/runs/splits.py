"""How many runs train at once, and on how many threads each (`--jobs auto`): a committed rate per split of the
cores; the soonest finish in waves wins, more jobs by MIN_GAIN (a process costs memory). Nothing is timed here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import MnistliteError

MIN_GAIN = 1.05
# Two one-thread runs against one two-thread run on 2 cores (docs/results/jobs_auto_cpu_amx.txt);
# taken as the gain of each halving of the threads per run on more cores too (not measured there).
SPLIT_GAIN = 1.17
SPLIT_JSON = "split.json"


def parse_jobs(text: str) -> int | str:
    """--jobs: a number >= 1, or auto; anything else is a one-line error."""
    v = str(text).strip().lower()
    if v == "auto":
        return "auto"
    if v.isdigit() and int(v) >= 1:
        return int(v)
    raise MnistliteError(f"--jobs must be a number of runs at once (>= 1) or auto, got {text!r}")


def makespan(m: dict[str, Any], runs: int) -> float:
    """Time for `runs` equal runs on split m, in one run's units: ceil(runs / jobs) waves at its rate per process."""
    return -(-runs // m["jobs"]) * m["jobs"] / m["rate"]


def choose(measured: Sequence[dict[str, Any]], runs: int | None = None) -> dict[str, Any]:
    """The rule: more jobs only where MIN_GAIN faster, by the makespan of `runs` runs (None: by the total rate)."""
    best = measured[0]
    for m in measured[1:]:
        if runs is None:
            faster = m["rate"] >= best["rate"] * MIN_GAIN
        else:
            faster = makespan(best, runs) >= makespan(m, runs) * MIN_GAIN
        if faster:
            best = m
    return best


def rates(cores: int) -> list[dict[str, Any]]:
    """Each split of the cores (jobs x threads = cores, fewest jobs first), its total rate by SPLIT_GAIN (1: 1 job)."""
    divisors = [j for j in range(1, cores + 1) if cores % j == 0]
    return [{"jobs": j, "threads": cores // j, "rate": round(SPLIT_GAIN ** math.log2(j), 3)} for j in divisors]


def resolve(
    runs: Sequence[Any],
    jobs: int | str,
    threads: int = 0,
    echo: Callable[[str], None] = print,
    record: Path | None = None,
) -> tuple[int, int]:
    """(jobs, threads per run) for the PlannedRuns to train; `auto` by the rule above, a number as given."""
    from ..engine.device import cpu_cores, resolve_device

    cores = cpu_cores()
    if jobs != "auto":
        return int(jobs), threads or max(1, cores // max(1, int(jobs)))
    why = ""
    if len(runs) <= 1:
        why = f"{len(runs)} run to train"
    elif threads:
        n = max(1, cores // threads)
        echo(f"--jobs auto: {n} at a time, as --threads {threads} leaves on {cores} cores")
        return n, threads
    elif cores == 1:
        why = "one core"
    elif resolve_device(runs[0].config.device).type != "cpu":
        why = "the runs share one GPU"
    if why:
        echo(f"--jobs auto: 1 at a time ({why})")
        return 1, threads or cores
    splits = rates(cores)
    best = choose(splits, len(runs))
    echo(
        f"--jobs auto: {best['jobs']} at a time, {best['threads']} thread(s) each, for {len(runs)} runs "
        f"(waves of equal runs; each halving of the threads per run taken as {SPLIT_GAIN}x the total rate)"
    )
    if record is not None:
        from ..engine import rundir as rd

        rule = {"jobs": best["jobs"], "threads": best["threads"], "min_gain": MIN_GAIN, "split_gain": SPLIT_GAIN}
        rd.write_json(record / SPLIT_JSON, {**rule, "runs": len(runs), "model": runs[0].config.model, "splits": splits})
    return best["jobs"], best["threads"]
