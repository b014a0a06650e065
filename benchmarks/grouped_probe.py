"""Does training k seeds as one grouped network pay on this machine?

    PYTHONPATH=src python benchmarks/grouped_probe.py [--model mnistlite_flagship] [--threads 2] > probe.json

Times the training step (augmentation of each copy's batch, forward, backward,
SGD step with the recipe's momentum and weight decay) of k = 1, 2, 3, 5 copies
packed into one network (engine/grouped.py), at the recipe's batch size per
copy, in images per second summed over the copies: the best of --repeats
rounds (each round times every k once, interleaved), with the median beside it. For comparison: the
same single-copy step in 2 processes x 1 thread at once (the `--jobs 2`
split), and on 1 thread alone. Wall-clock: run it on an otherwise idle machine
(under the project's CPU lock). Synthetic images: the step's cost does not
depend on the pixels.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import time

import torch
import torch.nn.functional as F


def _setup(model: str, k: int, threads: int, fmt_name: str):
    from mnistlite.augment import AugmentSpec, BatchAugment
    from mnistlite.config import TrainConfig
    from mnistlite.engine.device import set_threads, tune_cpu_allocator
    from mnistlite.engine.grouped import group_models
    from mnistlite.engine.optim import build_optimizer
    from mnistlite.models import get_entry

    set_threads(threads)
    tune_cpu_allocator()  # as the training commands run
    cfg = TrainConfig.for_model(model, device="cpu")
    entry = get_entry(model)
    fmt = torch.channels_last if fmt_name == "channels_last" else torch.contiguous_format
    models = []
    for s in range(k):
        torch.manual_seed(s)
        models.append(entry.build().train())
    net = models[0] if k == 1 else group_models(models)
    net = net.to(memory_format=fmt)  # type: ignore[call-overload]
    opt = build_optimizer(net, cfg)
    gens = [torch.Generator().manual_seed(s) for s in range(k)]
    augs = [BatchAugment(AugmentSpec.from_config(cfg), fill=-0.42, generator=g) for g in gens]
    return cfg, net, opt, augs


def make_step(model: str, k: int, threads: int, fmt_name: str = "channels_last"):
    """The training step of k packed copies, and the images one step trains."""
    from mnistlite.augment import apply_affine, random_affine_matrices

    cfg, net, opt, augs = _setup(model, k, threads, fmt_name)
    fmt = torch.channels_last if fmt_name == "channels_last" else torch.contiguous_format
    bs = cfg.batch_size
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(k * bs, 1, 28, 28, generator=gen)
    y = torch.randint(10, (bs * k,), generator=gen)

    def step() -> None:
        # Each copy draws its own warps from its own generator; one grid_sample warps all k batches.
        theta = torch.cat([random_affine_matrices(bs, a.spec, a.generator) for a in augs])
        warped = apply_affine(xs, theta, augs[0].fill).view(k, bs, 28, 28).transpose(0, 1)
        x = warped.contiguous(memory_format=fmt)
        logits = net(x).view(bs * k, -1)  # (N, k*classes): row-major (sample, copy, class)
        loss = F.cross_entropy(logits, y) * k  # the sum of the copies' mean losses
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    return step, bs * k


def rate(step, images: int, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * images / (time.perf_counter() - t0)


def time_steps(model: str, ks: list[int], threads: int, steps: int, repeats: int, fmt_name: str = "channels_last"):
    """Images/s of each k, measured in interleaved rounds so that a disturbance hits every k alike."""
    made = {k: make_step(model, k, threads, fmt_name) for k in ks}
    runs: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(repeats):
        for k in ks:
            runs[k].append(rate(*made[k], steps))
    return [
        {
            "k": k,
            "threads": threads,
            "format": fmt_name,
            "images_per_s": max(r),
            "median": statistics.median(r),
            "runs": r,
        }
        for k, r in runs.items()
    ]


def _worker(args: tuple) -> dict:
    model, threads, steps, repeats = args
    return time_steps(model, [1], threads, steps, repeats)[0]


def two_processes(model: str, steps: int, repeats: int) -> dict:
    """Two single-copy runs at once, 1 thread each: their summed throughput."""
    with mp.get_context("spawn").Pool(2) as pool:
        res = pool.map(_worker, [(model, 1, steps, repeats)] * 2)
    return {"k": 1, "processes": 2, "threads": 1, "images_per_s": sum(r["images_per_s"] for r in res), "each": res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnistlite_flagship")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ks", default="1,2,3,5")
    a = ap.parse_args()
    ks = [int(v) for v in a.ks.split(",")]
    rows = time_steps(a.model, ks, a.threads, a.steps, a.repeats)
    # oneDNN's grouped convolutions may prefer another layout than the plain ones: check it.
    nchw = time_steps(a.model, [max(ks)], a.threads, a.steps, a.repeats, "contiguous")
    one_thread = time_steps(a.model, [1], 1, a.steps, a.repeats)[0]
    pair = two_processes(a.model, a.steps, a.repeats)
    base = rows[0]["images_per_s"]
    out = {
        "command": "PYTHONPATH=src python benchmarks/grouped_probe.py "
        + " ".join(f"--{k} {v}" for k, v in vars(a).items()),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "model": a.model,
        "grouped": [{**r, "speedup_vs_one": r["images_per_s"] / base} for r in rows],
        "grouped_nchw": [{**r, "speedup_vs_one": r["images_per_s"] / base} for r in nchw],
        "one_copy_one_thread": one_thread,
        "two_processes_one_thread": {**pair, "speedup_vs_one": pair["images_per_s"] / base},
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
            out["machine"]["cpu"] = names[0] if names else out["machine"]["cpu"]
    except OSError:
        pass
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
