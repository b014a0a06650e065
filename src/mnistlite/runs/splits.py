"""How many runs train at once, and on how many threads each: `--jobs auto`, by measurement.

Tiny convolutions scale poorly across threads, so two runs on one thread each
can beat one run on two threads, or not: on the AMX Xeon five 2-epoch flagship
seeds took 97.6 s one at a time on 2 threads and 99.2 s two at a time (issue 15),
and which BatchNorm path is faster flips with the thread count
(engine/bn_path.py). So `auto` measures it: for each split of this machine's
cores (jobs x threads = cores: 1x2 and 2x1 on two cores), it starts `jobs`
spawned processes as the pool would, each settling its own precision and BN path
at its thread count the way a run does, and times training steps of the first
run's model on synthetic batches with all of them running at once (ROUNDS
rounds, interleaved, the best kept). The split that finishes the runs to train
soonest wins, counted in waves (`makespan`: five runs on two workers are three
waves); more jobs must beat fewer by MIN_GAIN (each extra process costs memory
and start-up). The figures are cached per
machine (engine/calibrate.py); the decision and its basis are printed and
written to split.json in the sweep's folder.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..engine import calibrate as calib
from ..errors import MnistliteError

CACHE_FILE = "splits.json"
MIN_GAIN = 1.05
STEPS = 40  # timed steps per process: about 1.3 s of the flagship on one thread
ROUNDS = 2  # measurements of each split, interleaved
SPLIT_JSON = "split.json"


def parse_jobs(text: str) -> int | str:
    """--jobs: a number >= 1, or auto; anything else is a one-line error."""
    v = str(text).strip().lower()
    if v == "auto":
        return "auto"
    if v.isdigit() and int(v) >= 1:
        return int(v)
    raise MnistliteError(f"--jobs must be a number of runs at once (>= 1) or auto, got {text!r}")


def options(cores: int) -> list[tuple[int, int]]:
    """Every (jobs, threads) with jobs x threads = cores, fewest jobs first."""
    return [(j, cores // j) for j in range(1, cores + 1) if cores % j == 0]


def makespan(m: dict[str, Any], runs: int) -> float:
    """Time for `runs` equal runs on split m, in units of one run's images: ceil(runs / jobs) waves,
    each as long as one run at the split's rate per process (images_per_s / jobs).

    The waves matter where runs do not divide by jobs: five seeds on two workers are three
    waves, the last with a core left idle (measured on the AMX Xeon, 2026-12-06: five
    2-epoch flagship seeds 61.1 s one at a time on 2 threads, 69.4 s two at a time on 1)."""
    return -(-runs // m["jobs"]) * m["jobs"] / m["images_per_s"]


def choose(measured: Sequence[dict[str, Any]], runs: int | None = None) -> dict[str, Any]:
    """The rule, given each split's images/s (fewest jobs first): more jobs only where MIN_GAIN faster,
    for `runs` runs by their makespan (None: a long sweep, by the total images/s)."""
    best = measured[0]
    for m in measured[1:]:
        if runs is None:
            faster = m["images_per_s"] >= best["images_per_s"] * MIN_GAIN
        else:
            faster = makespan(best, runs) >= makespan(m, runs) * MIN_GAIN
        if faster:
            best = m
    return best


def _worker(cfg_dict: dict[str, Any], threads: int, steps: int, barrier: Any, queue: Any, setup: Any) -> None:
    """One process of a split (module level: spawned workers import it)."""
    try:
        import torch

        from ..config import TrainConfig
        from ..data import synthetic_data
        from ..engine import bn_path, precision
        from ..engine.device import apply_requested_allocator_tuning, set_threads
        from ..engine.parts import build_parts

        if setup is not None:
            setup()
        apply_requested_allocator_tuning()  # as a pool worker does (the CLI's choice, in the environment)
        set_threads(threads)
        device = torch.device("cpu")
        cfg = TrainConfig.from_dict(cfg_dict)
        cfg = cfg.replace(precision=precision.resolve(cfg, device).precision)
        barrier.wait()  # the BN calibration under the same contention as the run would see
        bn = bn_path.resolve(cfg, device)
        cfg = cfg.replace(bn_fusion=bn.path)
        # Enough batches for one epoch of warm-up and timed steps: a per-batch schedule
        # (onecycle) refuses to step past its planned total.
        data = synthetic_data(cfg.batch_size * (steps + 6))
        with bn.applied():
            parts = build_parts(cfg, data, device)
            x, y = data.train.images, data.train.labels
            bs = parts.batch_size
            for _ in range(5):  # warm-up: kernels, the allocator's heap
                parts.step(x[:bs], y[:bs])
            barrier.wait()
            t0 = time.perf_counter()
            for i in range(steps):
                lo = (i * bs) % (len(y) - bs + 1)
                parts.step(x[lo : lo + bs], y[lo : lo + bs])
            seconds = time.perf_counter() - t0
        queue.put({"images": steps * bs, "seconds": seconds, "bn_fusion": bn.path, "precision": cfg.precision})
    except BaseException as e:  # noqa: BLE001 -- reported to the parent, which raises it as one line
        queue.put({"error": f"{type(e).__name__}: {e}"})
        barrier.abort()


def measure(cfg: Any, jobs: int, threads: int, setup: Any = None, steps: int = STEPS) -> dict[str, Any]:
    """Total training images/s of `jobs` processes on `threads` threads each, all at once."""
    ctx = mp.get_context("spawn")  # as the pool: forking after torch started its threads can deadlock
    barrier, queue = ctx.Barrier(jobs), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(cfg.to_dict(), threads, steps, barrier, queue, setup)) for _ in range(jobs)
    ]
    for p in procs:
        p.start()
    rows = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    errors = [r["error"] for r in rows if "error" in r]
    if errors:
        raise MnistliteError(f"--jobs auto: the calibration of {jobs} x {threads} failed ({errors[0]})")
    return {
        "jobs": jobs,
        "threads": threads,
        "images_per_s": round(sum(r["images"] / r["seconds"] for r in rows), 1),
        "bn_fusion": sorted({r["bn_fusion"] for r in rows}),
        "precision": sorted({r["precision"] for r in rows}),
    }


def cache_key(cfg: Any, cores: int) -> str:
    import torch

    with torch.random.fork_rng():
        model = calib.timing_model(cfg, torch.device("cpu"))
    asked = f"precision {cfg.precision}|bn {cfg.bn_fusion}"
    return f"{calib.machine_key(torch.device('cpu'), cores)}|{calib.model_key(cfg, model)}|{asked}"


def calibrate(cfg: Any, cores: int, setup: Any = None, use_cache: bool = True) -> dict[str, Any]:
    """{"splits": [each split's measure()], "cached": bool}, fewest jobs first."""
    key = cache_key(cfg, cores)
    hit = calib.lookup(CACHE_FILE, key) if use_cache else None
    if hit is not None and isinstance(hit.get("splits"), list) and hit["splits"]:
        return {"splits": hit["splits"], "cached": True}
    # Rounds interleaved (1x2, 2x1, 1x2, 2x1), each split's best round kept: load from
    # elsewhere only ever slows a round down, so the best is the least disturbed.
    rounds: dict[tuple[int, int], list[dict[str, Any]]] = {o: [] for o in options(cores)}
    for _ in range(ROUNDS):
        for j, t in rounds:
            rounds[(j, t)].append(measure(cfg, j, t, setup))
    splits = []
    for got in rounds.values():
        best = max(got, key=lambda m: m["images_per_s"])
        splits.append({**best, "rounds_images_per_s": [m["images_per_s"] for m in got]})
    if use_cache:
        calib.store(CACHE_FILE, key, {"splits": splits})
    return {"splits": splits, "cached": False}


def describe(cal: dict[str, Any]) -> str:
    return ", ".join(
        f"{m['jobs']}x{m['threads']} {m['images_per_s']:,.0f} img/s ({'/'.join(m['bn_fusion'])})" for m in cal["splits"]
    ) + (" (cached)" if cal.get("cached") else "")


def resolve(
    runs: Sequence[Any],
    jobs: int | str,
    threads: int = 0,
    group: str = "off",
    echo: Callable[[str], None] = print,
    record: Path | None = None,
) -> tuple[int, int]:
    """(jobs, threads per run) for the runs to train; `auto` measured as above, a number as given.

    `runs` are the planned runs to train (PlannedRun); the first one's config is timed.
    """
    from ..engine.device import cpu_cores, resolve_device

    cores = cpu_cores()
    if jobs != "auto":
        return int(jobs), threads or max(1, cores // max(1, int(jobs)))
    why = ""
    if len(runs) <= 1:
        why = f"{len(runs)} run to train"
    elif group != "off":
        why = "--group: the split calibration times separate runs; --jobs N spreads the groups over N workers"
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
    echo(f"--jobs auto: choosing among {', '.join(f'{j}x{t}' for j, t in options(cores))} (jobs x threads) ...")
    cal = calibrate(runs[0].config, cores, runs[0].setup)
    best = choose(cal["splits"], len(runs))
    echo(
        f"--jobs auto: {best['jobs']} at a time, {best['threads']} thread(s) each, for {len(runs)} runs "
        f"(waves of equal runs at each split's measured rate); measured {describe(cal)}"
    )
    if record is not None:
        from ..engine import rundir as rd

        rd.write_json(
            record / SPLIT_JSON,
            {
                "jobs": best["jobs"],
                "threads": best["threads"],
                "min_gain": MIN_GAIN,
                "runs": len(runs),
                "model": runs[0].config.model,
                **cal,
            },
        )
    return best["jobs"], best["threads"]
