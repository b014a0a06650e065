"""Model 1: the baseline. Plain convolutions, no BatchNorm, no dropout, no augmentation.

Target: get the set-up right (data, training loop, test loop) and measure what a
plain conv stack reaches; every later model is compared with this one.
"""

import torch.nn as nn


class Model1(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3),
            nn.ReLU(),  # 28 -> 26
            nn.Conv2d(8, 16, 3),
            nn.ReLU(),  # 26 -> 24
            nn.MaxPool2d(2),  # 24 -> 12
            nn.Conv2d(16, 8, 1),
            nn.ReLU(),  # 1x1: fewer channels, cheaply
            nn.Conv2d(8, 16, 3),
            nn.ReLU(),  # 12 -> 10
            nn.Conv2d(16, 16, 3),
            nn.ReLU(),  # 10 -> 8
            nn.Conv2d(16, 16, 3),
            nn.ReLU(),  # 8 -> 6
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.features(x)
        return self.head(x.mean((2, 3)))  # global average pooling, then 10 logits
