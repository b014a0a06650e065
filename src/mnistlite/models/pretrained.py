"""Weights shipped inside the package: seed 1's model.pt (the first seed, not the best) of each
model's committed multi-seed run; pretrained.json names the run, SHA-256 and accuracy."""

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
    # Its SHA-256 was just checked, so torch's own weights-only loader is enough here.
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    return model.eval()
