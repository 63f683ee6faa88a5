"""Pre-activation ResNet-18 (He et al. 2016, "Identity mappings in deep residual networks").

The baseline of the NODE paper's Table 2 (PGD-10, TRADES-10 and YOPO-5-3 adversarial training, as
in the YOPO paper). Blocks are BN-ReLU-conv-BN-ReLU-conv with the shortcut taken after the first
BN-ReLU where shapes change (1x1 projection). Stem: one 3x3 conv, no pooling (CIFAR-style); head:
BN-ReLU, global average pool, linear. The stem conv is the network's first layer, applied directly
to the normalised input: YOPO re-attacks only that layer (objectives/yopo.py).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from . import register


class PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + short


class PreActResNet(nn.Module):
    def __init__(self, blocks, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        layers, c = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                layers.append(PreActBlock(c, c_out, 2 if (i > 0 and j == 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        out = self.layers(self.stem(x))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        return self.head(torch.flatten(out, 1))


@register("preact_resnet")
def preact_resnet(*, in_channels: int, image_size: int, num_classes: int, blocks=(2, 2, 2, 2), width: int = 64):
    """PreAct-ResNet with ``blocks`` basic blocks per stage (widths w, 2w, 4w, 8w)."""
    return PreActResNet(tuple(blocks), in_channels, num_classes, width)


register("preact_resnet18")(partial(preact_resnet, blocks=(2, 2, 2, 2)))
