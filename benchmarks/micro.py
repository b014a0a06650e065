"""The micro-benchmarks behind the claims in docs/performance.md's "How the trainer is fast".

    python benchmarks/micro.py [--threads 2]

Each line: what was replaced, its time, and the replacement's time (median
of repeated calls, wall-clock). The allocator comparison runs a child process
without the tuning, since it is process-wide.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def timeit(fn, reps: int = 50) -> float:
    """Median wall-clock microseconds of fn()."""
    for _ in range(5):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


def geometric_positions(n: int, p: float) -> torch.Tensor:
    """The sampler the Poisson one replaced: gaps of a Bernoulli process."""
    log_q, pos, start = math.log1p(-p), [], -1
    while start < n - 1:
        u = torch.rand(int(n * p + 6 * math.sqrt(n * p) + 16)).clamp_min_(1e-30)
        chunk = start + torch.cumsum(torch.floor(torch.log(u) / log_q).to(torch.int64) + 1, 0)
        pos.append(chunk)
        start = int(chunk[-1])
    out = torch.cat(pos)
    return out[out < n]


def model3_step_ms(tune: bool, threads: int) -> float:
    from mnistlite.bench import synthetic_data
    from mnistlite.engine.device import tune_cpu_allocator
    from mnistlite.engine.parts import build_parts
    from mnistlite.models import config_for

    if tune:
        tune_cpu_allocator()
    torch.set_num_threads(threads)
    data = synthetic_data(4096)
    parts = build_parts(config_for("mnistlite8k_model3", rotation=7.0), data, torch.device("cpu"))
    x, y = data.train.images, data.train.labels
    i = iter(range(10**9))

    def step():
        k = next(i) % 31
        parts.step(x[k * 128 : (k + 1) * 128], y[k * 128 : (k + 1) * 128])

    return timeit(step, 60) / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=["tuned", "untuned"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(model3_step_ms(a.child == "tuned", a.threads)))
        return

    def child(kind: str) -> float:
        cmd = [sys.executable, __file__, "--child", kind, "--threads", str(a.threads)]
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])

    untuned, tuned = child("untuned"), child("tuned")
    print(f"Model3 training step, default glibc allocator -> tuned (mallopt): {untuned:.1f} ms -> {tuned:.1f} ms")

    from mnistlite.augment import affine_grid
    from mnistlite.engine.device import set_threads, tune_cpu_allocator
    from mnistlite.fast.dropout import drop_positions
    from mnistlite.fast.unit import bn_relu_dropout

    set_threads(a.threads)
    tune_cpu_allocator()  # as the training commands run (README, "Commands")
    theta = torch.randn(128, 2, 3)
    t_torch = timeit(lambda: F.affine_grid(theta, [128, 1, 28, 28], align_corners=False))
    t_ours = timeit(lambda: affine_grid(theta, 128, 28, 28))
    print(f"affine grid, batch 128 of 28x28: torch {t_torch:.0f} us -> batched matmul {t_ours:.0f} us")

    x = torch.randn(128, 8, 26, 26).contiguous(memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn_like(x)
    bn = torch.nn.BatchNorm2d(8)
    t_bn = timeit(lambda: bn(x))
    t_bn_relu = timeit(lambda: torch.autograd.grad(torch.relu(bn(x)), [x, bn.weight, bn.bias], dy))
    t_fused = timeit(lambda: bn_relu_dropout(x, bn, 0.0))
    t_fused_b = timeit(lambda: torch.autograd.grad(bn_relu_dropout(x, bn, 0.0), [x, bn.weight, bn.bias], dy))
    t_relu = timeit(lambda: torch.relu(x))
    print(f"BatchNorm2d forward, 128x8x26x26 channels_last: torch {t_bn:.0f} us (one ReLU pass: {t_relu:.0f} us)")
    print(
        f"BN + ReLU forward: torch {t_bn + t_relu:.0f} us -> fused {t_fused:.0f} us; "
        f"forward + backward: torch {t_bn_relu:.0f} us -> fused {t_fused_b:.0f} us"
    )

    n, p = x.numel(), 0.01
    t_geo = timeit(lambda: geometric_positions(n, p))
    t_poi = timeit(lambda: drop_positions(n, p))
    t_bern = timeit(lambda: torch.empty(n).bernoulli_(1 - p))
    print(
        f"dropout mask, {n:,} activations at p={p}: bernoulli_ {t_bern:.0f} us, geometric gaps {t_geo:.0f} us "
        f"-> Poisson positions {t_poi:.0f} us"
    )


if __name__ == "__main__":
    main()
