"""Profile one training step by operator: the naive set-up against the trainer's fast path.

    python benchmarks/profile_step.py [--model mnistlite8k_model3] [--threads 2] [--steps 30]

"before": NCHW tensors (so BatchNorm, ReLU and Dropout run as separate torch
layers), torch's own Dropout, torch's affine_grid, the for-loop SGD and glibc's
default allocator: the way a straightforward PyTorch loop runs.
"after": the trainer's own step (`engine.parts.Parts.step`): channels_last,
the fused BatchNorm-ReLU-Dropout (fast/unit.py), the sparse dropout mask, the
matmul affine grid, foreach SGD and the tuned allocator (engine/device.py).

Each variant runs in its own process (the allocator setting is process-wide).
Prints a markdown table of self CPU time per step by operator group, and the
wall-clock ms per step and images/s of the same steps without the profiler.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict

GROUPS = {
    "convolution": ("convolution", "conv"),
    "batch norm (torch)": ("batch_norm",),
    "fused BN-ReLU-Dropout (ours)": ("_BNReLUDropout",),
    "dropout mask": ("bernoulli", "random_", "aten::ge", "aten::lt"),
    "max pool": ("max_pool",),
    "relu": ("relu", "clamp_min", "threshold"),
    "elementwise (mul, add, addcmul, sum)": ("aten::mul", "aten::addcmul", "aten::sum", "aten::add"),
    "augmentation (affine grid, grid_sample)": ("grid_sampler", "affine_grid", "bmm", "aten::mm"),
    "optimizer": ("SGD", "_foreach"),
    "layout copies": ("aten::copy_", "_to_copy", "contiguous"),
}


def measure(model_name: str, variant: str, steps: int, batch: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from mnistlite.bench import synthetic_data
    from mnistlite.engine.device import set_threads, tune_cpu_allocator
    from mnistlite.engine.parts import build_parts
    from mnistlite.models import config_for, create_model

    data = synthetic_data(4096)
    x_all, y_all = data.train.images, data.train.labels
    if variant == "after":
        set_threads(threads)
        tune_cpu_allocator()  # as the training commands run (README, "Commands")
        cfg = config_for(model_name, rotation=7.0, batch_size=batch)
        parts = build_parts(cfg, data, torch.device("cpu"))
        parts.model.train()

        def step(i):
            idx = slice((i * batch) % 3968, (i * batch) % 3968 + batch)
            parts.step(x_all[idx], y_all[idx])
    else:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = create_model(model_name).train()  # plain torch: nn.Dropout, separate layers
        opt = torch.optim.SGD(
            model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4, foreach=False
        )

        def step(i):
            idx = slice((i * batch) % 3968, (i * batch) % 3968 + batch)
            x = x_all[idx]
            a = (torch.rand(len(x)) * 2 - 1) * 0.122  # +-7 degrees
            theta = torch.stack(
                [torch.stack([a.cos(), -a.sin(), 0 * a], 1), torch.stack([a.sin(), a.cos(), 0 * a], 1)], 1
            )
            x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    for i in range(10):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    wall_ms = (time.perf_counter() - t0) / steps * 1000
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(i)
    groups: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        key = next((g for g, pats in GROUPS.items() if any(p in ev.key for p in pats)), "other")
        groups[key] += ev.self_cpu_time_total / 1000 / steps
    return {"groups": dict(groups), "wall_ms": wall_ms, "images_per_s": batch * 1000 / wall_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnistlite8k_model3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--variant", choices=["before", "after"], help=argparse.SUPPRESS)  # the child process
    a = ap.parse_args()
    if a.variant:
        print(json.dumps(measure(a.model, a.variant, a.steps, a.batch_size, a.threads)))
        return
    res = {}
    for v in ("before", "after"):
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            v,
            "--model",
            a.model,
            "--threads",
            str(a.threads),
            "--steps",
            str(a.steps),
            "--batch-size",
            str(a.batch_size),
        ]
        res[v] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    b, f = res["before"]["groups"], res["after"]["groups"]
    keys = sorted(set(b) | set(f), key=lambda k: -(b.get(k, 0) + f.get(k, 0)))
    print(
        f"model {a.model}, batch {a.batch_size}, {a.threads} thread(s), {a.steps} steps; "
        "self CPU ms per training step (summed over threads' callers)"
    )
    print()
    print("| operator group | before (plain torch) | after (mnistlite) |")
    print("|---|---:|---:|")
    for k in keys:
        print(f"| {k} | {b.get(k, 0):.2f} | {f.get(k, 0):.2f} |")
    print(f"| **total (profiled)** | **{sum(b.values()):.2f}** | **{sum(f.values()):.2f}** |")
    print(f"| wall-clock ms per step (no profiler) | {res['before']['wall_ms']:.2f} | {res['after']['wall_ms']:.2f} |")
    print(f"| images/s | {res['before']['images_per_s']:,.0f} | {res['after']['images_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
