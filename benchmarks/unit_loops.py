"""The fused BatchNorm-ReLU unit: numba's compiled loops against its torch-ops body.

    PYTHONPATH=src python benchmarks/unit_loops.py [--threads 2] [--rounds 5] > out.json

Two figures, each interleaved (loops, ops, loops, ops, ...) and given as the
median of `--rounds`:

- the unit alone, forward and backward, at every shape Model3 and the
  flagship give it (batch 128, dropout 0.01 as Model3's), in µs;
- the trainer's own step (`Parts.step`, real fast path, synthetic batches) of
  each model, in ms, with the time spent inside the unit (forward, backward)
  and inside its compiled loops, measured by wrapping them with a clock.

The switch is `bn_kernels.switched_off()` (what MNISTLITE_NUMBA=0 does for a
whole process), so both variants run in one process on one machine state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch

from mnistlite.bench import machine_info, synthetic_data
from mnistlite.config import TrainConfig
from mnistlite.engine.device import set_threads, tune_cpu_allocator
from mnistlite.engine.parts import build_parts
from mnistlite.models import bn_kernels, fused

SHAPES = {
    "mnistlite8k_model3": [
        (128, 8, 26, 26),
        (128, 10, 24, 24),
        (128, 8, 12, 12),
        (128, 16, 10, 10),
        (128, 32, 8, 8),
        (128, 8, 4, 4),
    ],
    "mnistlite_flagship": [
        (128, 8, 26, 26),
        (128, 16, 24, 24),
        (128, 10, 12, 12),
        (128, 16, 10, 10),
        (128, 16, 8, 8),
        (128, 16, 6, 6),
    ],
}


def variant(loops: bool):
    return contextlib.nullcontext() if loops else bn_kernels.switched_off()


def unit_us(shape: tuple[int, ...], loops: bool, reps: int) -> float:
    torch.manual_seed(0)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    bn = torch.nn.BatchNorm2d(shape[1])
    with variant(loops):
        for i in range(reps + 3):
            if i == 3:
                t0 = time.perf_counter()
            y = fused.bn_relu_dropout(x, bn, 0.01)
            torch.autograd.grad(y, [x, bn.weight, bn.bias], dy)
    return (time.perf_counter() - t0) / reps * 1e6


class Clock:
    """Wall time inside the unit and inside its loops, per step."""

    def __init__(self) -> None:
        self.t = dict.fromkeys(("unit_fwd", "unit_bwd", "loops_fwd", "loops_bwd"), 0.0)
        cls = fused._BNReLUDropout
        self._saved = (cls.forward, cls.backward, bn_kernels.forward, bn_kernels.backward)
        cls.forward = staticmethod(self._wrap(cls.forward, "unit_fwd"))
        cls.backward = staticmethod(self._wrap(cls.backward, "unit_bwd"))
        bn_kernels.forward = self._wrap(bn_kernels.forward, "loops_fwd")
        bn_kernels.backward = self._wrap(bn_kernels.backward, "loops_bwd")

    def _wrap(self, fn, key):
        def timed(*a):
            t0 = time.perf_counter()
            try:
                return fn(*a)
            finally:
                self.t[key] += time.perf_counter() - t0

        return timed

    def close(self) -> None:
        cls = fused._BNReLUDropout
        cls.forward, cls.backward = staticmethod(self._saved[0]), staticmethod(self._saved[1])
        bn_kernels.forward, bn_kernels.backward = self._saved[2], self._saved[3]


def step_ms(model: str, loops: bool, steps: int) -> dict[str, float]:
    over = {"rotation": 7.0} if model == "mnistlite8k_model3" else {}
    cfg = TrainConfig.for_model(model, **over)
    data = synthetic_data(4096)
    with variant(loops):
        parts = build_parts(cfg, data, torch.device("cpu"))
        parts.model.train()
        x, y = data.train.images, data.train.labels

        def step(i: int) -> None:
            lo = (i * 128) % (len(y) - 128)
            parts.step(x[lo : lo + 128], y[lo : lo + 128])

        for i in range(10):
            step(i)
        clock = Clock()
        try:
            t0 = time.perf_counter()
            for i in range(steps):
                step(i)
            wall = time.perf_counter() - t0
        finally:
            clock.close()
    return {"step_ms": wall / steps * 1e3, **{k: v / steps * 1e3 for k, v in clock.t.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=50, help="unit calls per timing")
    ap.add_argument("--steps", type=int, default=30, help="training steps per timing")
    a = ap.parse_args()
    set_threads(a.threads)
    tune_cpu_allocator()  # as the training commands run
    if not bn_kernels.available():
        raise SystemExit(f"the compiled loops do not run here: {bn_kernels.why_not()}")
    report: dict = {
        "command": f"PYTHONPATH=src python benchmarks/unit_loops.py --threads {a.threads} --rounds {a.rounds}",
        "machine": machine_info(),
        "unit_us": {},
        "step": {},
    }
    for model, shapes in SHAPES.items():
        for shape in shapes:
            got: dict[str, list[float]] = {"loops": [], "ops": []}
            for _ in range(a.rounds):
                for name in got:
                    got[name].append(unit_us(shape, name == "loops", a.reps))
            med = {k: round(statistics.median(v), 1) for k, v in got.items()}
            report["unit_us"][f"{model} {shape}"] = {**med, "speedup": round(med["ops"] / med["loops"], 2)}
        rows: dict[str, list[dict[str, float]]] = {"loops": [], "ops": []}
        for _ in range(a.rounds):
            for name in rows:
                rows[name].append(step_ms(model, name == "loops", a.steps))
        med_rows = {
            name: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]} for name, rs in rows.items()
        }
        med_rows["speedup"] = {"step": round(med_rows["ops"]["step_ms"] / med_rows["loops"]["step_ms"], 3)}
        report["step"][model] = med_rows
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
