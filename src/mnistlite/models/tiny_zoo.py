"""Nets under 2,000 and 1,000 parameters, the bottom of the ladder (rounds and results: docs/accuracy.md). The family
spends a tiny budget where it matters least (a full 3x3 conv at 28x28, a 1x1 after every pool), so these are short
plans of Conv(bias=False) -> BN -> ReLU units, then global average pooling and one linear layer."""

from __future__ import annotations

from torch import nn

from .mnistlite_zoo import BASE_RECIPE, SOURCE
from .registry import register_model

Plan = tuple[tuple, ...]


def _unit(cin: int, cout: int, kernel: tuple[int, int], pad: int = 0, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=pad, bias=False, groups=groups), nn.BatchNorm2d(cout), nn.ReLU()]


class TinyNet(nn.Module):
    """Plan units: ("conv", c, pad) a full 3x3 conv to c channels, ("sep", c) a depthwise 3x3 then a 1x1 to c,
    ("pool",) a 2x2 max-pool."""

    def __init__(self, plan: Plan, classes: int = 10, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        c, side = 1, 28
        for op in plan:
            kind = op[0]
            if kind == "pool":
                layers.append(nn.MaxPool2d(2))
                side //= 2
                continue
            out = op[1]
            if kind == "conv":
                pad = op[2] if len(op) > 2 else 0
                layers += _unit(c, out, (3, 3), pad)
                side += 2 * pad - 2
            elif kind == "sep":
                layers += _unit(c, c, (3, 3), groups=c) + _unit(c, out, (1, 1))
                side -= 2
            else:
                raise ValueError(f"unknown unit {kind!r} in plan {plan}")
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = out
        if side < 1:
            raise ValueError(f"plan shrinks the image below 1x1: {plan}")
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


# The frontier's recipe, fixed so that the rounds compare nets, not recipes.
TINY_RECIPE = dict(BASE_RECIPE, batch_size=64, ema=0.999)


def _register(name: str, plan: Plan, params: int, description: str, tags: tuple[str, ...], **recipe):
    def factory(dropout: float | None = None):
        return TinyNet(plan, dropout=dropout or 0.0)

    factory.__doc__ = description
    tags = ("mnistlite", "tiny", "under8k", *tags)
    full = {**TINY_RECIPE, **recipe}
    register_model(
        name, source=f"{SOURCE}, {name}", tags=tags, recipe=full, stated_params=params, description=description
    )(factory)


_register(
    "tiny1k_sep",
    (("conv", 6, 1), ("sep", 8), ("pool",), ("sep", 10), ("sep", 10), ("sep", 12)),
    998,
    "Under 1k (998): a full conv, then depthwise-separable units widening 8 -> 12 (round 1's pick).",
    ("under1k", "ladder"),
)

DEEP_2K: Plan = (("conv", 8, 1), ("sep", 12), ("pool",)) + (("sep", 12),) * 5
_register(
    "tiny2k_deep_ema",
    DEEP_2K,
    1_926,
    "Under 2k (1,926): tiny2k_deep with an average of decay 0.998 (round 8's pick, +0.11).",
    ("under2k", "ladder"),
    weight_decay=5e-4,
    ema=0.998,
)
