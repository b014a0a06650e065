"""fp32 against bf16 autocast on this machine: the trainer's own step, then 1-epoch runs.

    PYTHONPATH=src python benchmarks/precision.py --out docs/results/precision_bf16_cpu_amx.json

Part 1 times the trainer's `Parts.step` (augment, forward, backward, SGD, EMA) of
the model on real MNIST batches in one process, interleaving the variants
(fp32 with the fused unit, fp32 with torch's own BatchNorm + ReLU, bf16 with the
fused unit, bf16 with torch's layers, fp32, ...) for --rounds rounds of --steps
steps, and reports medians in ms per step. The allocator is tuned first, as
`mnistlite train` does (engine/device.py), unless --no-malloc-tuning.
Part 2 (--epoch-runs N) runs `mnistlite train --epochs 1 --precision fp32` and
`--precision bf16` one after the other, ABAB..., and reads each run's epoch time
from its metrics.csv and its wall time from result.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mnistlite.bench import machine_info
from mnistlite.data import load_dataset
from mnistlite.engine import precision as prec
from mnistlite.engine import rundir as rd
from mnistlite.engine.device import resolve_device, set_threads, tune_cpu_allocator
from mnistlite.engine.parts import build_parts
from mnistlite.models import config_for

# name: (precision, BN-ReLU route). "fp32" is the trainer's float32 step (fused unit);
# the plain routes run torch's own BatchNorm2d + ReLU (+ Dropout) in either dtype, so
# the fused unit is compared with torch's layers at the same precision.
VARIANTS = {
    "fp32": ("fp32", "fused"),
    "fp32_plain": ("fp32", "plain"),
    "bf16_fused": ("bf16", "fused"),  # bf16 maps through the fused BN-ReLU unit
    "bf16_plain": ("bf16", "plain"),  # bf16 maps through torch's own BatchNorm2d + ReLU
}


def time_steps(args, data, device) -> dict:
    cfg = config_for(args.model, device=str(device), threads=args.threads)
    x_all, y_all = data.train.images, data.train.labels
    parts = {}
    for name, (p, route) in VARIANTS.items():
        parts[name] = build_parts(
            cfg.replace(precision=p, bn_fusion="fused" if route == "fused" else "torch"), data, device
        )
        parts[name].model.train()
    perm = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
    bs = cfg.batch_size

    def run(name: str, k: int, offset: int) -> float:
        t0 = time.perf_counter()
        for i in range(k):
            lo = ((offset + i) * bs) % (len(y_all) - bs)
            idx = perm[lo : lo + bs]
            parts[name].step(x_all[idx], y_all[idx])
        return (time.perf_counter() - t0) * 1000 / k

    for name in list(VARIANTS) * 2:  # warm-up: oneDNN kernels per dtype, the allocator's heap
        run(name, 5, 0)
    times: dict[str, list[float]] = {n: [] for n in VARIANTS}
    for r in range(args.rounds):
        for name in VARIANTS:
            times[name].append(run(name, args.steps, r * args.steps))
        print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.1f} ms" for n, v in times.items()), flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    return {
        "model": args.model,
        "batch_size": bs,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "ms_per_step_median": {n: round(v, 2) for n, v in med.items()},
        "ms_per_step_all": {n: [round(x, 2) for x in v] for n, v in times.items()},
        "speedup_vs_fp32": {n: round(med["fp32"] / v, 3) for n, v in med.items()},
    }


def epoch_runs(args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.epoch_runs):
            for p in ("fp32", "bf16"):
                out = Path(tmp) / f"{p}{i}"
                cmd = [sys.executable, "-m", "mnistlite", "train", "--model", args.model, "--epochs", "1"]
                cmd += ["--precision", p, "--out", str(out), "--no-progress"]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - t0
                metrics = rd.read_metrics(out / rd.METRICS)
                result = json.loads((out / rd.RESULT).read_text())
                row = {
                    "precision": p,
                    "order": len(rows) + 1,
                    "epoch_seconds": round(float(metrics[0]["seconds"]), 2),
                    "run_wall_seconds": round(result["wall_seconds"], 2),
                    "process_seconds": round(wall, 2),
                    "test_acc": float(metrics[0]["test_acc"]),
                    "precision_reason": result.get("precision_reason"),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    med = {p: statistics.median(r["epoch_seconds"] for r in rows if r["precision"] == p) for p in ("fp32", "bf16")}
    cmd = f"mnistlite train --model {args.model} --epochs 1 --precision fp32|bf16 (ABAB)"
    return {
        "command": cmd,
        "bf16_maps_through": "the fused unit",
        "runs": rows,
        "epoch_seconds_median": med,
        "speedup_bf16": round(med["fp32"] / med["bf16"], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnistlite_flagship")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--epoch-runs", type=int, default=2, help="ABAB pairs of 1-epoch runs (0 skips them)")
    ap.add_argument("--note", default="", help="recorded as is, e.g. what else ran on the machine")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's default allocator settings")
    args = ap.parse_args()
    set_threads(args.threads)
    tuned = False if args.no_malloc_tuning else tune_cpu_allocator()  # the training commands' setting
    device = resolve_device("cpu")
    data = load_dataset("mnist", data_dir=os.environ.get("MNISTLITE_DATA")).to(device)
    report = {
        "command": "PYTHONPATH=src python benchmarks/precision.py " + " ".join(sys.argv[1:]),
        "note": args.note,
        "machine": machine_info(),
        "load_average_at_start": os.getloadavg(),
        "malloc_tuning": tuned,
        "auto": prec.resolve(config_for(args.model), device).line,
        "step": time_steps(args, data, device),
    }
    if args.epoch_runs:
        report["epoch"] = epoch_runs(args)
    report["load_average_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
