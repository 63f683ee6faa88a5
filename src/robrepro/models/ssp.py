"""Strong-stability-preserving residual networks (Kim et al., ECCV 2020, Eqs. 9-15).

A pre-activation residual block is one forward-Euler step E(x) = x + f(x) of the ODE u' = f(u)
with step 1, where f = norm -> ReLU -> conv3x3 -> norm -> ReLU -> conv3x3 is the residual branch.
The blocks here replace that step by other explicit Runge-Kutta steps built from the *same* f:

* ``res``:    y = E(x)
* ``ssp2``:   SSPRK(2,2) in Shu-Osher form (Eq. 9): y = 1/2 x + 1/2 E(E(x))
* ``ssp3``:   SSPRK(3,3) in Shu-Osher form (Eq. 10): x1 = E(x); x2 = 3/4 x + 1/4 E(x1); y = 1/3 x + 2/3 E(x2)
* ``midrk2``: the non-SSP comparison of Eq. 11. ``form="code"`` (default, the form of the authors'
  code, which produced the published growth-ratio figure): x_h = x + f(x)/2; y = x_h + f(x_h).
  ``form="textbook"``: the explicit midpoint rule y = x + f(x + f(x)/2).
* ``ark``:    the adaptive 2-stage block (Eqs. 12-15), coefficients from two learnable scalars,
  beta10 = sigmoid(b10), alpha21 = sigmoid(a21), and the second-order conditions for the rest.

Guarantees. Every stage of one block calls the same residual-function module, so SSP2, SSP3 and
mid-RK2 have exactly the parameter count of a ResNet block (Ark: two scalars more) and cost 2 or 3
evaluations of f. SSP2 and SSP3 are convex combinations of compositions of E, so any norm that one
forward-Euler step does not increase is not increased by them (the strong-stability property); the
code form of mid-RK2 happens to be E(1/2 x + 1/2 E(x)) and keeps it too, the textbook midpoint does
not. Ark is SSP only where all its coefficients are non-negative, which its parametrisation does not
enforce (at the CIFAR initial values beta20 < 0).

Networks (the authors' code; layer shapes of the paper's Sec. 4 and supplement):

* ``ssp_mnist`` (MNIST, FMNIST): a strided conv stem to 64 channels at 6x6, ``n_blocks`` blocks,
  norm -> ReLU -> global average pool -> linear. GroupNorm by default.
* ``ssp_cifar``: conv3x3 stem, three groups of ``n`` blocks at 16/32/64 channels separated by
  stride-2 pre-activation ResBlock transitions with a projection shortcut, global average pool,
  linear. BatchNorm. ``block="ark"`` is SSP-adap: groups Ark, Res, SSP2.
* ``ssp_tiny`` (Tiny ImageNet, 64x64, 200 classes): the same with four groups at 16/32/64/128
  channels; ``block="ark"`` is Ark, Res, SSP2, SSP2.

Every network exposes ``block_groups`` (an ``nn.ModuleList``, one module per group): the input of a
group module is the group's input h_in and its output h_out, which the perturbation growth ratio
reads with forward hooks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import register

BLOCKS = ("res", "midrk2", "ssp2", "ssp3", "ark")


def make_norm(kind: str, channels: int) -> nn.Module:
    """``batch`` or ``group`` (GroupNorm with min(32, C) groups, the authors' ``--norm g``)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; use batch or group")


def residual_function(c_in: int, c_out: int, norm: str, stride: int = 1) -> nn.Sequential:
    """f(x) = conv(relu(norm(conv(relu(norm(x)))))): the pre-activation residual branch (He et al. 2016)."""
    return nn.Sequential(
        make_norm(norm, c_in),
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, 3, stride, 1),
        make_norm(norm, c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1),
    )


class ResBlock(nn.Module):
    """One forward-Euler step y = x + h f(x) (h = 1: the ResNet block)."""

    def __init__(self, f: nn.Module, h: float = 1.0):
        super().__init__()
        self.f, self.h = f, h

    def euler(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.h * self.f(x)

    def forward(self, x):
        return self.euler(x)


class SSP2Block(ResBlock):
    """SSPRK(2,2), Shu-Osher form: x1 = E(x); y = 1/2 x + 1/2 E(x1)."""

    def forward(self, x):
        return 0.5 * x + 0.5 * self.euler(self.euler(x))


class SSP3Block(ResBlock):
    """SSPRK(3,3), Shu-Osher form: x1 = E(x); x2 = 3/4 x + 1/4 E(x1); y = 1/3 x + 2/3 E(x2)."""

    def forward(self, x):
        x1 = self.euler(x)
        x2 = 0.75 * x + 0.25 * self.euler(x1)
        return x / 3 + (2 / 3) * self.euler(x2)


class MidRK2Block(ResBlock):
    """Second-order, non-SSP comparison block (Eq. 11), in the authors' code form or the textbook form."""

    def __init__(self, f: nn.Module, h: float = 1.0, form: str = "code"):
        super().__init__(f, h)
        if form not in ("code", "textbook"):
            raise ValueError(f"midrk2 form must be code or textbook, got {form!r}")
        self.form = form

    def forward(self, x):
        half = x + 0.5 * self.h * self.f(x)
        if self.form == "code":
            return half + self.h * self.f(half)
        return x + self.h * self.f(half)


def ark_coefficients(beta10, alpha21):
    """(alpha20, beta20, beta21) of the 2-stage, second-order explicit RK scheme (Eq. 14).

    Consistency and second order fix alpha20 = 1 - alpha21, beta21 = 1 / (2 beta10) and
    beta20 = 1 - 1 / (2 beta10) - alpha21 beta10.
    """
    beta21 = 1 / (2 * beta10)
    return 1 - alpha21, 1 - beta21 - alpha21 * beta10, beta21


def ark_step(x: torch.Tensor, f, beta10, alpha21) -> torch.Tensor:
    """u1 = x + beta10 f(x); y = alpha20 x + beta20 f(x) + alpha21 u1 + beta21 f(u1) (Eq. 13)."""
    alpha20, beta20, beta21 = ark_coefficients(beta10, alpha21)
    fx = f(x)  # evaluated once and used twice (the formula needs f(x) in both stages)
    u1 = x + beta10 * fx
    return alpha20 * x + beta20 * fx + alpha21 * u1 + beta21 * f(u1)


class ArkBlock(nn.Module):
    """Adaptive 2-stage block (SSP-adap): beta10 = sigmoid(b10), alpha21 = sigmoid(a21), learnable.

    ``train_a21`` / ``train_b10`` say whether each scalar receives gradients; both stay parameters
    (so checkpoints and parameter counts do not depend on the flags).
    """

    def __init__(self, f: nn.Module, a21: float, b10: float, train_a21: bool = True, train_b10: bool = True):
        super().__init__()
        self.f = f
        self.a21 = nn.Parameter(torch.tensor(float(a21)), requires_grad=train_a21)
        self.b10 = nn.Parameter(torch.tensor(float(b10)), requires_grad=train_b10)

    def coefficients(self) -> dict[str, float]:
        """The block's current RK coefficients (for reports: is the learned scheme SSP?)."""
        b10, a21 = torch.sigmoid(self.b10).item(), torch.sigmoid(self.a21).item()
        a20, b20, b21 = ark_coefficients(b10, a21)
        return {"alpha20": a20, "alpha21": a21, "beta10": b10, "beta20": b20, "beta21": b21}

    def forward(self, x):
        return ark_step(x, self.f, torch.sigmoid(self.b10), torch.sigmoid(self.a21))


class Transition(nn.Module):
    """Stride-2 pre-activation ResBlock between groups: f(x) + conv1x1(relu(norm1(x))) -> norm.

    The shortcut shares the first norm of the residual branch (pre-activation, He et al. 2016) and
    projects with a strided 1x1 conv followed by a norm.
    """

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__()
        self.f = residual_function(c_in, c_out, norm, stride=2)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, 2, bias=False), make_norm(norm, c_out))

    def forward(self, x):
        layers = list(self.f)
        pre = layers[1](layers[0](x))  # relu(norm1(x)), the branch's own first two layers
        out = pre
        for layer in layers[2:]:
            out = layer(out)
        return out + self.shortcut(pre)


def make_block(kind: str, channels: int, norm: str, *, midrk2_form: str = "code", ark: dict | None = None) -> nn.Module:
    """A stride-1 block of type ``kind`` (one of :data:`BLOCKS`) at ``channels`` channels."""
    f = residual_function(channels, channels, norm)
    if kind == "res":
        return ResBlock(f)
    if kind == "ssp2":
        return SSP2Block(f)
    if kind == "ssp3":
        return SSP3Block(f)
    if kind == "midrk2":
        return MidRK2Block(f, form=midrk2_form)
    if kind == "ark":
        return ArkBlock(f, **(ark or {}))
    raise ValueError(f"unknown block {kind!r}; known: {', '.join(BLOCKS)}")


def init_weights(model: nn.Module, scheme: str, depth: int = 1) -> None:
    """Weight initialisation schemes of the authors' code.

    * ``default``: PyTorch's own (their ``--init basic``; MNIST).
    * ``depth_scaled``: conv/linear weights kaiming_uniform with a = sqrt(5) * depth (sic: the gain
      shrinks with depth), biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norm weights U(0, 1), biases 0
      (CIFAR-10, Tiny ImageNet).
    * ``kaiming_normal``: convs kaiming_normal (fan_out, relu), norm weights 1, biases 0 (FMNIST).
    """
    if scheme == "default":
        return
    for m in model.modules():
        if scheme == "depth_scaled":
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5) * depth)
                if m.bias is not None:
                    bound = 1 / math.sqrt(nn.init._calculate_fan_in_and_fan_out(m.weight)[0])
                    nn.init.uniform_(m.bias, -bound, bound)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.uniform_(m.weight)
                nn.init.zeros_(m.bias)
        elif scheme == "kaiming_normal":
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        else:
            raise ValueError(f"unknown init {scheme!r}; use default, depth_scaled or kaiming_normal")


class GroupedNet(nn.Module):
    """stem -> group_1 -> transition_1 -> ... -> group_G -> head, with the groups in ``block_groups``."""

    def __init__(self, stem: nn.Module, groups: list[nn.Module], transitions: list[nn.Module], head: nn.Module):
        super().__init__()
        if len(transitions) != len(groups) - 1:
            raise ValueError("one transition between consecutive groups")
        self.stem, self.head = stem, head
        self.block_groups = nn.ModuleList(groups)
        self.transitions = nn.ModuleList(transitions)

    def forward(self, x):
        x = self.stem(x)
        for i, group in enumerate(self.block_groups):
            x = group(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        return self.head(x)


def _ark_params(a21: float, b10: float, train_a21: bool, train_b10: bool) -> dict:
    return {"a21": a21, "b10": b10, "train_a21": train_a21, "train_b10": train_b10}


def _group_kinds(block: str, n_groups: int, group_blocks) -> list[str]:
    if group_blocks is not None:
        kinds = list(group_blocks)
        if len(kinds) != n_groups:
            raise ValueError(f"group_blocks needs {n_groups} entries, got {kinds}")
        return kinds
    if block == "ark":
        # SSP-adap (authors' answer in their repository's issue #1): Ark, Res, then SSP2 groups.
        return ["ark", "res"] + ["ssp2"] * (n_groups - 2)
    return [block] * n_groups


def _staged(in_channels, num_classes, widths, n, block, group_blocks, norm, init, midrk2_form, ark) -> GroupedNet:
    kinds = _group_kinds(block, len(widths), group_blocks)
    groups = [nn.Sequential(*[make_block(k, w, norm, midrk2_form=midrk2_form, ark=ark) for _ in range(n)]) for k, w in zip(kinds, widths)]
    transitions = [Transition(a, b, norm) for a, b in zip(widths[:-1], widths[1:])]
    # No norm/ReLU before pooling: the authors' CIFAR and Tiny ImageNet nets pool the last group's output directly.
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))
    net = GroupedNet(nn.Conv2d(in_channels, widths[0], 3, 1, 1), groups, transitions, head)
    init_weights(net, init, depth=n)
    return net


@register("ssp_cifar")
def ssp_cifar(
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    block: str = "res",
    n: int = 6,
    widths=(16, 32, 64),
    group_blocks=None,
    norm: str = "batch",
    init: str = "depth_scaled",
    midrk2_form: str = "code",
    ark_a21: float = 0.25,
    ark_b10: float = 1.0,
    ark_train_a21: bool = True,
    ark_train_b10: bool = True,
):
    """CIFAR-10 net: three groups of ``n`` blocks (paper: n in {6, 10}).

    ``ark_train_a21`` defaults to true: the released code's flag parsing makes a21 trainable although
    its README means it frozen. ``group_blocks`` overrides the per-group block types.
    """
    ark = _ark_params(ark_a21, ark_b10, ark_train_a21, ark_train_b10)
    return _staged(in_channels, num_classes, list(widths), n, block, group_blocks, norm, init, midrk2_form, ark)


@register("ssp_tiny")
def ssp_tiny(
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    block: str = "res",
    n: int = 10,
    widths=(16, 32, 64, 128),
    group_blocks=None,
    norm: str = "batch",
    init: str = "depth_scaled",
    midrk2_form: str = "code",
    ark_a21: float = 0.25,
    ark_b10: float = 1.0,
    ark_train_a21: bool = True,
    ark_train_b10: bool = True,
):
    """Tiny ImageNet net (supplement): four groups of ``n`` blocks; SSP-adap = Ark, Res, SSP2, SSP2."""
    ark = _ark_params(ark_a21, ark_b10, ark_train_a21, ark_train_b10)
    return _staged(in_channels, num_classes, list(widths), n, block, group_blocks, norm, init, midrk2_form, ark)


@register("ssp_mnist")
def ssp_mnist(
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    block: str = "res",
    n_blocks: int = 5,
    channels: int = 64,
    norm: str = "group",
    init: str = "default",
    midrk2_form: str = "code",
    ark_a21: float = -1.0,
    ark_b10: float = 0.5,
    ark_train_a21: bool = True,
    ark_train_b10: bool = True,
):
    """MNIST/FMNIST net: stem 28 -> 26 -> 13 -> 6 at ``channels`` channels, one group of ``n_blocks`` blocks.

    Ark here uses the block's own initial values a21 = -1, b10 = 0.5 (the CIFAR net passes 0.25, 1.0).
    """
    c = channels
    stem = nn.Sequential(
        nn.Conv2d(in_channels, c, 3, 1, 0),
        make_norm(norm, c),
        nn.ReLU(),
        nn.Conv2d(c, c, 4, 2, 1),
        make_norm(norm, c),
        nn.ReLU(),
        nn.Conv2d(c, c, 4, 2, 1),
    )
    ark = _ark_params(ark_a21, ark_b10, ark_train_a21, ark_train_b10)
    group = nn.Sequential(*[make_block(block, c, norm, midrk2_form=midrk2_form, ark=ark) for _ in range(n_blocks)])
    head = nn.Sequential(make_norm(norm, c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
    net = GroupedNet(stem, [group], [], head)
    init_weights(net, init, depth=n_blocks)
    return net
