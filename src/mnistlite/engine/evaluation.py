"""Scoring after each epoch: the judged weights on val and test, with --ema the raw ones (the loop knows no EMAs)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split
from .parts import Parts


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Split, batch_size: int, autocast: Callable[[], Any] = nullcontext
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) over a split, in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=split.images.device)
    correct = torch.zeros((), dtype=torch.long, device=split.images.device)
    for start in range(0, len(split), batch_size):
        x = split.images[start : start + batch_size]
        y = split.labels[start : start + batch_size]
        with autocast():
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
    n = len(split)
    return loss_sum.item() / n, 100.0 * correct.item() / n


@dataclass(frozen=True)
class Judge:
    """Scores one epoch into its metrics row: `val_*` (None without a val split), `test_*` only where the
    test split is scored (no keys where skipped or sealed), and raw_<split>_acc with a weight average."""

    splits: dict[str, Split]  # "val" and/or "test", in that order
    batch_size: int
    autocast: Callable[[], Any] = nullcontext

    def score(self, model: nn.Module, split: Split) -> tuple[float, float]:
        return evaluate(model, split, self.batch_size, self.autocast)

    def __call__(self, parts: Parts, row: dict[str, Any]) -> None:
        judged = parts.eval_model
        row["val_loss"], row["val_acc"] = None, None  # overwritten where there is a val split
        for name, split in self.splits.items():
            row[f"{name}_loss"], row[f"{name}_acc"] = self.score(judged, split)
        if parts.ema is not None:  # the raw weights too (already scored while they are the judged ones)
            for name, split in self.splits.items():
                raw = row[f"{name}_acc"] if judged is parts.model else self.score(parts.model, split)[1]
                row[f"raw_{name}_acc"] = raw
