"""Layer tables, parameter counts and MACs, through torchinfo."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from .models import BUDGET, count_params, create_model, get_entry

INPUT_SIZE = (1, 1, 28, 28)


@dataclass(frozen=True)
class ModelProfile:
    name: str
    params: int
    macs: int  # multiply-accumulates per image, forward pass
    table: str  # torchinfo's layer table

    @property
    def fits_budget(self) -> bool:
        return self.params < BUDGET


def profile_model(model: nn.Module, name: str = "") -> ModelProfile:
    import torchinfo

    was_training = model.training
    stats = torchinfo.summary(
        model,
        input_size=INPUT_SIZE,
        col_names=("output_size", "num_params", "mult_adds"),
        row_settings=("var_names",),
        depth=4,
        verbose=0,
        device="cpu",
        mode="eval",
    )
    model.train(was_training)
    return ModelProfile(name=name, params=count_params(model), macs=int(stats.total_mult_adds), table=str(stats))


@lru_cache(maxsize=None)
def profile_registered(name: str) -> ModelProfile:
    torch.manual_seed(0)
    return profile_model(create_model(name), name)


def summary_text(name: str) -> str:
    """What `mnistlite summary NAME` prints: the table, totals and the verdict."""
    p = profile_registered(name)
    entry = get_entry(name)
    verdict = (
        f"fits the {BUDGET:,}-parameter budget ({BUDGET - p.params:,} to spare)"
        if p.fits_budget
        else f"over the {BUDGET:,}-parameter budget by {p.params - BUDGET + 1:,}"
    )
    lines = [
        f"{name}: {entry.source}",
        p.table,
        f"Trainable params: {p.params:,}",
        f"MACs per image:   {p.macs:,}",
        f"Budget:           {verdict}",
    ]
    if entry.stated_params is not None:
        same = "matches" if entry.stated_params == p.params else "DIFFERS from"
        lines.append(f"Source states:    {entry.stated_params:,} parameters ({same} ours)")
    return "\n".join(lines)
