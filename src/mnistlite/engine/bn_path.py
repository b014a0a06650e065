"""The one switch of the CPU fast path: `TrainConfig.bn_fusion`, auto | fused | torch (mnistlite.fast's loops
or torch's layers: same dropout positions, only float rounding differs, so the field is run-only). `auto`
follows MEASURED (per CPU kind), never a run-time timing; where the loops cannot run, all take torch's layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..fast import kernels

# `mnistlite bench`'s bn_paths train img/s by (torch's ISA, threads): (fused unit, torch's layers, where committed).
MEASURED: dict[tuple[str, int], tuple[int, int, str]] = {
    ("AVX512", 2): (8994, 4094, "docs/results/bench_model3_cpu_amx2_loops.json"),  # the AMX Xeon, Model3
    ("AVX512", 1): (5415, 4273, "docs/results/bench_model3_cpu_epyc_1t.json"),  # an AMD EPYC, Model3
}


@dataclass(frozen=True)
class Decision:
    path: str  # fused | torch
    reason: str

    @property
    def line(self) -> str:
        return f"BatchNorm-ReLU: {self.path} ({self.reason})"


def applies(cfg: Any, device: Any) -> str:
    """Why the compiled loops cannot run for this config on `device` ("" when they can)."""
    if device.type != "cpu":
        return f"the fused unit runs on the CPU only, not {device.type}"
    if not getattr(cfg, "channels_last", True):
        return "the fused unit needs channels_last maps (--no-channels-last)"
    return kernels.why_not()


def cpu_kind(threads: int) -> tuple[str, int]:
    return torch.backends.cpu.get_cpu_capability(), threads


def rule(kind: tuple[str, int]) -> Decision:
    """`auto` on a CPU kind (ISA, threads) where the loops run: MEASURED's verdict, else the unit."""
    isa, threads = kind
    if kind not in MEASURED:
        why = f"auto: not measured on {isa} at {threads} thread(s); the unit won on every kind measured"
        return Decision("fused", why)
    fused, plain, where = MEASURED[kind]
    why = f"auto: {isa} at {threads} thread(s) measured fused {fused:,}, torch {plain:,} img/s ({where})"
    return Decision("fused" if fused >= plain else "torch", why)


def resolve(cfg: Any, device: Any) -> Decision:
    """The path `cfg` trains on on `device`, at torch's current thread count."""
    if cfg.bn_fusion == "torch":
        return Decision("torch", "asked")
    if why_not := applies(cfg, device):
        return Decision("torch", f"{cfg.bn_fusion}, but {why_not}: torch's layers")
    if cfg.bn_fusion == "fused":
        return Decision("fused", "asked")
    return rule(cpu_kind(torch.get_num_threads()))


def for_run(cfg: Any, device: Any, resumed: dict[str, Any] | None = None) -> Decision:
    """`resolve`, except that a resumed run keeps the path it started on (the unit, if saved before the field)."""
    if resumed is None:
        return resolve(cfg, device)
    saved = resumed.get("bn_fusion")
    d = resolve(cfg.replace(bn_fusion=saved if saved in ("fused", "torch") else "fused"), device)
    return Decision(d.path, "as the run started" if d.reason == "asked" else d.reason)
