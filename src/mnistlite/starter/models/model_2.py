"""Model 2: the same skeleton with BatchNorm after every convolution and a little dropout.

Target: faster, steadier training from BatchNorm; dropout and the augmentation and
one-cycle schedule in experiment.toml against overfitting, still under 8,000 parameters.
"""

import torch.nn as nn


def block(cin, cout, k=3, p=0.02):
    # Conv (no bias: BatchNorm's shift replaces it) -> BatchNorm -> ReLU -> Dropout
    return nn.Sequential(nn.Conv2d(cin, cout, k, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(p))


class Model2(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            block(1, 8),
            block(8, 16),
            nn.MaxPool2d(2),
            block(16, 10, 1),
            block(10, 16),
            block(16, 16),
            block(16, 16),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.features(x)
        return self.head(x.mean((2, 3)))
