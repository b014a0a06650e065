"""Scaling of the training step: against batch size, and against model MACs,
with the fraction of this machine's measured matrix-multiply peak achieved.

    python benchmarks/scaling.py [--threads 2] [--steps 40] > scaling.md

Wall-clock throughput of the trainer's own step (`Parts.step`, all its fast
paths on) with every core by default: run it on an otherwise idle machine.
`--cpu-time` measures CPU time instead, which holds up on a busy machine but
hides how well the threads are used. A training step is counted as 3x the
forward MACs (forward, input gradient, weight gradient), 2 FLOPs per MAC.
"""

from __future__ import annotations

import argparse
import time

import torch

from mnistlite.bench import matmul_peak_gflops, synthetic_data
from mnistlite.engine.device import set_threads, tune_cpu_allocator
from mnistlite.engine.parts import build_parts
from mnistlite.modelinfo import profile_registered
from mnistlite.models import config_for, list_models

CLOCK = time.perf_counter


def images_per_second(model: str, batch: int, steps: int, **over) -> float:
    cfg = config_for(model, batch_size=batch, device="cpu", **over)
    data = synthetic_data(batch * (steps + 3))
    parts = build_parts(cfg, data, torch.device("cpu"))
    x, y = data.train.images, data.train.labels
    for i in range(3):
        parts.step(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])
    t0 = CLOCK()
    for i in range(3, steps + 3):
        parts.step(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])
    return steps * batch / (CLOCK() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="0: every core (what `train` uses)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--cpu-time", action="store_true", help="CPU time instead of wall-clock")
    ap.add_argument("--model", default="mnistlite8k_model3", help="model of the batch-size table")
    a = ap.parse_args()
    global CLOCK
    if a.cpu_time:
        CLOCK = time.process_time
    threads = set_threads(a.threads)
    tune_cpu_allocator()  # as the training commands run (README, "Commands")
    a.threads = threads
    peak = matmul_peak_gflops()
    print(f"matrix-multiply peak, {threads} thread(s): {peak:.0f} GFLOP/s (1024x1024 fp32, wall-clock)\n")

    print(f"### Batch size ({a.model}, rotation 7°, {a.threads} thread(s))\n")
    print("| batch | images/s | s per 60k-image epoch (training) |")
    print("|---:|---:|---:|")
    for bs in (32, 64, 128, 256, 512):
        ips = images_per_second(a.model, bs, max(5, a.steps * 128 // bs), rotation=7.0)
        print(f"| {bs} | {ips:,.0f} | {60000 / ips:.1f} |")

    print(f"\n### Model MACs (batch 128, each model's own recipe, {a.threads} thread(s))\n")
    print("| model | params | MACs/image | images/s | s per epoch (training) | GFLOP/s | % of matmul peak |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name in list_models():
        if name.startswith("search_"):
            continue
        p = profile_registered(name)
        ips = images_per_second(name, 128, a.steps)
        gflops = ips * p.macs * 3 * 2 / 1e9
        rows.append((p.macs, name, p.params, ips, gflops))
    for macs, name, params, ips, gflops in sorted(rows):
        print(
            f"| `{name}` | {params:,} | {macs:,} | {ips:,.0f} | {60000 / ips:.1f} | {gflops:.1f} "
            f"| {100 * gflops / peak:.0f}% |"
        )


if __name__ == "__main__":
    main()
