"""Weights shipped inside the package, as timm and torchvision ship theirs.

Each file is the model.pt of seed 1 (the first seed, not the best one) of the
model's committed multi-seed run with its registered recipe; pretrained.json
names that run, its SHA-256, and its final-epoch test accuracy. Tens of KB each.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MnistliteError
from .registry import registered

WEIGHTS = Path(__file__).with_name("weights")


def catalogue() -> dict[str, dict[str, Any]]:
    return json.loads((WEIGHTS / "pretrained.json").read_text())


def has_pretrained(name: str) -> bool:
    return name in catalogue()


def pretrained_file(name: str) -> tuple[Path, dict[str, Any]]:
    """(the shipped model.pt, its metadata), its hash checked."""
    cat = catalogue()
    if name not in cat:
        raise MnistliteError(
            f"no pretrained weights for {name!r}; shipped: {', '.join(cat)}. Train it with 'mnistlite train'"
        )
    meta = cat[name]
    path = WEIGHTS / meta["file"]
    if hashlib.sha256(path.read_bytes()).hexdigest() != meta["sha256"]:
        raise MnistliteError(f"{path}: damaged (SHA-256 differs from pretrained.json); reinstall mnistlite")
    return path, meta


def load_pretrained(name: str) -> nn.Module:
    """The registered model with its shipped weights, in eval mode."""
    path, _ = pretrained_file(name)
    model = registered(name).build()
    # The file's SHA-256 was just checked against pretrained.json, so torch's own weights-only
    # loader is enough here (engine/checkpoint.py words the errors of files a user names).
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    return model.eval()
