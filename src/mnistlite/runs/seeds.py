"""One recipe under several seeds, and its aggregate (consistency.json, consistency.png)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..challenge import LAST_EPOCHS, TARGET, fmt_acc
from ..config import TrainConfig
from ..engine import rundir as rd
from . import holding, plan, splits

CONSISTENCY_JSON = "consistency.json"
CONSISTENCY_PNG = "consistency.png"


def seed_dir(out: Path, seed: int) -> Path:
    return out / f"seed{seed}"


def run_seeds(
    base: TrainConfig,
    seeds: list[int],
    out: Path,
    *,
    jobs: int | str = 1,
    storage: str | None = None,
    study: str | None = None,
    echo=print,
    reuse: Sequence[Path] = (),
) -> dict[str, Any]:
    """Train `base` once per seed into `out/seed<k>/` (with `storage`, as jobs of a shared sweep), then aggregate."""
    out = Path(out)
    rd.prepare_run_dir(out, resume=True)
    runs = [plan.plan_run(f"seed {s}", base.replace(seed=s), seed_dir(out, s), reuse=tuple(reuse)) for s in seeds]
    runs = plan.link_reused(runs, echo)
    if storage is not None:
        plan.execute_shared(runs, out, storage, study or f"seeds-{base.model}", echo)
    else:
        for r in runs:
            if r.status == "done":
                echo(f"seed {r.config.seed}: already done in {r.run_dir}")
        todo = [r for r in runs if r.status != "done"]
        threads = base.threads
        if jobs == "auto":
            jobs, threads = splits.resolve(todo, jobs, base.threads, echo=echo, record=out)
        jobs = max(1, min(int(jobs), len(seeds)))
        threads = threads or plan.threads_per_run(jobs)
        echo(f"{base.model}: {len(todo)} of {len(seeds)} seed(s) to train, {jobs} at a time, {threads} thread(s) each")
        plan.execute(todo, jobs=jobs, threads=threads, on_done=lambda i, n, r, res, err: echo(f"finished {r.run_dir}"))
    agg = aggregate(out, seeds)
    rd.write_json(out / CONSISTENCY_JSON, agg)
    plot_consistency(out, agg)
    return agg


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


_TEST_LINE = re.compile(r"^Test set: .*Accuracy: \d+/(\d+) ", re.MULTILINE)


def common_test_images(runs: Sequence[Path]) -> int | None:
    """The one test-set size every run's log scored ("Accuracy: k/n"); None if any does not say, or they disagree."""
    sizes: set[int | None] = set()
    for run in runs:
        try:
            found = _TEST_LINE.findall((Path(run) / rd.LOG).read_text(errors="replace"))
        except OSError:
            found = []
        sizes.add(int(found[-1]) if found else None)
    return sizes.pop() if len(sizes) == 1 else None


def aggregate(out: Path, seeds: list[int], target: float = TARGET) -> dict[str, Any]:
    """The consistency aggregate of finished seed runs under `out`; sealed runs (a validation split) are on `val`."""
    runs = {s: rd.read_metrics(seed_dir(out, s) / rd.METRICS) for s in seeds}
    results = {s: rd.read_json(seed_dir(out, s) / rd.RESULT) for s in seeds}
    cfg = rd.read_json(seed_dir(out, seeds[0]) / rd.CONFIG)
    split = "test" if all(r and "test_acc" in r[0] for r in runs.values()) else "val"
    epochs = min(len(r) for r in runs.values())
    per_epoch = []
    for e in range(epochs):
        row: dict[str, Any] = {"epoch": e + 1}
        for key in dict.fromkeys((f"{split}_acc", "val_acc", "raw_test_acc")):  # raw_test_acc: --ema runs
            if all(runs[s][e].get(key) is not None for s in seeds):
                row[key] = spread([runs[s][e][key] for s in seeds])
        per_epoch.append(row)
    per_seed = {}
    for s in seeds:
        acc = [r[f"{split}_acc"] for r in runs[s]]
        per_seed[str(s)] = {
            f"final_{split}_acc": acc[-1],
            f"last3_min_{split}_acc": min(acc[-LAST_EPOCHS:]),
            "epochs_at_target": [r["epoch"] for r in runs[s] if r[f"{split}_acc"] >= target],
            "passes_goal": min(acc[-LAST_EPOCHS:]) >= target,
            **({"final_val_acc": runs[s][-1].get("val_acc")} if split == "test" else {}),
            "wall_seconds": results[s].get("wall_seconds"),
            "run_dir": seed_dir(out, s).name,  # relative: the sweep folder can move
        }
    agg = {
        "model": cfg["model"],
        "params": results[seeds[0]]["params"],
        "seeds": seeds,
        "n": len(seeds),
        "epochs": epochs,
        "target": target,
        **({"split": "val", "test_set": "sealed: validation runs never read it"} if split == "val" else {}),
        "goal": f"{split} accuracy >= {target}% in each of the last {LAST_EPOCHS} epochs",
        f"final_{split}_acc": spread([p[f"final_{split}_acc"] for p in per_seed.values()]),
        f"last3_min_{split}_acc": spread([p[f"last3_min_{split}_acc"] for p in per_seed.values()]),
        "seeds_passing_goal": sum(p["passes_goal"] for p in per_seed.values()),
        "per_epoch": per_epoch,
        "per_seed": per_seed,
        # Run-only choices that may differ seed to seed (threads, and the BN path chosen by them).
        "config": {k: v for k, v in cfg.items() if k not in ("seed", "threads", "bn_fusion")},
    }
    agg.update(claim_figures(agg, out))
    if split == "val":
        return agg
    vals = [per_seed[str(s)]["final_val_acc"] for s in seeds]
    if all(v is not None for v in vals):
        agg["final_val_acc"] = spread(vals)
    raw: dict[int, list[Any]] = {s: [r.get("raw_test_acc") for r in runs[s]] for s in seeds}
    if all(None not in r for r in raw.values()):  # --ema runs: the raw weights of the same runs, reported only
        agg["raw_weights"] = {
            "final_test_acc": spread([r[-1] for r in raw.values()]),
            "last3_min_test_acc": spread([min(r[-LAST_EPOCHS:]) for r in raw.values()]),
            "seeds_passing_goal": sum(min(r[-LAST_EPOCHS:]) >= target for r in raw.values()),
        }
    return agg


def claim_figures(agg: dict[str, Any], out: Path) -> dict[str, Any]:
    """Held consistently, as numbers (runs/holding.py), for any aggregate, also one written before they existed."""
    split, per_seed = scored_split(agg), agg["per_seed"].values()
    if split == "test":
        n = common_test_images([Path(out) / p["run_dir"] for p in per_seed])
    else:
        n = agg["config"].get("val_size") or None
    lows = [p[f"last3_min_{split}_acc"] for p in per_seed]
    return holding.claim(lows, [p[f"final_{split}_acc"] for p in per_seed], agg["target"], n, split)


def scored_split(s: dict[str, Any]) -> str:
    """The split an aggregate's figures are on: "test", or "val" for sealed validation runs."""
    return str(s.get("split", "test"))


def format_aggregate(s: dict[str, Any]) -> str:
    split = scored_split(s)
    sealed = split == "val"
    f = s[f"final_{split}_acc"]
    lines = [
        f"{s['model']} ({s['params']:,} params), {s['n']} seeds {s['seeds']}, {s['epochs']} epochs",
        f"epoch-{s['epochs']} {split} accuracy: {fmt_acc(f['mean'])} ± {f['std']:.2f}% "
        f"(min {fmt_acc(f['min'])}, max {f['max']:.2f})" + ("; test set sealed, not read" if sealed else ""),
    ]
    if not sealed and (v := s.get("final_val_acc")):
        lines.append(f"epoch-{s['epochs']} val accuracy:  {fmt_acc(v['mean'])} ± {v['std']:.2f}%")
    lows = ", ".join(f"{k}: {fmt_acc(p[f'last3_min_{split}_acc'])}" for k, p in s["per_seed"].items())
    lines.append(f"lowest {split} accuracy over the last {LAST_EPOCHS} epochs, per seed: {lows}")
    where = "on the validation split" if sealed else "the goal"
    lines.append(f"seeds passing {where} ({s['goal']}): {s['seeds_passing_goal']}/{s['n']}")
    lines += format_holding(s)
    if r := s.get("raw_weights"):
        lines.append(
            f"without the weight average (same runs): epoch-{s['epochs']} {fmt_acc(r['final_test_acc']['mean'])} ± "
            f"{r['final_test_acc']['std']:.2f}%, seeds passing {r['seeds_passing_goal']}/{s['n']}"
        )
    raw = all("raw_test_acc" in r for r in s["per_epoch"])
    lines.append(f"epoch  {split} mean ± std  (min - max)" + ("   raw weights mean ± std" if raw else ""))
    for r in s["per_epoch"]:
        t = r[f"{split}_acc"]
        line = f"{r['epoch']:>5}  {fmt_acc(t['mean']):>6} ± {t['std']:.2f}  ({t['min']:.2f} - {t['max']:.2f})"
        if raw:
            line += f"   {r['raw_test_acc']['mean']:6.2f} ± {r['raw_test_acc']['std']:.2f}"
        lines.append(line)
    return "\n".join(lines)


def format_holding(s: dict[str, Any]) -> list[str]:
    """The consistency claim as numbers, where the aggregate has them."""
    split, lines = scored_split(s), []
    if h := s.get("holding"):
        lo, hi = h["interval95"]
        lines.append(
            f"  share of new seeds that would hold, 95% interval: {100 * lo:.1f}-{100 * hi:.1f}% "
            f"(one-sided lower bound {100 * h['one_sided_lower95']:.1f}%; Clopper-Pearson exact)"
        )
    if t := s.get(f"{split}_set_sampling"):
        if t["binomial_sd_points"] is None:
            lines.append(f"  {split}-set sampling SD: unknown (the runs' logs do not say how many {split} images)")
        else:
            lines.append(
                f"  {split}-set sampling SD at {fmt_acc(t['accuracy'])}%: {t['binomial_sd_points']:.3f} points "
                f"(binomial, {t['n_test']:,} images, one set for all seeds), beside "
                f"{t['across_seeds_sd_points']:.3f} across seeds"
            )
    if m := s.get("margin"):
        images = "" if m["images"] is None else f" = {m['images']:+d} images of {m['n_test']:,}"
        lines.append(
            f"  margin: worst last-{LAST_EPOCHS} reading {m[f'worst_{split}_acc']:.2f} - {m['target']:.2f} = "
            f"{m['points']:+.2f} points{images} ({m['seeds_at_worst']} seed(s) at it)"
        )
    return lines


def plot_consistency(out: Path, s: dict[str, Any]) -> None:
    from ..engine.plots import plot_overlay

    split = scored_split(s)
    curves: dict[str, Sequence[tuple[int, float]]] = {}
    for seed, info in s["per_seed"].items():
        rows = rd.read_metrics(out / info["run_dir"] / rd.METRICS)
        curves[f"seed {seed}"] = [(r["epoch"], r[f"{split}_acc"]) for r in rows]
    f = s[f"final_{split}_acc"]
    title = (
        f"{s['model']} ({s['params']:,} params): epoch {s['epochs']} {fmt_acc(f['mean'])} ± {f['std']:.2f}% "
        f"(n={s['n']}), {s['seeds_passing_goal']}/{s['n']} hold the goal" + (" on val" if split == "val" else "")
    )
    plot_overlay(curves, out / CONSISTENCY_PNG, title=title, ylabel=f"{split} accuracy (%)")
