"""Profile one training step by operator, before and after the CPU optimisations.

    python benchmarks/profile_step.py [--model mnistlite8k_model3] [--threads 1] [--steps 30]

"before" is the naive set-up: NCHW tensors and torch's own Dropout.
"after" is what the trainer does: channels_last and mnistlite's cheaper
Dropout mask. Prints a markdown table of self CPU time per step by operator
(milliseconds), and images/s from CPU time, so that the figures hold up on
a machine that is busy with other work.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from mnistlite.augment import AugmentSpec, BatchAugment
from mnistlite.models import create_model
from mnistlite.models.blocks import Dropout

GROUPS = {
    "convolution": ("convolution", "conv"),
    "dropout mask": ("bernoulli", "random_", "aten::ge", "aten::lt"),
    "batch norm": ("batch_norm",),
    "max pool": ("max_pool",),
    "relu": ("relu", "clamp_min", "threshold"),
    "elementwise mul (dropout apply)": ("aten::mul",),
    "augmentation (grid_sample)": ("grid_sampler", "affine_grid", "bmm"),
    "layout copies": ("aten::copy_", "_to_copy", "contiguous"),
    "optimizer": ("SGD", "_foreach", "add_", "aten::add"),
}


def _stock_dropout(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, Dropout):
            setattr(model, name, nn.Dropout(child.p))
        else:
            _stock_dropout(child)
    return model


def measure(model_name: str, variant: str, steps: int, batch: int) -> tuple[dict[str, float], float]:
    torch.manual_seed(0)
    model = create_model(model_name).train()
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    fmt = torch.contiguous_format
    if variant == "before":
        model = _stock_dropout(model)
    else:
        fmt = torch.channels_last
        model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    aug = BatchAugment(AugmentSpec(rotation=7), fill=-0.4242, generator=torch.Generator().manual_seed(0))

    def step():
        out = model(aug(x).contiguous(memory_format=fmt))
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    t0 = time.process_time()
    for _ in range(steps):
        step()
    ips = steps * batch / (time.process_time() - t0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    groups: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        key = next((g for g, pats in GROUPS.items() if any(p in ev.key for p in pats)), "other")
        groups[key] += ev.self_cpu_time_total / 1000 / steps
    return dict(groups), ips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnistlite8k_model3")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    before, ips_b = measure(a.model, "before", a.steps, a.batch_size)
    after, ips_a = measure(a.model, "after", a.steps, a.batch_size)
    keys = sorted(set(before) | set(after), key=lambda k: -before.get(k, 0))
    print(f"model {a.model}, batch {a.batch_size}, {a.threads} thread(s), {a.steps} steps; "
          "self CPU ms per training step")
    print()
    print("| operator group | before (NCHW, stock dropout) | after (channels_last, cheap mask) |")
    print("|---|---:|---:|")
    for k in keys:
        print(f"| {k} | {before.get(k, 0):.2f} | {after.get(k, 0):.2f} |")
    print(f"| **total** | **{sum(before.values()):.2f}** | **{sum(after.values()):.2f}** |")
    print(f"| images/s (CPU time) | {ips_b:,.0f} | {ips_a:,.0f} |")


if __name__ == "__main__":
    main()
