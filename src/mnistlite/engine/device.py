"""Pick the compute device and set CPU threading once per process."""

from __future__ import annotations

import os

import torch

from ..errors import MnistliteError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MnistliteError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise MnistliteError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed activation buffers in the heap instead of handing them back to the OS.

    glibc serves every block over 128 KiB-32 MiB with a fresh mmap and unmaps it
    on free, so each of the ~100 activations of a training step (0.2-3 MB at
    batch 128) was page-faulted in anew, a quarter of a Model3 step
    (benchmarks/micro.py). Raising
    the mmap and trim thresholds makes torch's CPU allocations reuse warm heap
    memory. A no-op where the C library is not glibc.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):
        ok = False
    _ALLOCATOR_TUNED = ok
    return ok


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(threads: int) -> int:
    """Use every core by default; intra-op threads are what a small CNN can use."""
    tune_cpu_allocator()
    if threads < 0:
        raise MnistliteError(f"--threads must be 0 (all cores) or more, got {threads}")
    n = threads or cpu_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
