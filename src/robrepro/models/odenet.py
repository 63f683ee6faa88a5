"""The ODE-Net classifier of the NODE paper (Table A1), on torchdiffeq.

Layout as torchdiffeq's ODE-Net example: downsampling convs, one ODE block whose vector field is
GN-ReLU-ConcatConv-GN-ReLU-ConcatConv-GN (time as an extra channel), then GN-ReLU-pool-linear.
Integrated with an adaptive solver (dopri5) from 0 to ``end_time``. Every call of the vector field
is counted, so each result can report the number of function evaluations (NFE): adaptive solvers
take as many steps as the tolerance demands, which is the effect the paper attributes robustness to.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c), c)


class ConcatConv2d(nn.Module):
    """3x3 conv over the feature map with the time t appended as a constant channel."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in + 1, c_out, 3, 1, 1)

    def forward(self, t, x):
        tt = torch.ones_like(x[:, :1]) * t
        return self.conv(torch.cat([tt, x], 1))


class ODEFunc(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c), ConcatConv2d(c, c)
        self.norm2, self.conv2 = _norm(c), ConcatConv2d(c, c)
        self.norm3 = _norm(c)
        self.nfe = 0

    def forward(self, t, x):
        self.nfe += 1
        out = self.conv1(t, torch.relu(self.norm1(x)))
        out = self.conv2(t, torch.relu(self.norm2(out)))
        return self.norm3(out)


class ODEBlock(nn.Module):
    """y(T) = y(0) + integral of f over [0, T], solved by torchdiffeq.

    ``last_nfe`` holds the forward NFE of the latest call; ``nfe_backward`` counts the extra
    evaluations of the adjoint method's backward pass (zero when backpropagating through the solver).
    """

    def __init__(self, func: ODEFunc, end_time: float, method: str, rtol: float, atol: float, adjoint: bool):
        super().__init__()
        self.func = func
        self.register_buffer("t", torch.tensor([0.0, float(end_time)]))
        self.method, self.rtol, self.atol, self.adjoint = method, rtol, atol, adjoint
        self.last_nfe = 0

    def forward(self, x):
        from torchdiffeq import odeint, odeint_adjoint

        solve = odeint_adjoint if self.adjoint else odeint
        self.func.nfe = 0
        out = solve(self.func, x, self.t.to(x.dtype), rtol=self.rtol, atol=self.atol, method=self.method)[1]
        self.last_nfe = self.func.nfe
        return out


@register("odenet")
def odenet(
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    channels: int = 64,
    downsample: int = 1,
    end_time: float = 1.0,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-3,
    adjoint: bool = False,
):
    """``downsample`` stride-2 4x4 convs follow the first 3x3 conv (MNIST 1 -> 4 convs in all, CIFAR 2 -> 5)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, 1, 1)]
    for _ in range(downsample):
        layers += [_norm(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 4, 2, 1)]
    layers += [
        ODEBlock(ODEFunc(channels), end_time, method, rtol, atol, adjoint),
        _norm(channels),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    ]
    return nn.Sequential(*layers)


def forward_nfe(model: nn.Module) -> int | None:
    """Sum of the latest forward NFE over the model's ODE blocks; None for a model without one."""
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock)]
    return sum(b.last_nfe for b in blocks) if blocks else None
