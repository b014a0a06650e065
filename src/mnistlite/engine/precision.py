"""Which float precision a run trains in: fp32, or bf16 autocast, chosen by machine. A run records the
resolved value, so a resume computes the same way anywhere. `auto` picks bf16 only where it is cleared for
accuracy (config.ACCURACY_CLEARED) and, on a CPU, there are bf16 units."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ACCURACY_CLEARED, saved_precision


@dataclass(frozen=True)
class Decision:
    precision: str  # fp32 | bf16
    reason: str  # why, in words: the log line and result.json

    @property
    def line(self) -> str:
        return f"precision: {self.precision} ({self.reason})"

    def autocast(self, device_type: str) -> Callable[[], Any]:
        """A context factory for the forward pass: bf16 autocast on `device_type`, or nothing."""
        return (lambda: torch.autocast(device_type, dtype=torch.bfloat16)) if self.precision == "bf16" else nullcontext


def cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("", {}) where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to read, so no bf16 units are claimed
        return "", frozenset()
    name, flags = (re.search(rf"^{key}[^:\n]*:(.*)$", text, re.M) for key in ("model name", "flags"))
    return (name[1].strip() if name else ""), frozenset(flags[1].split() if flags else ())


def bf16_units() -> list[str]:
    """The CPU's bf16 matrix instructions torch's oneDNN can use: e.g. ["amx_bf16", "avx512_bf16"]."""
    _, flags = cpuinfo()
    return [f for f in ("amx_bf16", "avx512_bf16") if f in flags]


def requested(cfg: Any) -> str:
    return "bf16" if getattr(cfg, "bf16", False) else cfg.precision


def resolve(cfg: Any, device: Any) -> Decision:
    want = requested(cfg)
    if want == "bf16":
        why = "--bf16 (deprecated; same as --precision bf16)" if getattr(cfg, "bf16", False) else "asked"
        if device.type == "cpu" and not bf16_units():
            why += "; this CPU has no bf16 matrix units, so bf16 is emulated and likely slower"
        return Decision("bf16", why)
    if want == "fp32":
        return Decision("fp32", "asked")
    if device.type != "cpu":
        if not ACCURACY_CLEARED.get(device.type, False):
            return Decision("fp32", f"auto: bf16 on {device.type} is not yet cleared for accuracy")
        return Decision("bf16", f"auto: {device.type} bf16 cleared for accuracy")
    if not (units := bf16_units()):
        return Decision("fp32", "auto: this CPU has no bf16 matrix units (AMX, AVX512_BF16)")
    label = ", ".join({"amx_bf16": "AMX", "avx512_bf16": "AVX512_BF16"}[u] for u in units)
    if not ACCURACY_CLEARED.get("cpu", False):
        return Decision(
            "fp32",
            f"auto: the CPU has {label}, but bf16 is not cleared for accuracy (issue 15: 1.5x faster end "
            "to end, but 0.09 points under fp32 on validation over 8 seeds, past the 0.05 allowed); "
            "--precision bf16 opts in",
        )
    return Decision("bf16", f"auto: the CPU has {label} and bf16 is cleared for accuracy")


def for_run(cfg: Any, device: Any, resumed: dict[str, Any] | None = None) -> Decision:
    """`resolve`, except that a resumed run (its checkpoint's config dict) keeps the precision it started in."""
    if resumed is None:
        return resolve(cfg, device)
    auto = cfg.precision == "auto" and not getattr(cfg, "bf16", False)
    return Decision(saved_precision(resumed) if auto else requested(cfg), "as the run started")
