"""Seed 000 Model3 (MnistLite-8k, 7,864 parameters) written as a student would, in plain torch.

No mnistlite building blocks: nn.Sequential, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout.
mnistlite's fast path fuses it anyway (docs/performance.md). `model3_plain` is the same
net registered with the registered Model3's recipe, so the two train under one recipe:

    mnistlite bench --model mnistlite8k_model3 --against examples/seed000_model3_plain.py:Model3
    mnistlite seeds examples/seed000_model3_plain.py:model3_plain --seeds 3 --out docs/results/user_model3
"""

import torch.nn as nn
import torch.nn.functional as F

from mnistlite import register_model
from mnistlite.models import get_entry


def block(cin, cout, k=3, p=0.01):
    return nn.Sequential(nn.Conv2d(cin, cout, k), nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(p))


class Model3(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = block(1, 8)
        self.conv2 = block(8, 10)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv3 = block(10, 8, 1)
        self.conv4 = block(8, 16)
        self.conv5 = block(16, 32)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.conv6 = block(32, 8, 1)
        self.conv7 = nn.Conv2d(8, 10, 3)

    def forward(self, x):
        x = self.pool1(self.conv2(self.conv1(x)))
        x = self.pool2(self.conv5(self.conv4(self.conv3(x))))
        x = self.conv7(self.conv6(x))
        return x.mean((2, 3))


@register_model(
    "model3_plain",
    recipe=get_entry("mnistlite8k_model3").recipe,
    description="Seed 000 Model3 in plain torch, with the registered Model3's recipe",
)
def model3_plain():
    return Model3()


class FunctionalNet(nn.Module):
    """BatchNorm and ReLU written out in forward: fused through torch.fx."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.d1 = nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Dropout(0.05)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, bias=False), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.d1(F.relu(self.b1(self.c1(x))))
        x = F.max_pool2d(x, 2)
        x = self.b2(self.c2(x)).relu()
        return self.head(x.mean((2, 3)))
