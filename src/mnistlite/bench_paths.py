"""`mnistlite bench`'s figures for the choices made by measurement: BN path and jobs x threads.

Beside bench.py (the pipelines and the precision), so that one run shows every
option each automatic choice picks from, timed uncached, with what `auto`
decides from the same kind of calibration a run uses (engine/bn_path.py,
runs/splits.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from .config import TrainConfig
from .engine import bn_path
from .engine import precision as prec
from .engine.device import cpu_cores
from .models import bn_kernels


def compare_bn_paths(
    cfg: TrainConfig, time_fn: Callable[[TrainConfig], float], device: torch.device, rounds: int = 2
) -> dict[str, Any]:
    """Training images/s through the fused unit and through torch's layers (interleaved, medians of
    `rounds`), at the bench's precision and threads; with what `auto` decides from a fresh calibration."""
    cfg = cfg.replace(precision=prec.resolve(cfg, device).precision)
    rates: dict[str, list[float]] = {"fused": [], "torch": []}
    # Where the unit runs compiled loops, its torch-ops body is timed too: what the loops bought.
    loops = bn_path.unit_kind() == "compiled loops" and not bn_path.applies(cfg, device)
    if loops:
        rates["fused_ops"] = []
    for _ in range(rounds):
        for path in rates:
            if path == "fused_ops":
                with bn_kernels.switched_off():
                    rates[path].append(time_fn(cfg.replace(bn_fusion="fused")))
            else:
                rates[path].append(time_fn(cfg.replace(bn_fusion=path)))
    med = {p: statistics.median(v) for p, v in rates.items()}
    out: dict[str, Any] = {
        "precision": cfg.precision,
        "threads": torch.get_num_threads(),
        "fused_unit": bn_path.unit_kind(),
        "fused_train_images_per_s": round(med["fused"]),
        "torch_train_images_per_s": round(med["torch"]),
        "torch_speedup": round(med["torch"] / med["fused"], 3),
        "rounds": rounds,
    }
    if loops:
        out["fused_ops_train_images_per_s"] = round(med["fused_ops"])
        out["loops_speedup"] = round(med["fused"] / med["fused_ops"], 3)
    if bn_path.applies(cfg, device):
        decision = bn_path.resolve(cfg.replace(bn_fusion="auto"), device)
    else:
        cal = bn_path.calibrate(cfg, device, use_cache=False)
        out["calibration"] = cal.to_dict()
        decision = bn_path.choose(cal)
    out.update(auto=decision.path, auto_reason=decision.reason)
    return out


def measure_splits(cfg: TrainConfig) -> dict[str, Any]:
    """Every jobs x threads split's total images/s (runs/splits.py, uncached) and the one auto picks."""
    from .runs import splits

    cal = splits.calibrate(cfg, cpu_cores(), use_cache=False)
    best = splits.choose(cal["splits"])
    return {
        "splits": cal["splits"],
        "auto": {"jobs": best["jobs"], "threads": best["threads"]},
        "min_gain": splits.MIN_GAIN,
        "steps_per_process": splits.STEPS,
    }


def format_lines(r: dict[str, Any]) -> list[str]:
    lines = []
    if "bn_paths" in r:
        b = r["bn_paths"]
        ops = (
            f", the unit as torch ops {b['fused_ops_train_images_per_s']:,} img/s (loops {b['loops_speedup']:.2f}x)"
            if "loops_speedup" in b
            else ""
        )
        lines.append(
            f"BatchNorm-ReLU ({b['precision']}, {b['threads']} threads): fused unit "
            f"({b.get('fused_unit', 'torch ops')}) {b['fused_train_images_per_s']:,} img/s{ops}, torch's layers "
            f"{b['torch_train_images_per_s']:,} img/s = {b['torch_speedup']:.2f}x (medians of {b['rounds']} "
            "interleaved rounds)"
        )
        lines.append(f"bn-fusion auto -> {b['auto']} ({b['auto_reason']})")
    if "splits" in r:
        s = r["splits"]
        for m in s["splits"]:
            lines.append(
                f"split {m['jobs']} job(s) x {m['threads']} thread(s): {m['images_per_s']:,.0f} img/s in all "
                f"(BN path {'/'.join(m['bn_fusion'])}, {'/'.join(m['precision'])})"
            )
        a = s["auto"]
        lines.append(f"jobs auto -> {a['jobs']} x {a['threads']} (more jobs only where >= {s['min_gain']}x)")
    return lines
