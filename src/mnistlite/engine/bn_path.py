"""Which BatchNorm-ReLU path a run trains on: mnistlite's fused unit or torch's own layers.

`TrainConfig.bn_fusion` is auto | fused | torch. The fused unit (models/fused.py)
is one autograd op for BatchNorm -> ReLU (-> Dropout) on CPU channels_last maps;
whether it beats torch's BatchNorm2d + ReLU depends on the machine and the thread
count (the AMX Xeon, flagship step: 22.97 against 28.50 ms on 2 threads, 37.07
against 31.81 ms on 1; docs/performance.md). `auto` times both at the run's own
model, batch size, precision and thread count (a second or so, interleaved),
caches the figures per machine (engine/calibrate.py) and takes torch's layers
only where they are at least MIN_SPEEDUP faster: the unit stays the default the
measurements above were made with, unless this machine says otherwise.

A run records the resolved path (fused or torch) in config.json and why in
result.json and the log. It is a run-only field (config.RUN_ONLY_FIELDS), like
the thread count: both paths draw the same dropout positions from the same RNG
calls and compute the same BatchNorm, differing only in float rounding
(tests/test_fused.py), so a seed trained on either is the same run. A config
saved before the field existed trained on the unit wherever it applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import calibrate as calib

BN_FUSIONS = ("auto", "fused", "torch")
# torch's layers must win by this much: below it the difference is within the noise of a
# short timing (repeated calibrations of one path differ by a few percent on a shared CPU).
MIN_SPEEDUP = 1.05
CACHE_FILE = "bn_fusion.json"


@dataclass(frozen=True)
class Decision:
    path: str  # fused | torch
    reason: str

    @property
    def line(self) -> str:
        return f"BatchNorm-ReLU: {self.path} ({self.reason})"

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The block trains on this path (the fused unit switched on or off, then restored)."""
        from ..models.fused import fused_unit

        with fused_unit(self.path == "fused"):
            yield


@dataclass(frozen=True)
class Calibration:
    fused_ms: float  # median ms per training step through the unit
    torch_ms: float  # ... through torch's BatchNorm2d + ReLU
    steps: int
    cached: bool = False

    @property
    def speedup(self) -> float:
        """torch's layers against the unit: above 1 they are faster."""
        return self.fused_ms / self.torch_ms if self.torch_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fused_ms": round(self.fused_ms, 3),
            "torch_ms": round(self.torch_ms, 3),
            "speedup": round(self.speedup, 3),
            "steps": self.steps,
            "cached": self.cached,
        }


def choose(cal: Calibration) -> Decision:
    """The rule, given the figures: torch's layers where they are MIN_SPEEDUP faster, else the unit."""
    speed = f"calibrated fused {cal.fused_ms:.1f} ms, torch {cal.torch_ms:.1f} ms per step" + (
        ", cached" if cal.cached else ""
    )
    if cal.speedup >= MIN_SPEEDUP:
        return Decision("torch", f"auto: {speed}: torch's layers {cal.speedup:.2f}x faster")
    return Decision("fused", f"auto: {speed}")


def applies(cfg: Any, device: Any) -> str:
    """Why the fused unit cannot run for this config on `device` ("" when it can)."""
    if device.type != "cpu":
        return f"the fused unit runs on the CPU only, not {device.type}"
    if not getattr(cfg, "channels_last", True):
        return "the fused unit needs channels_last maps (--no-channels-last)"
    return ""


def unit_kind() -> str:
    """How the fused unit computes: numba's compiled loops (float32 and bf16 maps, where numba
    is installed: models/bn_kernels.py) or torch ops. Both give the same BatchNorm up to rounding."""
    from ..models import bn_kernels

    return "compiled loops" if bn_kernels.available() else f"torch ops ({bn_kernels.why_not()})"


def _with_kind(d: Decision, cfg: Any) -> Decision:
    return Decision(d.path, f"{d.reason}; the unit as {unit_kind()}") if d.path == "fused" else d


def resolve(cfg: Any, device: Any, entry: Any = None, calibrate_fn: Any = None) -> Decision:
    """The path `cfg` (precision already resolved) trains on on `device`, at torch's current thread count."""
    why_not = applies(cfg, device)
    if cfg.bn_fusion == "torch":
        return Decision("torch", "asked")
    if cfg.bn_fusion == "fused":
        if why_not:
            return Decision("fused", f"asked; but {why_not}: torch's layers run")
        return _with_kind(Decision("fused", "asked"), cfg)
    if why_not:
        return Decision("torch", f"auto: {why_not}")
    return _with_kind(choose((calibrate_fn or calibrate)(cfg, device, entry)), cfg)


def for_run(cfg: Any, device: Any, entry: Any = None, resumed: dict[str, Any] | None = None) -> Decision:
    """`resolve`, except that a resumed run keeps the path it started on (the unit, if saved before the field)."""
    if resumed is not None:
        return _with_kind(Decision(saved_bn_fusion(resumed), "as the run started"), cfg)
    return resolve(cfg, device, entry)


def saved_bn_fusion(saved: dict[str, Any]) -> str:
    p = saved.get("bn_fusion")
    return p if p in ("fused", "torch") else "fused"


def cache_key(cfg: Any, device: Any, model: Any, threads: int) -> str:
    # The unit's kind is part of the key: figures timed on its torch-ops body say nothing of its loops.
    return f"{calib.machine_key(device, threads)}|{calib.model_key(cfg, model)}|{cfg.precision}|{unit_kind()}"


def calibrate(
    cfg: Any, device: Any, entry: Any = None, *, rounds: int = 5, steps: int = 3, use_cache: bool = True
) -> Calibration:
    """Median ms per training step of cfg's model through the unit and through torch's layers,
    interleaved, in cfg's (resolved) precision at torch's current thread count; cached per
    machine. The global RNG is left as it was."""
    import torch

    from .precision import Decision as PrecisionDecision

    threads = torch.get_num_threads()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = calib.timing_model(cfg, device, entry)
        key = cache_key(cfg, device, model, threads)
        hit = calib.lookup(CACHE_FILE, key) if use_cache else None
        if hit is not None:
            try:
                return Calibration(float(hit["fused_ms"]), float(hit["torch_ms"]), int(hit["steps"]), cached=True)
            except (KeyError, TypeError, ValueError):  # a damaged entry: measure again
                pass
        autocast = PrecisionDecision(cfg.precision, "").autocast(device.type)

        def on(path: str) -> Any:
            @contextmanager
            def ctx() -> Iterator[None]:
                with Decision(path, "").applied(), autocast():
                    yield

            return ctx

        variants = {"fused": on("fused"), "torch": on("torch")}
        ms = calib.interleaved_step_ms(cfg, device, model, variants, rounds=rounds, steps=steps)
    cal = Calibration(ms["fused"], ms["torch"], rounds * steps)
    if use_cache:
        calib.store(CACHE_FILE, key, {k: v for k, v in cal.to_dict().items() if k != "cached"})
    return cal
