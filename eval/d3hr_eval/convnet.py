"""ConvNet-3 of the dataset-distillation literature (DC / DSA / DM papers).

Three blocks of [3x3 conv (width 128) -> instance norm (GroupNorm with one group per channel, affine)
-> ReLU -> 2x2 average pooling], then a linear classifier. For a 1x32x32 input the feature map is
128x4x4 = 2048 features. (For 28x28 input the DC code pads to 32x32 as well.)
"""
from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 128, depth: int = 3,
                 image_size: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        size = image_size
        for _ in range(depth):
            layers += [
                nn.Conv2d(c, width, 3, padding=1),
                nn.GroupNorm(width, width, affine=True),  # instance norm, as 'instancenorm' in DC code
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2, 2),
            ]
            c = width
            size //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def load_convnet(path: str, map_location: str = "cpu") -> ConvNet:
    """Load a checkpoint written by ``train_teacher.py`` ({'config', 'state_dict', ...})."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    net = ConvNet(**ckpt["config"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()
