"""What elastic distortions cost per training step (the flagship, batch 128).

    python benchmarks/elastic_cost.py [--threads 1]

Times, as medians of repeated calls: the augmenter alone (the recipe's affine
warp, then the same warp with an elastic field in its one grid_sample) and a
whole flagship training step with each. Synthetic images: the cost does not
depend on what the pixels are.
"""

from __future__ import annotations

import argparse
import platform

import torch

from micro import timeit  # the sibling script's median timer (run as python benchmarks/elastic_cost.py)
from mnistlite.augment import AugmentSpec, BatchAugment
from mnistlite.bench import synthetic_data
from mnistlite.engine.device import set_threads, tune_cpu_allocator
from mnistlite.engine.parts import build_parts
from mnistlite.models import config_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--sigma", type=float, default=4.0)
    a = ap.parse_args()
    set_threads(a.threads)
    tune_cpu_allocator()  # as the training commands run
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {a.threads}")
    base = config_for("mnistlite_flagship")
    elastic = base.replace(elastic_alpha=a.alpha, elastic_sigma=a.sigma)
    x = torch.randn(128, 1, 28, 28)
    for name, cfg in (("recipe's affine warp", base), (f"+ elastic {a.alpha:g}/{a.sigma:g}", elastic)):
        aug = BatchAugment(AugmentSpec.from_config(cfg), -0.4242, torch.Generator().manual_seed(0))
        print(f"augment, batch 128, {name}: {timeit(lambda aug=aug: aug(x), 200):.0f} us")
    data = synthetic_data(4096)
    for name, cfg in (("recipe", base), (f"recipe + elastic {a.alpha:g}/{a.sigma:g}", elastic)):
        parts = build_parts(cfg, data, torch.device("cpu"))
        xs, ys = data.train.images, data.train.labels
        it = iter(range(10**9))

        def step(parts=parts, xs=xs, ys=ys, it=it):
            k = next(it) % 31
            parts.step(xs[k * 128 : (k + 1) * 128], ys[k * 128 : (k + 1) * 128])

        print(f"flagship training step, batch 128, {name}: {timeit(step, 100) / 1000:.2f} ms")


if __name__ == "__main__":
    main()
