"""A parametric family of tiny CNNs whose parameter count is known before building: 3x3 convs, then per stage a
2x2 max-pool, a narrowing 1x1 conv and more 3x3 convs (the last `sep_stages` stages depthwise-separable: 9c + c^2
parameters, not 9c^2), then GAP and a linear head; every conv is Conv(bias=False) -> BN -> ReLU (-> Dropout)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetSpec:
    stages: tuple[tuple[int, ...], ...] = ((8, 16), (16, 16, 16))  # 3x3 conv widths per stage
    transitions: tuple[int, ...] = (10,)  # 1x1 width after each pool (one per stage boundary)
    first_padding: int = 0  # padding of the very first conv (1 keeps 28x28 borders)
    bn: bool = True
    dropout: float = 0.0
    sep_stages: int = 0  # the last k stages use depthwise-separable 3x3 convs
    classes: int = 10
    in_channels: int = 1

    def __post_init__(self) -> None:
        if len(self.transitions) != len(self.stages) - 1:
            raise ValueError("need exactly one transition width between consecutive stages")
        if not self.stages[-1]:
            raise ValueError("the last stage needs at least one conv")
        if not 0 <= self.sep_stages < len(self.stages):
            raise ValueError(
                f"sep_stages must be 0 to {len(self.stages) - 1}: the first stage (a 1-channel input) stays plain"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(spec: NetSpec) -> int:
    """Exact trainable parameters of `build(spec)`, from a build on the meta device (no memory, no random draws)."""
    with torch.device("meta"):
        return sum(p.numel() for p in FamilyNet(spec).parameters() if p.requires_grad)


def output_size(spec: NetSpec, side: int = 28) -> int:
    """Spatial side before the GAP head; must stay >= 1."""
    for i, stage in enumerate(spec.stages):
        if i > 0:
            side //= 2
        for j, _ in enumerate(stage):
            side -= 2 - (2 * spec.first_padding if (i, j) == (0, 0) else 0)
    return side


class FamilyNet(nn.Module):
    def __init__(self, spec: NetSpec):
        super().__init__()
        if output_size(spec) < 1:
            raise ValueError(f"spec shrinks the image below 1x1: {spec}")
        self.spec = spec
        layers: list[nn.Module] = []
        c = spec.in_channels
        for i, stage in enumerate(spec.stages):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
                layers += self._unit(c, spec.transitions[i - 1], 1, 0)
                c = spec.transitions[i - 1]
            for j, w in enumerate(stage):
                if i >= len(spec.stages) - spec.sep_stages:
                    layers += self._unit(c, c, 3, 0, groups=c) + self._unit(c, w, 1, 0)
                else:
                    layers += self._unit(c, w, 3, spec.first_padding if (i, j) == (0, 0) else 0)
                c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, spec.classes)

    def _unit(self, cin: int, cout: int, k: int, pad: int, groups: int = 1) -> list[nn.Module]:
        s = self.spec
        unit: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=pad, bias=not s.bn, groups=groups)]
        if s.bn:
            unit.append(nn.BatchNorm2d(cout))
        unit.append(nn.ReLU(inplace=True))
        if s.dropout > 0:
            unit.append(nn.Dropout(s.dropout))
        return unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(x.mean((2, 3)))


def build(spec: NetSpec) -> FamilyNet:
    return FamilyNet(spec)
