"""The one calibrate-and-cache mechanism: time what a machine does, once, and remember it.

Three choices are made by measuring this machine rather than by a fixed rule:
the precision (engine/precision.py), the BatchNorm-ReLU path (engine/bn_path.py)
and the jobs x threads split of many runs (runs/splits.py). Each keeps its
figures in its own JSON file under $MNISTLITE_CACHE_DIR (else
~/.cache/mnistlite), keyed by what the figure depends on: the machine (CPU
model, a hash of its flags, torch's vector ISA, the thread count) and the
model, batch size and layout. A missing, corrupt or foreign-format file reads
as empty: the figure is measured again, never trusted half-read.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHE_FORMAT = 1


def cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("", {}) where there is none."""
    name, flags = "", frozenset[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = frozenset(line.split(":", 1)[1].split())
                if name and flags:
                    break
    except OSError:  # not Linux: no flags to read, so no bf16 units are claimed
        pass
    return name, flags


def cache_path(file: str) -> Path:
    root = os.environ.get("MNISTLITE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "mnistlite"
    return base / file


def read_cache(path: Path) -> dict[str, Any]:
    """The entries of a cache file; {} for a missing, unreadable, corrupt or other-format one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, unreadable or corrupt: start afresh
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def write_cache(path: Path, entries: dict[str, Any]) -> None:
    """Replace the file atomically (two processes calibrating at once leave one whole file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only home: the figure is measured again next time
        pass


def lookup(file: str, key: str) -> dict[str, Any] | None:
    hit = read_cache(cache_path(file)).get(key)
    return hit if isinstance(hit, dict) else None


def store(file: str, key: str, row: dict[str, Any]) -> None:
    path = cache_path(file)
    entries = read_cache(path)
    entries[key] = {**row, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_cache(path, entries)


def machine_key(device: Any, threads: int) -> str:
    """Where a figure was measured: CPU model, flags, torch's ISA and thread count (or the GPU), and torch."""
    import torch

    if device.type == "cuda":
        where = f"cuda:{torch.cuda.get_device_name(device)}"
    else:
        name, flags = cpuinfo()
        where = f"cpu:{name}:{hashlib.sha256(' '.join(sorted(flags)).encode()).hexdigest()[:12]}"
        where += f":{torch.backends.cpu.get_cpu_capability()}:threads{threads}"
    return f"{where}|torch {torch.__version__}"


def model_key(cfg: Any, model: Any) -> str:
    """What a step's time depends on in the run: the model (name, layer table, code) and batch size, layout."""
    arch = hashlib.sha256(repr(model).encode()).hexdigest()[:12]
    sha = getattr(cfg, "model_sha256", None) or ""
    return "|".join(
        [f"{cfg.model}:{arch}:{sha[:12]}", f"batch {cfg.batch_size}"]
        + (["nchw"] if not getattr(cfg, "channels_last", True) else [])
    )


def timing_model(cfg: Any, device: Any, entry: Any = None) -> Any:
    """cfg's model as a run trains it (a user's model on the fast path), in train mode, on `device`.

    The caller forks the RNG: building draws from it."""
    import torch

    from ..models import get_entry

    entry = entry or get_entry(cfg.model)
    fmt = torch.channels_last if getattr(cfg, "channels_last", True) else torch.contiguous_format
    model = entry.build(dropout=getattr(cfg, "dropout", None))
    if "user" in getattr(entry, "tags", ()):
        from ..models.fastpath import accelerate

        model, _ = accelerate(model)
    return model.to(device).to(memory_format=fmt).train()


def interleaved_step_ms(
    cfg: Any, device: Any, model: Any, variants: dict[str, Callable[[], Any]], *, rounds: int, steps: int
) -> dict[str, float]:
    """Median ms per training step (forward, backward, SGD) of `model` under each variant's context.

    Variants run interleaved (a, b, a, b, ...) in `rounds` rounds of `steps` steps after a
    warm-up of two rounds (oneDNN builds its kernels per dtype and path), so that load
    from elsewhere falls on all of them alike. Random images: timing needs no digits.
    """
    import torch
    import torch.nn.functional as F

    fmt = torch.channels_last if getattr(cfg, "channels_last", True) else torch.contiguous_format
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(cfg.batch_size, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (cfg.batch_size,), device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run(ctx: Callable[[], Any], k: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(k):
            with ctx():  # the forward only: autocast and the BN path are chosen there
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return (time.perf_counter() - t0) * 1000 / k

    for _ in range(2):
        for ctx in variants.values():
            run(ctx, 2)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, ctx in variants.items():
            times[name].append(run(ctx, steps))
    return {name: statistics.median(v) for name, v in times.items()}
