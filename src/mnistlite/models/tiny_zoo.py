"""Nets under 2,000 and 1,000 parameters: the bottom of the params -> accuracy ladder.

The family (family.py) spends most of a tiny budget where it matters least: a
full 3x3 conv between two narrow layers at 28x28, and a 1x1 transition after
every pool. Below 2k parameters a net is written here as a short plan of
units instead, each Conv(bias=False) -> BatchNorm -> ReLU as in the family:

    ("conv", c, pad)  a full 3x3 conv to c channels (the first unit: 1 input channel)
    ("sep", c)        a depthwise 3x3 (one filter per channel), then a 1x1 to c
    ("sepx", c)       the same without BatchNorm-ReLU between the two convs (as in
                      Xception): 2 parameters per input channel fewer, one BN layer less
    ("fact", c)       a 3x1 then a 1x3 conv to c (the factorised 3x3 of the public sub-2k nets)
    ("share", n)      one depthwise 3x3 (padding 1) and one 1x1, keeping the channels,
                      applied n times with the same conv weights, each time with its own
                      BatchNorm-ReLU and a residual add: depth for 2c parameters per
                      application instead of about 11c + c^2 (the weight sharing issue 14
                      names; the residual keeps a repeated map stable)
    ("pool",)         2x2 max-pool

then global average pooling and one linear layer. "conv" may pad and "share"
keeps the map; the others shrink it by 2, so the plan fixes the receptive field too.
Parameter counts are exact by `count_plan` (and asserted against the built
net by the registry tests through `stated_params`).

Candidates and rounds: docs/accuracy.md, "Rounds below 2k and 1k".
"""

from __future__ import annotations

import torch
from torch import nn

from .mnistlite_zoo import BASE_RECIPE, SOURCE
from .registry import register_model

Plan = tuple[tuple, ...]


def _unit(cin: int, cout: int, kernel: tuple[int, int], pad: int = 0, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=pad, bias=False, groups=groups), nn.BatchNorm2d(cout), nn.ReLU()]


class SharedResidual(nn.Module):
    """x <- x + relu(bn_i(pw(dw(x)))) for each of `repeats` BatchNorms, the convs shared.

    No parameters of its own, only children, so `engine/grouped.py` can pack k copies
    (its equivalence check proves the loop runs the same on the packed layers).
    """

    def __init__(self, c: int, repeats: int):
        super().__init__()
        if repeats < 1:
            raise ValueError(f"a shared unit needs at least one application, got {repeats}")
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for _ in range(repeats))

    def forward(self, x):
        for bn in self.bns:
            x = x + torch.relu(bn(self.pw(self.dw(x))))
        return x


class TinyNet(nn.Module):
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
            if kind == "share":
                layers.append(SharedResidual(c, op[1]))
                continue
            out = op[1]
            if kind == "conv":
                pad = op[2] if len(op) > 2 else 0
                layers += _unit(c, out, (3, 3), pad)
                side += 2 * pad - 2
            elif kind == "sep":
                layers += _unit(c, c, (3, 3), groups=c) + _unit(c, out, (1, 1))
                side -= 2
            elif kind == "sepx":
                layers += [nn.Conv2d(c, c, 3, bias=False, groups=c)] + _unit(c, out, (1, 1))
                side -= 2
            elif kind == "fact":
                layers += _unit(c, out, (3, 1)) + _unit(out, out, (1, 3))
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


def count_plan(plan: Plan, classes: int = 10) -> int:
    """Exact trainable parameters of `TinyNet(plan)`, without building it."""
    total, c = 0, 1
    for op in plan:
        if op[0] == "pool":
            continue
        if op[0] == "share":
            total += 9 * c + c * c + op[1] * 2 * c
            continue
        out = op[1]
        if op[0] == "conv":
            total += 9 * c * out + 2 * out
        elif op[0] == "sep":
            total += 9 * c + 2 * c + c * out + 2 * out
        elif op[0] == "sepx":
            total += 9 * c + c * out + 2 * out
        else:  # fact
            total += 3 * c * out + 2 * out + 3 * out * out + 2 * out
        c = out
    return total + c * classes + classes


# The recipe of mnistlite_frontier (batch 64, an average of the weights over
# about one epoch), the best this project has under 5k; the rounds vary only
# the architecture so that two seeds can compare nets, not recipes.
TINY_RECIPE = dict(BASE_RECIPE, batch_size=64, ema=0.999)


def _register(name: str, plan: Plan, description: str, tags: tuple[str, ...], **recipe):
    params = count_plan(plan)

    def factory(dropout: float | None = None):
        return TinyNet(plan, dropout=dropout or 0.0)

    factory.__doc__ = description
    factory.plan = plan  # type: ignore[attr-defined]
    register_model(
        name,
        source=f"{SOURCE}, {name}",
        tags=("mnistlite", "tiny", "under8k", *tags),
        recipe={**TINY_RECIPE, **recipe},
        stated_params=params,
        description=description,
    )(factory)
    return factory


# --- round 1, under 2,000 parameters ----------------------------------------------
SEP_2K: Plan = (("conv", 8, 1), ("sep", 12), ("pool",), ("sep", 16), ("sep", 16), ("sep", 20))
SEP_1K: Plan = (("conv", 6, 1), ("sep", 8), ("pool",), ("sep", 10), ("sep", 10), ("sep", 12))

_register(
    "tiny2k_sep",
    SEP_2K,
    "Under 2k (1,862): a full conv, then depthwise-separable units widening 12 -> 20 (round 1's pick).",
    ("under2k",),
)
_register(
    "tiny2k_fact",
    (("conv", 8, 1), ("pool",), ("fact", 8), ("fact", 10), ("fact", 10)),
    "Round-1 candidate under 2k (1,834): a full conv, an early pool, then factorised 3x1/1x3 units.",
    ("under2k",),
)
_register(
    "tiny2k_plain",
    (("conv", 6, 1), ("conv", 8), ("pool",), ("conv", 8), ("conv", 10)),
    "Round-1 candidate under 2k (1,956): plain 3x3 convs, no 1x1 transition.",
    ("under2k",),
)

# --- round 1, under 1,000 parameters ----------------------------------------------
_register(
    "tiny1k_sep",
    SEP_1K,
    "Under 1k (998): a full conv, then depthwise-separable units widening 8 -> 12 (round 1's pick).",
    ("under1k", "ladder"),
)
_register(
    "tiny1k_fact",
    (("conv", 5, 1), ("pool",), ("fact", 6), ("fact", 6), ("fact", 8)),
    "Round-1 candidate under 1k (975): a full conv, an early pool, then factorised 3x1/1x3 units.",
    ("under1k",),
)
_register(
    "tiny1k_plain",
    (("conv", 4, 1), ("conv", 5), ("pool",), ("conv", 6), ("conv", 7)),
    "Round-1 candidate under 1k (988): plain 3x3 convs, no 1x1 transition.",
    ("under1k",),
)

# --- round 2 (docs/accuracy.md, "Round 2 below 2k and 1k") --------------------------
# Each candidate changes one thing against its budget's round-1 pick.
LIGHT = dict(weight_decay=5e-5, rotation=5.0, translate=0.05, scale=0.05)
WIDE_2K: Plan = (("conv", 8, 1), ("sep", 12), ("pool",), ("sep", 16), ("sep", 18), ("sep", 21))
_register(
    "tiny2k_wide",
    WIDE_2K,
    "Under 2k (1,990): tiny2k_sep widened to the budget in its last two units (round 2's pick).",
    ("under2k",),
)
_register(
    "tiny2k_sepx",
    (("conv", 8, 1), ("sepx", 14), ("pool",), ("sepx", 18), ("sepx", 18), ("sepx", 19)),
    "Round-2 candidate under 2k (1,978): Xception-style separable units, the saving spent on width.",
    ("under2k",),
)
_register(
    "tiny2k_light",
    SEP_2K,
    "Round-2 candidate under 2k (1,862): tiny2k_sep with half the weight decay and milder augmentation.",
    ("under2k",),
    **LIGHT,
)
_register(
    "tiny1k_sepx",
    (("conv", 6, 1), ("sepx", 8), ("pool",), ("sepx", 10), ("sepx", 12), ("sepx", 12)),
    "Round-2 candidate under 1k (996): Xception-style separable units, the saving spent on width.",
    ("under1k",),
)
_register(
    "tiny1k_late",
    (("conv", 6, 1), ("sep", 8), ("sep", 10), ("pool",), ("sep", 10), ("sep", 12)),
    "Round-2 candidate under 1k (998): tiny1k_sep with its pool one unit later (more work at 24x24).",
    ("under1k",),
)
_register(
    "tiny1k_light",
    SEP_1K,
    "Round-2 candidate under 1k (998): tiny1k_sep with half the weight decay and milder augmentation.",
    ("under1k",),
    **LIGHT,
)

# --- round 4 (docs/accuracy.md, "Round 4 below 2k and 1k: weight sharing") --------
# The front of each budget's pick, then one wide unit and a shared residual unit
# applied 3 or 5 times at 11x11: depth bought with BatchNorms instead of convs.
_register(
    "tiny2k_share3",
    (("conv", 8, 1), ("sep", 12), ("pool",), ("sep", 24), ("share", 3)),
    "Round-4 candidate under 2k (1,950): a separable unit to 24 channels, then a shared residual unit run 3 times.",
    ("under2k",),
)
_register(
    "tiny2k_share5",
    (("conv", 8, 1), ("sep", 12), ("pool",), ("sep", 22), ("share", 5)),
    "Round-4 candidate under 2k (1,868): a separable unit to 22 channels, then a shared residual unit run 5 times.",
    ("under2k",),
)
_register(
    "tiny1k_share3",
    (("conv", 6, 1), ("sep", 8), ("pool",), ("sep", 14), ("share", 3)),
    "Round-4 candidate under 1k (980): a separable unit to 14 channels, then a shared residual unit run 3 times.",
    ("under1k",),
)
_register(
    "tiny1k_share5",
    (("conv", 6, 1), ("sep", 8), ("pool",), ("sep", 12), ("share", 5)),
    "Round-4 candidate under 1k (906): a separable unit to 12 channels, then a shared residual unit run 5 times.",
    ("under1k",),
)

# --- round 5 (docs/accuracy.md, "Round 5 below 1k") ------------------------------
# The layout of the public 997-parameter net (a full conv, an early pool, four
# separable units), with this project's BatchNorm-ReLU after each 1x1.
_register(
    "tiny1k_early",
    (("conv", 6), ("pool",), ("sepx", 9), ("sepx", 10), ("sepx", 11), ("sepx", 12)),
    "Round-5 candidate under 1k (990): a full conv, the pool at once, then four Xception-style separable units.",
    ("under1k",),
)

# --- round 6 (docs/accuracy.md, "Round 6 below 2k and 1k: weight decay 5e-4") ----------
_register(
    "tiny2k_wd",
    WIDE_2K,
    "Under 2k (1,990): tiny2k_wide with weight decay 5e-4 (round 6's pick, at its +0.10 threshold).",
    ("under2k",),
    weight_decay=5e-4,
)

# --- round 7 (docs/accuracy.md, "Round 7 below 2k and 1k: depth") ----------------------
# Flagship round 11 found depth in the separable stage worth more than width at 8k (five
# 30-wide units beat four 34-wide ones and the flagship). The same question at the bottom:
# every separable unit after the pool at one width, one or two more of them.
DEEP_2K: Plan = (("conv", 8, 1), ("sep", 12), ("pool",)) + (("sep", 12),) * 5
_register(
    "tiny2k_deep",
    DEEP_2K,
    "Round-7 candidate under 2k (1,926): five 12-wide separable units after the pool instead of three widening ones.",
    ("under2k",),
    weight_decay=5e-4,
)
_register(
    "tiny1k_deep",
    (("conv", 6, 1), ("sep", 8), ("pool",)) + (("sep", 8),) * 4,
    "Round-7 candidate under 1k (958): four 8-wide separable units after the pool instead of three widening ones.",
    ("under1k",),
)

# --- round 8 (docs/accuracy.md, "Round 8 below 2k: a faster weight average") ------------
_register(
    "tiny2k_deep_ema",
    DEEP_2K,
    "Under 2k (1,926): tiny2k_deep with an average of decay 0.998 (round 8's pick, +0.11).",
    ("under2k", "ladder"),
    weight_decay=5e-4,
    ema=0.998,
)
