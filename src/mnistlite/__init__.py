"""mnistlite: train tiny image classifiers under hard budgets, honestly and fast.

In Python, the names in _LAZY are the whole API (README.md, "In a notebook"): `from mnistlite import train`.
They are imported on first use, so `import mnistlite` (and the CLI's start) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    **dict.fromkeys(("train", "resume", "seeds", "summary"), "mnistlite.api"),
    **dict.fromkeys(("create_model", "register_model", "list_models"), "mnistlite.models"),
    "TrainConfig": "mnistlite.config",
    "MnistliteError": "mnistlite.errors",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mnistlite' has no attribute {name!r}")
