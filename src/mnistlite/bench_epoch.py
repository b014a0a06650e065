"""`mnistlite bench`'s headline: one epoch of ours against the seeds' per-sample pipeline, in turns.

A 2-core cloud CPU does not run at one speed: on the Zen 4 EPYC the same
training step measured 15-16 ms for some seconds and 21-22 ms for the next,
inside one process (performance.md, "Timing on a machine whose speed moves").
Timed once each, the two sides of the ratio can fall in different phases. So
the baseline and our epoch are timed in turns, `rounds` times (baseline,
ours, baseline, ours, ...); the headline is the ratio of the two medians, and
every round's own figures and ratio are kept beside it.

The baseline is timed over `baseline_batches` batches and extrapolated to the
epoch: its start-up (the workers' fork and the first batch) once, the rest at
its measured rate, plus the same test pass as ours, timed in the same round.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from .bench_timing import Timing, time_baseline, time_eval, time_ours
from .config import TrainConfig


def epoch_rounds(
    cfg: TrainConfig,
    data,
    data_dev,
    dev: torch.device,
    rounds: int,
    epoch: bool,
    baseline_batches: int | None,
    workers: int,
    throughput: Timing,
) -> dict[str, Any]:
    """The epoch figures of `run_bench` (medians over `rounds` turns), with each round under "epoch_rounds".

    `throughput` is the short training-throughput timing, for the training-only speed-up.
    """
    baseline = baseline_batches != 0
    if not (epoch or baseline):
        return {}
    n_train = len(data.train)
    rows: list[dict[str, Any]] = []
    for _ in range(rounds):
        row: dict[str, Any] = {}
        test_s = time_eval(cfg, data_dev, dev).seconds
        if baseline:
            bl = time_baseline(cfg, data, baseline_batches, workers)
            row["baseline_train_images_per_s"] = round(bl.images_per_s)
            row["baseline_startup_seconds"] = round(bl.startup, 3)
            first = cfg.batch_size if bl.startup else 0  # the untimed first batch, if there was one
            row["baseline_epoch_seconds"] = round(bl.startup + (n_train - first) / bl.images_per_s + test_s, 3)
        if epoch:
            ep = time_ours(cfg, data_dev, None, dev)
            row["epoch_train_seconds"] = round(ep.seconds, 3)
            row["epoch_test_seconds"] = round(test_s, 3)
            row["epoch_seconds"] = round(ep.seconds + test_s, 3)
        if baseline and epoch:
            row["speedup_epoch"] = round(row["baseline_epoch_seconds"] / row["epoch_seconds"], 2)
        rows.append(row)
    out: dict[str, Any] = {"epoch_rounds": rows}
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "speedup_epoch"}
    if epoch:
        for k in ("epoch_seconds", "epoch_train_seconds", "epoch_test_seconds"):
            out[k] = round(med[k], 3)
    if baseline:
        out["baseline_train_images_per_s"] = round(med["baseline_train_images_per_s"])
        out["baseline_batches"] = baseline_batches or "all"
        out["baseline_workers"] = workers
        out["baseline_epoch_seconds"] = round(med["baseline_epoch_seconds"], 3)
        out["speedup_train"] = round(throughput.images_per_s / med["baseline_train_images_per_s"], 2)
        if epoch:
            # The ratio of the medians; the rounds' own ratios show its spread.
            out["speedup_epoch"] = round(med["baseline_epoch_seconds"] / med["epoch_seconds"], 2)
            out["speedup_epoch_range"] = [min(r["speedup_epoch"] for r in rows), max(r["speedup_epoch"] for r in rows)]
    return out


def format_lines(r: dict[str, Any]) -> list[str]:
    rows = r.get("epoch_rounds") or []
    if len(rows) < 2 or "speedup_epoch" not in r:
        return []
    each = ", ".join(f"{x['epoch_seconds']:.2f} s vs {x['baseline_epoch_seconds']:.1f} s" for x in rows)
    lo, hi = r["speedup_epoch_range"]
    return [f"epoch rounds, ours vs baseline, in turns: {each} (ratios {lo}x-{hi}x; medians used above)"]
