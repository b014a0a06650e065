"""Test-time augmentation by small shifts, reported beside the plain figure, never in it (4N + 1 forward passes
per image, paid at every prediction). The border is filled with background, not rolled (that carries strokes across)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split
from .evaluation import evaluate


def views(max_shift: int) -> list[tuple[int, int]]:
    """(dx, dy) of each view: the identity, then 1..max_shift pixels in the four directions."""
    return [(0, 0)] + [v for k in range(1, max_shift + 1) for v in ((k, 0), (-k, 0), (0, k), (0, -k))]


def shift(x: torch.Tensor, dx: int, dy: int, fill: float) -> torch.Tensor:
    """`x` (N, C, H, W) moved dx pixels right and dy down; the uncovered border is `fill`."""
    if dx == 0 and dy == 0:
        return x
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@dataclass(frozen=True)
class TtaScore:
    plain: float  # accuracy (%) of the model as trained, one view
    tta: float  # with the views averaged
    views: int


@torch.no_grad()
def score(model: nn.Module, split: Split, max_shift: int, fill: float, batch_size: int = 1000) -> TtaScore:
    """The plain accuracy of one model on one split, and that of its softmax averaged over views(max_shift)."""
    _, plain = evaluate(model, split, batch_size)  # in eval mode
    correct = 0
    for start in range(0, len(split), batch_size):
        x = split.images[start : start + batch_size]
        y = split.labels[start : start + batch_size]
        probs = sum(F.softmax(model(shift(x, dx, dy, fill)).float(), dim=1) for dx, dy in views(max_shift))
        correct += int((torch.as_tensor(probs).argmax(1) == y).sum())
    return TtaScore(plain, 100.0 * correct / len(split), len(views(max_shift)))
