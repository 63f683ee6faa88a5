"""CIFAR-style residual networks with a step size h on the residual branch (NODE paper Sec. 4.1).

A residual block computes relu(shortcut(x) + h * F(x)): h = 1 is the ordinary ResNet (one explicit
Euler step of size 1), smaller h are smaller Euler steps. With h = 0 a block on a non-negative input
(every block's input follows a ReLU) returns its input unchanged, so a stride-1 stage is the identity.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from . import register


class BasicBlock(nn.Module):
    """He et al. (2016) CIFAR block: two 3x3 convs with BN; option-A (parameter-free) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, h: float):
        super().__init__()
        self.h = h
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Option A of He et al.: subsample and zero-pad channels, so the shortcut has no weights.
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(self.shortcut(x) + self.h * out)


class Bottleneck(nn.Module):
    """1x1-3x3-1x1 bottleneck with projection shortcut where shapes change (ResNet-50)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int, h: float):
        super().__init__()
        c_out = width * self.expansion
        self.h = h
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        short = x if self.proj is None else self.proj(x)
        return F.relu(short + self.h * self.body(x))


class CifarResNet(nn.Module):
    """Stem conv (3x3, no max-pool) -> stages -> global average pool -> linear."""

    def __init__(self, stages: list[nn.Sequential], c_stem: int, c_in: int, c_final: int, num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(c_in, c_stem, 3, 1, 1, bias=False), nn.BatchNorm2d(c_stem), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(c_final, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register("cifar_resnet")
def cifar_resnet(*, in_channels: int, image_size: int, num_classes: int, depth: int = 56, width: int = 16, h: float = 1.0):
    """He et al. CIFAR ResNet of ``depth`` = 6n + 2 (ResNet-56: n = 9), widths w, 2w, 4w."""
    if (depth - 2) % 6:
        raise ValueError(f"cifar_resnet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    stages, c = [], width
    for i, c_out in enumerate((width, 2 * width, 4 * width)):
        blocks = [BasicBlock(c if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, h) for j in range(n)]
        stages.append(nn.Sequential(*blocks))
        c = c_out
    return CifarResNet(stages, width, in_channels, c, num_classes)


# Named architectures are partials of their family, so the config check can inspect their arguments.
register("resnet56")(partial(cifar_resnet, depth=56))


@register("bottleneck_resnet")
def bottleneck_resnet(*, in_channels: int, image_size: int, num_classes: int, blocks=(3, 4, 6, 3), width: int = 64, h: float = 1.0):
    """CIFAR-style bottleneck ResNet (3x3 stem, no max-pool); ``in_channels`` = 1 gives the MNIST stem."""
    stages, c = [], width
    for i, nb in enumerate(blocks):
        w = width * 2**i
        layers = []
        for j in range(nb):
            layers.append(Bottleneck(c, w, 2 if (i > 0 and j == 0) else 1, h))
            c = w * Bottleneck.expansion
        stages.append(nn.Sequential(*layers))
    return CifarResNet(stages, width, in_channels, c, num_classes)


register("resnet50")(partial(bottleneck_resnet, blocks=(3, 4, 6, 3)))
