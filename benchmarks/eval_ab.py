"""Inference through the compiled loops against torch's layers: an evaluation pass, interleaved.

    PYTHONPATH=src python benchmarks/eval_ab.py [--models mnistlite_flagship,mnistlite8k_model3] > out.json

For each model: build it as the trainer does (channels_last, the run's recipe), train
--warm steps on synthetic batches so that its BatchNorm statistics are a trained net's,
then time `engine.evaluation.evaluate` over --images synthetic images (the trainer's
per-epoch judge; batch 500) with the loops on and off (the same weights on torch's layers), in turns over
--rounds rounds. It checks first that the logits of one batch are equal bit for bit.
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
from mnistlite.engine.evaluation import evaluate
from mnistlite.engine.parts import build_parts
from mnistlite.errors import MnistliteError
from mnistlite.fast import kernels
from mnistlite.fast.apply import accelerate
from mnistlite.models import config_for, create_model


def one_model(name: str, images: int, rounds: int, warm: int) -> dict:
    data = synthetic_data(images)
    cfg = config_for(name, epochs=1000, precision="fp32")
    parts = build_parts(cfg, data, torch.device("cpu"))
    x, y, b = data.train.images, data.train.labels, parts.batch_size
    for i in range(warm):
        s = (i * b) % (len(x) - b)
        parts.step(x[s : s + b], y[s : s + b])
    models = {"loops": parts.model.eval()}
    plain, _ = accelerate(create_model(name), fused=False)  # the same weights on torch's layers
    plain.load_state_dict(models["loops"].state_dict())
    models["torch"] = plain.to(memory_format=torch.channels_last).eval()
    with torch.no_grad():
        same = bool(torch.equal(models["loops"](x[:500]), models["torch"](x[:500])))
    times: dict[str, list[float]] = {"torch": [], "loops": []}
    for r in range(rounds):
        for key in ("torch", "loops") if r % 2 == 0 else ("loops", "torch"):
            t = time.perf_counter()
            evaluate(models[key], data.train, 500)
            times[key].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "logits_bit_identical": same,
        "seconds_median": {k: round(v, 4) for k, v in med.items()},
        "seconds_all": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "speedup": round(med["torch"] / med["loops"], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mnistlite_flagship,mnistlite8k_model3,mnistlite_sep8k")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--warm", type=int, default=30)
    args = ap.parse_args()
    if not kernels.available():
        print(f"eval_ab: the compiled loops do not run here ({kernels.why_not()})", file=sys.stderr)
        return 2
    if args.images < 500 or args.rounds < 1 or args.warm < 0:
        print("eval_ab: --images must be at least 500, --rounds at least 1, --warm at least 0", file=sys.stderr)
        return 2
    set_threads(args.threads)
    tune_cpu_allocator()
    out: dict = {"command": "PYTHONPATH=src python " + " ".join(sys.argv), "machine": machine_info(), "models": {}}
    for name in args.models.split(","):
        try:
            out["models"][name] = one_model(name, args.images, args.rounds, args.warm)
        except MnistliteError as e:
            print(f"eval_ab: {e}", file=sys.stderr)
            return 2
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
