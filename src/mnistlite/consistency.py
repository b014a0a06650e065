"""Multi-seed runs and their aggregate: proof instead of one lucky epoch.

`run_seeds` trains one recipe under several seeds (in parallel worker
processes where cores allow), then `aggregate` states, per epoch, the mean,
std, min and max test accuracy across seeds, each seed's lowest accuracy over
its last 3 epochs, and how many seeds hold the goal. Results are written to
`consistency.json` and `consistency.png` in the sweep's folder.

A seed whose run directory already holds a result for the same config is not
trained again, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import TrainConfig, changed_fields
from .errors import MnistliteError
from .runs import rundir as rd
from .runs.portable import pack_run, unpack_run

GOAL_EPOCHS = 3  # the goal: every seed at >= 99.4% in each of its last 3 epochs
CONSISTENCY_JSON = "consistency.json"
CONSISTENCY_PNG = "consistency.png"


def parse_seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise MnistliteError(f"--seed-list must be comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise MnistliteError(f"--seed-list needs distinct seeds, got {text!r}")
    return seeds


def seed_dir(out: Path, seed: int) -> Path:
    return out / f"seed{seed}"


def _finished(run: Path, cfg: TrainConfig) -> bool:
    """True when `run` already holds a complete run of `cfg` (thread count and
    data location aside, which change where a run happens, not its result)."""
    if not (run / rd.RESULT).is_file() or not (run / rd.CONFIG).is_file():
        return False
    try:
        saved = rd.read_json(run / rd.CONFIG)
    except MnistliteError:
        return False
    return isinstance(saved, dict) and not changed_fields(saved, cfg)


def _train_one(args: tuple[dict[str, Any], str, int]) -> str:
    """Worker entry point (module level so that spawned processes can import it)."""
    from .engine import train

    cfg_dict, run, threads = args
    cfg = TrainConfig.from_dict({**cfg_dict, "threads": threads})
    run_path = Path(run)
    resume = (run_path / rd.CHECKPOINT).is_file() and not (run_path / rd.RESULT).is_file()
    if not resume and run_path.exists() and any(run_path.iterdir()):
        # A finished run of another config, or debris without a checkpoint: keep it aside.
        run_path.rename(run_path.with_name(run_path.name + f".old{os.getpid()}"))
    train(cfg, run_dir=run_path, resume=resume, progress=False, quiet=True)
    return run


def run_seeds(
    base: TrainConfig,
    seeds: list[int],
    out: Path,
    *,
    jobs: int = 1,
    storage: str | None = None,
    study: str | None = None,
    echo=print,
) -> dict[str, Any]:
    """Train `base` once per seed into `out/seed<k>/`, then aggregate.

    With `storage` (an Optuna storage URL), the seeds become jobs of a shared
    sweep: every process started with the same storage and study takes jobs
    until none is left, so a sweep spreads over machines with no seed lost or
    trained twice (see search/sweep.py).
    """
    out = Path(out)
    rd.prepare_run_dir(out, resume=True)
    if storage is not None:
        _run_seeds_shared(base, seeds, out, storage, study or f"seeds-{base.model}", echo)
        summary = aggregate(out, seeds)
        rd.write_json(out / CONSISTENCY_JSON, summary)
        plot_consistency(out, summary)
        return summary
    from .engine.device import cpu_cores

    cores = cpu_cores()
    jobs = max(1, min(jobs, len(seeds)))
    # Tiny convolutions scale poorly across threads and collapse when cores are
    # oversubscribed: give each parallel run its share of the cores.
    threads = base.threads or max(1, cores // jobs)
    todo = []
    for s in seeds:
        cfg = replace(base, seed=s)
        run = seed_dir(out, s)
        if _finished(run, cfg):
            echo(f"seed {s}: already done in {run}")
        else:
            todo.append((cfg.to_dict(), str(run), threads))
    echo(f"{base.model}: {len(todo)} of {len(seeds)} seed(s) to train, {jobs} at a time, {threads} thread(s) each")
    if jobs == 1:
        for t in todo:
            echo(f"finished {_train_one(t)}")
    elif todo:
        # spawn, not fork: forking after torch has started its threads can deadlock.
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            for done in as_completed([pool.submit(_train_one, t) for t in todo]):
                echo(f"finished {done.result()}")
    summary = aggregate(out, seeds)
    rd.write_json(out / CONSISTENCY_JSON, summary)
    plot_consistency(out, summary)
    return summary


def _run_seeds_shared(base: TrainConfig, seeds: list[int], out: Path, storage: str, study: str, echo) -> None:
    """Run this worker's share of the seeds, then write every seed's files locally.

    Run directories of seeds trained on other machines are rebuilt here from
    the metrics each worker stored in the study, so `aggregate` reads the same
    files whoever trained them.
    """
    from .search.sweep import make_job, run_sweep

    over = {k: v for k, v in base.to_dict().items() if k not in ("model", "seed")}

    def worker(job: dict[str, Any]) -> dict[str, Any]:
        cfg = TrainConfig.for_model(job["model"], seed=job["seed"], **job["overrides"])
        _train_one((cfg.to_dict(), str(seed_dir(out, cfg.seed)), cfg.threads or 0))
        return pack_run(seed_dir(out, cfg.seed))

    done = run_sweep([make_job(base.model, s, over) for s in seeds], storage, study, worker, log=echo)
    for o in done:
        if o.state != "COMPLETE" or not isinstance(o.result, dict):
            raise MnistliteError(f"seed {o.job['seed']} of sweep {study!r} did not complete ({o.state})")
        unpack_run(o.result, seed_dir(out, o.job["seed"]))


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def aggregate(out: Path, seeds: list[int], target: float = rd.TARGET) -> dict[str, Any]:
    """The consistency summary of finished seed runs under `out`."""
    runs = {s: rd.read_metrics(seed_dir(out, s) / rd.METRICS) for s in seeds}
    results = {s: rd.read_json(seed_dir(out, s) / rd.RESULT) for s in seeds}
    cfg = rd.read_json(seed_dir(out, seeds[0]) / rd.CONFIG)
    epochs = min(len(r) for r in runs.values())
    per_epoch = []
    for e in range(epochs):
        row: dict[str, Any] = {"epoch": e + 1, "test_acc": _stats([runs[s][e]["test_acc"] for s in seeds])}
        if all(runs[s][e].get("val_acc") is not None for s in seeds):
            row["val_acc"] = _stats([runs[s][e]["val_acc"] for s in seeds])
        if all(runs[s][e].get("raw_test_acc") is not None for s in seeds):  # --ema runs: reported only
            row["raw_test_acc"] = _stats([runs[s][e]["raw_test_acc"] for s in seeds])
        per_epoch.append(row)
    per_seed = {}
    for s in seeds:
        test = [r["test_acc"] for r in runs[s]]
        last = test[-GOAL_EPOCHS:]
        per_seed[str(s)] = {
            "final_test_acc": test[-1],
            "last3_min_test_acc": min(last),
            "epochs_at_target": [r["epoch"] for r in runs[s] if r["test_acc"] >= target],
            "passes_goal": min(last) >= target,
            "final_val_acc": runs[s][-1].get("val_acc"),
            "wall_seconds": results[s].get("wall_seconds"),
            "run_dir": seed_dir(out, s).name,  # relative: the sweep folder can move
        }
    final = [per_seed[str(s)]["final_test_acc"] for s in seeds]
    summary = {
        "model": cfg["model"],
        "params": results[seeds[0]]["params"],
        "seeds": seeds,
        "n": len(seeds),
        "epochs": epochs,
        "target": target,
        "goal": f"test accuracy >= {target}% in each of the last {GOAL_EPOCHS} epochs",
        "final_test_acc": _stats(final),
        "last3_min_test_acc": _stats([per_seed[str(s)]["last3_min_test_acc"] for s in seeds]),
        "seeds_passing_goal": sum(p["passes_goal"] for p in per_seed.values()),
        "per_epoch": per_epoch,
        "per_seed": per_seed,
        "config": {k: v for k, v in cfg.items() if k not in ("seed", "threads")},
    }
    vals = [per_seed[str(s)]["final_val_acc"] for s in seeds]
    if all(v is not None for v in vals):
        summary["final_val_acc"] = _stats(vals)
    raw = {s: [r.get("raw_test_acc") for r in runs[s]] for s in seeds}
    if all(None not in r for r in raw.values()):  # --ema runs: the raw weights of the same runs, reported only
        summary["raw_weights"] = {
            "final_test_acc": _stats([r[-1] for r in raw.values()]),
            "last3_min_test_acc": _stats([min(r[-GOAL_EPOCHS:]) for r in raw.values()]),
            "seeds_passing_goal": sum(min(r[-GOAL_EPOCHS:]) >= target for r in raw.values()),
        }
    return summary


def format_summary(s: dict[str, Any]) -> str:
    f = s["final_test_acc"]
    lines = [
        f"{s['model']} ({s['params']:,} params), {s['n']} seeds {s['seeds']}, {s['epochs']} epochs",
        f"epoch-{s['epochs']} test accuracy: {f['mean']:.2f} ± {f['std']:.2f}% "
        f"(min {f['min']:.2f}, max {f['max']:.2f})",
    ]
    if "final_val_acc" in s:
        v = s["final_val_acc"]
        lines.append(f"epoch-{s['epochs']} val accuracy:  {v['mean']:.2f} ± {v['std']:.2f}%")
    lows = ", ".join(f"{k}: {v['last3_min_test_acc']:.2f}" for k, v in s["per_seed"].items())
    lines.append(f"lowest test accuracy over the last {GOAL_EPOCHS} epochs, per seed: {lows}")
    lines.append(f"seeds passing the goal ({s['goal']}): {s['seeds_passing_goal']}/{s['n']}")
    if "raw_weights" in s:
        r = s["raw_weights"]
        lines.append(
            f"without the weight average (same runs): epoch-{s['epochs']} {r['final_test_acc']['mean']:.2f} ± "
            f"{r['final_test_acc']['std']:.2f}%, seeds passing {r['seeds_passing_goal']}/{s['n']}"
        )
    raw = all("raw_test_acc" in r for r in s["per_epoch"])
    lines.append("epoch  test mean ± std  (min - max)" + ("   raw weights mean ± std" if raw else ""))
    for r in s["per_epoch"]:
        t = r["test_acc"]
        line = f"{r['epoch']:>5}  {t['mean']:6.2f} ± {t['std']:.2f}  ({t['min']:.2f} - {t['max']:.2f})"
        if raw:
            line += f"   {r['raw_test_acc']['mean']:6.2f} ± {r['raw_test_acc']['std']:.2f}"
        lines.append(line)
    return "\n".join(lines)


def plot_consistency(out: Path, s: dict[str, Any]) -> None:
    from .runs.plots import plot_overlay

    curves = {}
    for seed, info in s["per_seed"].items():
        rows = rd.read_metrics(out / info["run_dir"] / rd.METRICS)
        curves[f"seed {seed}"] = [(r["epoch"], r["test_acc"]) for r in rows]
    f = s["final_test_acc"]
    title = (
        f"{s['model']} ({s['params']:,} params): epoch {s['epochs']} {f['mean']:.2f} ± {f['std']:.2f}% "
        f"(n={s['n']}), {s['seeds_passing_goal']}/{s['n']} hold the goal"
    )
    plot_overlay(curves, out / CONSISTENCY_PNG, title=title)
