"""Pick the compute device, scope CPU threading to a run, and (when asked) tune the allocator. glibc's malloc
tuning cannot be undone, so the library never applies it on its own: the CLI records its choice in
MNISTLITE_MALLOC_TUNING, which spawned workers inherit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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
MALLOC_TUNING_ENV = "MNISTLITE_MALLOC_TUNING"


def tune_cpu_allocator() -> bool:
    """Keep freed activation buffers in the heap (no-op off glibc): glibc mmaps and unmaps every large block, so
    each activation of a step was page-faulted in anew, a quarter of a Model3 step (benchmarks/micro.py)."""
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


def apply_requested_allocator_tuning() -> bool:
    return tune_cpu_allocator() if os.environ.get(MALLOC_TUNING_ENV, "").strip() == "1" else False


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(threads: int) -> int:
    """Set torch's thread count for the rest of the process (`--threads`: 0 is every core it may use)."""
    if threads < 0:
        raise MnistliteError(f"--threads must be 0 (all cores) or more, got {threads}")
    n = threads or cpu_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextmanager
def threads(count: int) -> Iterator[int]:
    """Run the block on `count` intra-op threads (0 = all cores), then restore the caller's count."""
    before = torch.get_num_threads()
    try:
        yield set_threads(count)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
