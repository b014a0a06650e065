"""The candidates of the rounds below 2,000 and 1,000 parameters (tiny_round*.toml), in plain torch.

Each tuning file names this file (`models = ["tiny_candidates.py"]`), so its
candidates are found by name when a round is run, and `mnistlite models --all`
lists them. The rounds' picks are registered in the package instead
(mnistlite.models.tiny_zoo: tiny1k_sep, tiny2k_deep_ema). A net is a plan of units,
each Conv(bias=False) -> BatchNorm -> ReLU, as in tiny_zoo:

    ("conv", c, pad)  a full 3x3 conv to c channels
    ("sep", c)        a depthwise 3x3, then a 1x1 to c
    ("sepx", c)       the same without BatchNorm-ReLU between the two convs (as in Xception)
    ("fact", c)       a 3x1 then a 1x3 conv to c (the factorised 3x3 of the public sub-2k nets)
    ("share", n)      one depthwise 3x3 (padding 1) and one 1x1, keeping the channels, applied
                      n times with the same conv weights, each with its own BatchNorm-ReLU and a
                      residual add: depth for 2c parameters per application
    ("pool",)         2x2 max-pool

then global average pooling and one linear layer. The modules are built in the
order tiny_zoo.TinyNet builds them, so a plan both can build starts from the same
weights. Rules and results of every round: docs/accuracy.md, "Rounds below 2k and 1k".
"""

from torch import nn

from mnistlite import register_model
from mnistlite.models.tiny_zoo import DEEP_2K, TINY_RECIPE


def _unit(cin, cout, kernel, pad=0, groups=1):
    return [nn.Conv2d(cin, cout, kernel, padding=pad, bias=False, groups=groups), nn.BatchNorm2d(cout), nn.ReLU()]


class SharedResidual(nn.Module):
    """x <- x + relu(bn_i(pw(dw(x)))) for each of `repeats` BatchNorms, the convs shared."""

    def __init__(self, c, repeats):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for _ in range(repeats))

    def forward(self, x):
        for bn in self.bns:
            x = x + nn.functional.relu(bn(self.pw(self.dw(x))))
        return x


class PlanNet(nn.Module):
    def __init__(self, plan, classes=10, dropout=0.0):
        super().__init__()
        layers, c = [], 1
        for op in plan:
            kind = op[0]
            if kind == "pool":
                layers.append(nn.MaxPool2d(2))
                continue
            if kind == "share":
                layers.append(SharedResidual(c, op[1]))
                continue
            out = op[1]
            if kind == "conv":
                layers += _unit(c, out, (3, 3), op[2] if len(op) > 2 else 0)
            elif kind == "sep":
                layers += _unit(c, c, (3, 3), groups=c) + _unit(c, out, (1, 1))
            elif kind == "sepx":
                layers += [nn.Conv2d(c, c, 3, bias=False, groups=c)] + _unit(c, out, (1, 1))
            else:  # fact
                layers += _unit(c, out, (3, 1)) + _unit(out, out, (1, 3))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def count_plan(plan, classes=10):
    """Exact trainable parameters of `PlanNet(plan)`, without building it (the stated count)."""
    total, c = 0, 1
    for op in plan:
        if op[0] == "pool":
            continue
        if op[0] == "share":
            total += 9 * c + c * c + op[1] * 2 * c
            continue
        out = op[1]
        total += {
            "conv": 9 * c * out + 2 * out,
            "sep": 9 * c + 2 * c + c * out + 2 * out,
            "sepx": 9 * c + c * out + 2 * out,
            "fact": 3 * c * out + 2 * out + 3 * out * out + 2 * out,
        }[op[0]]
        c = out
    return total + c * classes + classes


def candidate(name, plan, description, budget_tag, **recipe):
    def factory(dropout=None):
        return PlanNet(plan, dropout=dropout or 0.0)

    register_model(
        name,
        source=f"mnistlite, {name}",
        tags=("mnistlite", "tiny", "under8k", budget_tag),
        recipe={**TINY_RECIPE, **recipe},
        stated_params=count_plan(plan),
        description=description,
    )(factory)


# --- round 1 -------------------------------------------------------------------------
SEP_2K = (("conv", 8, 1), ("sep", 12), ("pool",), ("sep", 16), ("sep", 16), ("sep", 20))
SEP_1K = (("conv", 6, 1), ("sep", 8), ("pool",), ("sep", 10), ("sep", 10), ("sep", 12))
candidate(
    "tiny2k_sep",
    SEP_2K,
    "Under 2k (1,862): a full conv, then depthwise-separable units widening 12 -> 20 (round 1's pick).",
    "under2k",
)
candidate(
    "tiny2k_fact",
    (("conv", 8, 1), ("pool",), ("fact", 8), ("fact", 10), ("fact", 10)),
    "Round-1 candidate under 2k (1,834): a full conv, an early pool, then factorised 3x1/1x3 units.",
    "under2k",
)
candidate(
    "tiny2k_plain",
    (("conv", 6, 1), ("conv", 8), ("pool",), ("conv", 8), ("conv", 10)),
    "Round-1 candidate under 2k (1,956): plain 3x3 convs, no 1x1 transition.",
    "under2k",
)
candidate(
    "tiny1k_fact",
    (("conv", 5, 1), ("pool",), ("fact", 6), ("fact", 6), ("fact", 8)),
    "Round-1 candidate under 1k (975): a full conv, an early pool, then factorised 3x1/1x3 units.",
    "under1k",
)
candidate(
    "tiny1k_plain",
    (("conv", 4, 1), ("conv", 5), ("pool",), ("conv", 6), ("conv", 7)),
    "Round-1 candidate under 1k (988): plain 3x3 convs, no 1x1 transition.",
    "under1k",
)

# --- round 2: one change per candidate against its budget's round-1 pick --------------
LIGHT = dict(weight_decay=5e-5, rotation=5.0, translate=0.05, scale=0.05)
WIDE_2K = (("conv", 8, 1), ("sep", 12), ("pool",), ("sep", 16), ("sep", 18), ("sep", 21))
candidate(
    "tiny2k_wide",
    WIDE_2K,
    "Under 2k (1,990): tiny2k_sep widened to the budget in its last two units (round 2's pick).",
    "under2k",
)
candidate(
    "tiny2k_sepx",
    (("conv", 8, 1), ("sepx", 14), ("pool",), ("sepx", 18), ("sepx", 18), ("sepx", 19)),
    "Round-2 candidate under 2k (1,978): Xception-style separable units, the saving spent on width.",
    "under2k",
)
candidate(
    "tiny2k_light",
    SEP_2K,
    "Round-2 candidate under 2k (1,862): tiny2k_sep with half the weight decay and milder augmentation.",
    "under2k",
    **LIGHT,
)
candidate(
    "tiny1k_sepx",
    (("conv", 6, 1), ("sepx", 8), ("pool",), ("sepx", 10), ("sepx", 12), ("sepx", 12)),
    "Round-2 candidate under 1k (996): Xception-style separable units, the saving spent on width.",
    "under1k",
)
candidate(
    "tiny1k_late",
    (("conv", 6, 1), ("sep", 8), ("sep", 10), ("pool",), ("sep", 10), ("sep", 12)),
    "Round-2 candidate under 1k (998): tiny1k_sep with its pool one unit later (more work at 24x24).",
    "under1k",
)
candidate(
    "tiny1k_light",
    SEP_1K,
    "Round-2 candidate under 1k (998): tiny1k_sep with half the weight decay and milder augmentation.",
    "under1k",
    **LIGHT,
)

# --- round 4: weight sharing, depth bought with BatchNorms instead of convs ---------------
candidate(
    "tiny2k_share3",
    (("conv", 8, 1), ("sep", 12), ("pool",), ("sep", 24), ("share", 3)),
    "Round-4 candidate under 2k (1,950): a separable unit to 24 channels, then a shared residual unit run 3 times.",
    "under2k",
)
candidate(
    "tiny2k_share5",
    (("conv", 8, 1), ("sep", 12), ("pool",), ("sep", 22), ("share", 5)),
    "Round-4 candidate under 2k (1,868): a separable unit to 22 channels, then a shared residual unit run 5 times.",
    "under2k",
)
candidate(
    "tiny1k_share3",
    (("conv", 6, 1), ("sep", 8), ("pool",), ("sep", 14), ("share", 3)),
    "Round-4 candidate under 1k (980): a separable unit to 14 channels, then a shared residual unit run 3 times.",
    "under1k",
)
candidate(
    "tiny1k_share5",
    (("conv", 6, 1), ("sep", 8), ("pool",), ("sep", 12), ("share", 5)),
    "Round-4 candidate under 1k (906): a separable unit to 12 channels, then a shared residual unit run 5 times.",
    "under1k",
)

# --- round 5: the layout of the public 997-parameter net ----------------------------------
candidate(
    "tiny1k_early",
    (("conv", 6), ("pool",), ("sepx", 9), ("sepx", 10), ("sepx", 11), ("sepx", 12)),
    "Round-5 candidate under 1k (990): a full conv, the pool at once, then four Xception-style separable units.",
    "under1k",
)

# --- round 6: weight decay 5e-4 -----------------------------------------------------------
candidate(
    "tiny2k_wd",
    WIDE_2K,
    "Under 2k (1,990): tiny2k_wide with weight decay 5e-4 (round 6's pick, at its +0.10 threshold).",
    "under2k",
    weight_decay=5e-4,
)

# --- round 7: depth, every separable unit after the pool at one width ---------------------
candidate(
    "tiny2k_deep",
    DEEP_2K,
    "Round-7 candidate under 2k (1,926): five 12-wide separable units after the pool instead of three widening ones.",
    "under2k",
    weight_decay=5e-4,
)
candidate(
    "tiny1k_deep",
    (("conv", 6, 1), ("sep", 8), ("pool",)) + (("sep", 8),) * 4,
    "Round-7 candidate under 1k (958): four 8-wide separable units after the pool instead of three widening ones.",
    "under1k",
)
