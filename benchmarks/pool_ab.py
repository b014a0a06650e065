"""The trainer's step with the compiled 2x2 max-pool against torch's, in fp32 and bf16.

    PYTHONPATH=src python benchmarks/pool_ab.py [--models mnistlite_flagship mnistlite8k_model3] > out.json

Times `Parts.step` (augmentation, forward, backward, SGD, weight average) of each
model on synthetic batches at its own batch size, 2 threads unless --threads,
allocator tuned as `mnistlite train` does. The four variants (fp32/bf16 x the
compiled pool on/off) are interleaved for --rounds rounds of --steps steps;
the figures are medians in ms per step. "off" routes every pool to torch's
layer by making FusedSequential's test for a plain 2x2 pool say no.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from mnistlite.bench import machine_info, synthetic_data
from mnistlite.engine.device import set_threads, tune_cpu_allocator
from mnistlite.engine.parts import build_parts
from mnistlite.fast import unit as fused
from mnistlite.models import config_for

PLAIN_POOL = fused.is_plain_pool2


def _ms_per_step(parts, batch: int, x: torch.Tensor, y: torch.Tensor, pool: bool, steps: int) -> float:
    fused.is_plain_pool2 = PLAIN_POOL if pool else (lambda m: False)
    for _ in range(3):
        parts.step(x[:batch], y[:batch])
    t0 = time.perf_counter()
    for i in range(steps):
        s = (i * batch) % (len(x) - batch)
        parts.step(x[s : s + batch], y[s : s + batch])
    return (time.perf_counter() - t0) / steps * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mnistlite_flagship", "mnistlite8k_model3"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    set_threads(args.threads)
    tune_cpu_allocator()
    data = synthetic_data(4096)
    x, y = data.train.images, data.train.labels
    out: dict = {"command": "PYTHONPATH=src python " + " ".join(sys.argv), "machine": machine_info(), "models": {}}
    for name in args.models:
        parts = {}
        for prec in ("fp32", "bf16"):
            cfg = config_for(name, rotation=7.0, precision=prec)
            p = build_parts(cfg, data, torch.device("cpu"))
            p.model.train()
            parts[prec] = (p, cfg.batch_size)

        ms: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for prec in ("fp32", "bf16"):
                for pool in (False, True):
                    p, b = parts[prec]
                    ms.setdefault(f"{prec}, pool {'loops' if pool else 'torch'}", []).append(
                        _ms_per_step(p, b, x, y, pool, args.steps)
                    )
        fused.is_plain_pool2 = PLAIN_POOL
        med = {k: round(statistics.median(v), 2) for k, v in ms.items()}
        out["models"][name] = {
            "ms_per_step_median": med,
            "ms_per_step_all": {k: [round(t, 2) for t in v] for k, v in ms.items()},
            "saved_ms_per_step": {
                p: round(med[f"{p}, pool torch"] - med[f"{p}, pool loops"], 2) for p in ("fp32", "bf16")
            },
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
