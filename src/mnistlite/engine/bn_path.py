"""The one switch of the CPU fast path: `TrainConfig.bn_fusion`, auto | fused | torch.

`fused` trains through mnistlite.fast's compiled loops, `torch` through torch's layers;
both draw the same dropout positions and differ only in float rounding, so the field is
run-only. `auto` follows MEASURED (per CPU kind, by `mnistlite bench`), never a timing
at run time. Where the loops cannot run, every setting takes torch's layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# `mnistlite bench`'s bn_paths training images/s by (torch's vector ISA, threads per run):
# (fused unit, torch's layers, where committed). Kinds not measured take the unit.
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
    from ..fast import kernels

    if not kernels.available():
        return kernels.why_not()
    return ""


def cpu_kind(threads: int) -> tuple[str, int]:
    import torch

    return torch.backends.cpu.get_cpu_capability(), threads


def rule(kind: tuple[str, int]) -> Decision:
    """`auto` on a CPU kind (ISA, threads) where the loops run: MEASURED's verdict, else the unit."""
    isa, threads = kind
    row = MEASURED.get(kind)
    if row is None:
        return Decision(
            "fused", f"auto: not measured on {isa} at {threads} thread(s); the unit won on every kind measured"
        )
    fused, plain, where = row
    path = "fused" if fused >= plain else "torch"
    return Decision(
        path, f"auto: {isa} at {threads} thread(s) measured fused {fused:,}, torch {plain:,} img/s ({where})"
    )


def resolve(cfg: Any, device: Any) -> Decision:
    """The path `cfg` trains on on `device`, at torch's current thread count."""
    import torch

    if cfg.bn_fusion == "torch":
        return Decision("torch", "asked")
    why_not = applies(cfg, device)
    if why_not:
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
