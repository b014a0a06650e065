"""Training-step time of the flagship and its cheaper variants (issue 15, item 3).

    python benchmarks/cheap_step.py [--threads 1] [--steps 40]

Each candidate (a family NetSpec plus its batch size) is registered as a spec,
built by the trainer's own `build_parts` (the fast path: channels_last, fused
BN-ReLU, foreach SGD, tuned allocator) and timed on synthetic data: wall-clock
ms per step, and that times the steps of one 55,000-image epoch (the
--val-size 5000 split), so batch 256 is compared per epoch, not per step.
Screening only: the tuning round's s/run is the end-to-end figure.
"""

from __future__ import annotations

import argparse
import json
import math
import time

# name -> (spec kwargs, recipe overrides); the candidates of experiments/tuning/flagship_cheap.toml
CANDIDATES = {
    "flagship": (dict(stages=((8, 16), (16, 16, 16)), transitions=(10,)), {}),
    "flagship_bs256": (dict(stages=((8, 16), (16, 16, 16)), transitions=(10,)), {"batch_size": 256}),
    "pool1_16": (dict(stages=((16,), (16, 16, 16)), transitions=(12,)), {}),
    "pool1_8_18": (dict(stages=((8,), (18, 18, 18)), transitions=(8,)), {}),
    "first_6_12": (dict(stages=((6, 12), (16, 16, 16)), transitions=(10,)), {}),
    "pool1_16_bs256": (dict(stages=((16,), (16, 16, 16)), transitions=(12,)), {"batch_size": 256}),
}
TRAIN_IMAGES = 55_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=40)
    a = ap.parse_args()

    import torch

    from mnistlite.bench import synthetic_data
    from mnistlite.engine.device import set_threads, tune_cpu_allocator
    from mnistlite.engine.parts import build_parts
    from mnistlite.modelinfo import profile_model
    from mnistlite.models import config_for
    from mnistlite.models.family import NetSpec, build, count_params
    from mnistlite.models.mnistlite_zoo import register_spec

    set_threads(a.threads)
    tune_cpu_allocator()
    data = synthetic_data(4096)
    x_all, y_all = data.train.images, data.train.labels
    rows = []
    for name, (kw, recipe) in CANDIDATES.items():
        spec = NetSpec(**kw)
        model = f"cheap_{name}"
        register_spec(model, spec, {"ema": 0.998, **recipe})
        cfg = config_for(model, rotation=8.0, **recipe)
        parts = build_parts(cfg, data, torch.device("cpu"))
        parts.model.train()
        b = cfg.batch_size

        starts = [(i * b) % (4096 - b) for i in range(max(8, a.steps))]
        for lo in starts[:8]:  # warm-up: oneDNN picks and caches its kernels
            parts.step(x_all[lo : lo + b], y_all[lo : lo + b])
        t0 = time.perf_counter()
        for lo in starts[: a.steps]:
            parts.step(x_all[lo : lo + b], y_all[lo : lo + b])
        ms = (time.perf_counter() - t0) / a.steps * 1000
        epoch_s = ms * math.ceil(TRAIN_IMAGES / b) / 1000
        macs = profile_model(build(spec)).macs
        rows.append(
            dict(candidate=name, params=count_params(spec), macs=macs, batch=b, ms_per_step=ms, s_per_epoch=epoch_s)
        )
    base = rows[0]["s_per_epoch"]
    print(f"{a.threads} thread(s), {a.steps} timed steps per candidate, synthetic data")
    print()
    print("| candidate | params | MACs/image | batch | ms/step | s per 55k epoch | speed-up vs flagship |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['candidate']} | {r['params']:,} | {r['macs']:,} | {r['batch']} | {r['ms_per_step']:.2f} | "
            f"{r['s_per_epoch']:.1f} | {base / r['s_per_epoch']:.2f}x |"
        )
    print()
    print(json.dumps({"threads": a.threads, "rows": rows}))


if __name__ == "__main__":
    main()
