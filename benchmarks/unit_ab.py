"""Interleaved A/B of two versions of the unit's compiled loops (fast/loops.py).

    git show REV:src/mnistlite/fast/loops.py > /tmp/bl_old.py
    PYTHONPATH=src python benchmarks/unit_ab.py --old /tmp/bl_old.py [--new src/mnistlite/fast/loops.py] > out.json

Both files are loaded as modules (numba's disk cache off, so neither reads the
other's compiled code) and timed alternately, forward plus backward, at every
shape the unit sees in a training step of each model; the figure per model is
the sum over its units of the per-shape medians over `--rounds`. It checks
first that both give bit-identical outputs on every shape.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mnistlite.bench import machine_info
from mnistlite.engine.device import set_threads
from mnistlite.fast import unit as fused

# The flagship's and Model3's unit shapes are unit_loops.py's (batch 128); sep8k's at batch 64.
LOOP_SHAPES = {  # the unit's shapes in a training step at batch 128
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

SHAPES = {
    "mnistlite_sep8k (batch 64)": [(64, 8, 28, 28), (64, 16, 26, 26), (64, 16, 13, 13), (64, 16, 11, 11)]
    + [(64, 30, s, s) for s in (11, 9, 9, 7, 7, 5, 5, 3, 3)],
    **{f"{model} (batch 128)": shapes for model, shapes in LOOP_SHAPES.items()},
}


def load(path: str, name: str):
    src = Path(path).read_text().replace(", cache=True", "").replace("@njit(cache=True)", "@njit")
    tmp = Path(tempfile.mkdtemp()) / f"{name}.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location(name, tmp)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def clock(f, reps: int) -> float:
    for _ in range(10):
        f()
    t0 = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t0) / reps * 1e6


def unit_args(mod, shape, seed=0):
    """(forward args, backward args) of one unit call on seeded data; runs the forward once."""
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * 3 + 1)
    xv = fused._wide(x.contiguous(memory_format=torch.channels_last), fused._tile_factor(n * h * w, c)).numpy()
    dy = rng.standard_normal(xv.shape).astype(np.float32)
    w_, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    y, dx = np.empty_like(xv), np.empty_like(xv)
    fwd = (xv, w_, b, np.zeros(c, np.float32), np.ones(c, np.float32), 0.1, 1e-5, 1.0, c, y)
    mean, inv = mod.forward(*fwd)
    return fwd, (dy, y, xv, w_, mean, inv, 1.0, c, dx)


def outputs(mod, shape) -> list[np.ndarray]:
    """Everything one forward + backward writes or returns: mean, invstd, y, running stats, grads, dx."""
    fwd, bwd = unit_args(mod, shape)
    return [bwd[4], bwd[5], fwd[-1], fwd[3], fwd[4], *mod.backward(*bwd), bwd[-1]]


def fwd_bwd_us(mod, shape, reps: int) -> float:
    fwd, bwd = unit_args(mod, shape)
    return clock(lambda: mod.forward(*fwd), reps) + clock(lambda: mod.backward(*bwd), reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", default="src/mnistlite/fast/loops.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=200)
    a = ap.parse_args()
    for f in (a.old, a.new):
        if not Path(f).is_file():
            print(f"unit_ab.py: {f}: no such file (git show REV:src/mnistlite/fast/loops.py > FILE)", file=sys.stderr)
            raise SystemExit(2)
    set_threads(a.threads)
    old, new = load(a.old, "bl_old"), load(a.new, "bl_new")
    shapes = sorted({s for ss in SHAPES.values() for s in ss})
    identical = all(np.array_equal(p, q) for s in shapes for p, q in zip(outputs(old, s), outputs(new, s), strict=True))
    per_shape = {}
    for s in shapes:
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(a.rounds):
            for name, mod in (("old", old), ("new", new)):
                times[name].append(fwd_bwd_us(mod, s, a.reps))
        per_shape[s] = {k: statistics.median(v) for k, v in times.items()}
    models = {}
    for model, ss in SHAPES.items():
        o, n = sum(per_shape[s]["old"] for s in ss), sum(per_shape[s]["new"] for s in ss)
        models[model] = {"old_us": round(o), "new_us": round(n), "saved_ms_per_step": round((o - n) / 1000, 3)}
    out = {
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
        "machine": machine_info(),
        "threads": a.threads,
        "rounds": a.rounds,
        "bit_identical": identical,
        "unit_fwd_plus_bwd_per_step": models,
        "per_shape_us": {str(s): {k: round(v, 1) for k, v in t.items()} for s, t in per_shape.items()},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
