"""Small networks with a choice of monotone activation (TRDNN: Iris and MNIST).

* ``act_mlp``: Flatten -> [Linear -> act] per hidden size -> Linear. The Iris network of the
  catalog (section 3.2) is ``act_mlp(hidden_sizes=(H,), activation="tanh")``: 4-H-3 with tanh,
  the activation of the neural-network potentials of the energy-landscape literature.
* ``act_cnn``: a small CNN for MNIST-sized images: conv(c1, 5x5, stride 2) -> act ->
  conv(c2, 5x5, stride 2) -> act -> Flatten -> Linear(hidden) -> act -> Linear (no padding, so the
  bound engine folds the input normalisation into the first convolution). Sizes are keys.

Activations: ``tanh``, ``sigmoid``, ``relu`` -- all monotone, so the bound engine handles them
(interval propagation and CROWN relaxations, :mod:`robrepro.bounds`). Tabular inputs come as
``(B, features)`` with ``in_channels = features`` and ``image_size = 1``; Flatten is then a no-op.
Every layer has a bias (the energy landscape counts its parameters).
"""

from __future__ import annotations

from torch import nn

from . import register

ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {name!r}")
    return ACTIVATIONS[name]()


@register("act_mlp")
def act_mlp(in_channels, image_size, num_classes, hidden_sizes=(5,), activation: str = "tanh") -> nn.Sequential:
    """Fully connected network; ``hidden_sizes`` an int or a list, ``activation`` tanh | sigmoid | relu."""
    if isinstance(hidden_sizes, int):
        hidden_sizes = (hidden_sizes,)
    layers: list[nn.Module] = [nn.Flatten()]
    feat = in_channels * image_size * image_size
    for h in hidden_sizes:
        layers += [nn.Linear(feat, int(h)), make_activation(activation)]
        feat = int(h)
    layers.append(nn.Linear(feat, num_classes))
    return nn.Sequential(*layers)


@register("act_cnn")
def act_cnn(in_channels, image_size, num_classes, channels=(8, 16), hidden: int = 64, kernel_size: int = 5, activation: str = "tanh") -> nn.Sequential:
    """Two stride-2 convolutions and one hidden linear layer (MNIST: 28 -> 12 -> 4 with 5x5 kernels)."""
    c1, c2 = (int(c) for c in channels)
    size = image_size
    layers: list[nn.Module] = []
    ch = in_channels
    for c in (c1, c2):
        layers += [nn.Conv2d(ch, c, kernel_size, stride=2), make_activation(activation)]
        size = (size - kernel_size) // 2 + 1
        if size < 1:
            raise ValueError(f"image of size {image_size} is too small for act_cnn with kernel {kernel_size}")
        ch = c
    layers += [nn.Flatten(), nn.Linear(ch * size * size, int(hidden)), make_activation(activation), nn.Linear(int(hidden), num_classes)]
    return nn.Sequential(*layers)
