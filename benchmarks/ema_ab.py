"""The weight average's update: torch's AveragedModel against engine/average.py's WeightAverage.

    PYTHONPATH=src python benchmarks/ema_ab.py [--model mnistlite_flagship] > out.json

Two figures, both interleaved over --rounds rounds:
- the update alone (`update_parameters` on the model's trained-in tensors), in µs;
- the trainer's whole step (`Parts.step`: augmentation, forward, backward, SGD,
  the average) on synthetic batches, fp32 and bf16, with the run's average
  switched between the two classes (the same object and state: WeightAverage
  is an AveragedModel, so only the update's code changes).
It checks first that both give the same averages bit for bit over 20 steps.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mnistlite.bench import machine_info, synthetic_data
from mnistlite.engine.average import WeightAverage
from mnistlite.engine.device import set_threads, tune_cpu_allocator
from mnistlite.engine.parts import build_parts
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for
from unit_ab import clock  # a sibling script: µs per call after a warm-up


def _batches(parts, x, y):
    b = parts.batch_size
    i = 0

    def step() -> None:
        nonlocal i
        s = (i * b) % (len(x) - b)
        parts.step(x[s : s + b], y[s : s + b])
        i += 1

    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnistlite_flagship")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    set_threads(args.threads)
    tune_cpu_allocator()
    data = synthetic_data(4096)
    x, y = data.train.images, data.train.labels
    out: dict = {"command": "PYTHONPATH=src python " + " ".join(sys.argv), "machine": machine_info()}

    try:
        cfg = config_for(args.model, epochs=1000)  # a long schedule: the steps never run out
    except MnistliteError as e:
        print(f"ema_ab: {e}", file=sys.stderr)
        return 2
    if not cfg.ema:
        print(f"ema_ab: {args.model} trains without a weight average (ema 0): nothing to compare", file=sys.stderr)
        return 2
    parts = build_parts(cfg.replace(precision="fp32"), data, torch.device("cpu"))
    ref = AveragedModel(parts.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    ours = WeightAverage(parts.model, cfg.ema)
    step = _batches(parts, x, y)
    for _ in range(20):
        step()
        ref.update_parameters(parts.model)
        ours.update_parameters(parts.model)
    a, b = ref.state_dict(), ours.state_dict()
    out["bit_identical"] = list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)

    alone: dict[str, list[float]] = {"torch": [], "ours": []}
    twin = copy.deepcopy(ours)
    for _ in range(args.rounds):
        alone["torch"].append(clock(lambda: ref.update_parameters(parts.model), 500))
        alone["ours"].append(clock(lambda: twin.update_parameters(parts.model), 500))
    out["update_us_median"] = {k: round(statistics.median(v), 1) for k, v in alone.items()}

    steps: dict[str, list[float]] = {}
    for prec in ("fp32", "bf16"):
        p = build_parts(cfg.replace(precision=prec), data, torch.device("cpu"))
        p.model.train()
        run = _batches(p, x, y)
        for _ in range(args.rounds):
            for cls in (AveragedModel, WeightAverage):
                assert p.ema is not None
                p.ema.__class__ = cls  # the same average, updated by the other class's code
                steps.setdefault(f"{prec}, {cls.__name__}", []).append(clock(run, args.steps) / 1e3)
    med = {k: round(statistics.median(v), 2) for k, v in steps.items()}
    out["ms_per_step_median"] = med
    out["ms_per_step_all"] = {k: [round(t, 2) for t in v] for k, v in steps.items()}
    out["saved_ms_per_step"] = {
        p: round(med[f"{p}, AveragedModel"] - med[f"{p}, WeightAverage"], 2) for p in ("fp32", "bf16")
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
