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


def set_threads(threads: int) -> int:
    """Use every core by default; intra-op threads are what a small CNN can use."""
    if threads < 0:
        raise MnistliteError(f"--threads must be 0 (all cores) or more, got {threads}")
    n = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
