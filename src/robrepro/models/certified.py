"""Plain ReLU networks for certified training (GM-CROWN-IBP and its CROWN-IBP / IBP baselines).

Every constructor returns an ``nn.Sequential`` of Conv2d / Linear / ReLU / Flatten only, so the
bound engine (:mod:`robrepro.bounds`) handles it; ``build`` prepends ``Normalize``. No BatchNorm, as
in the reference models. Sizes follow the dataset geometry (MNIST 1x28x28, CIFAR 3x32x32, or any
other ``in_channels`` / ``image_size``), and a ``width`` multiplier lets the smoke tier shrink them.

* ``dm_small`` / ``dm_medium`` / ``dm_large``: Gowal et al. (2018), Table "small/medium/large";
  small and medium use unpadded ("VALID") convolutions, large is the CROWN-IBP ``IBP_large``
  (padded 3x3 convs, one stride-2 conv).
* ``crownibp_cnn_2layer`` / ``crownibp_cnn_3layer`` / ``crownibp_cnn_4layer``: the CROWN-IBP
  small/medium CNNs (``model_cnn_2layer``, ``model_cnn_3layer_fixed``, ``model_cnn_4layer``), whose
  channel counts are multiples ``4*width`` / ``8*width``.
* ``mlp``: a fully connected net with ``hidden_sizes``, mostly for tests.
"""

from __future__ import annotations

from torch import nn

from . import register


def _ch(base: int, width: float) -> int:
    """Channels scaled by the width multiplier (at least 1)."""
    return max(1, int(round(base * width)))


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"image of size {size} is too small for this architecture")
    return out


def _cnn(in_channels: int, image_size: int, num_classes: int, convs, linears) -> nn.Sequential:
    """Conv stack ``[(out_ch, kernel, stride, padding), ...]`` -> Flatten -> Linear stack -> logits.

    Every conv and every hidden linear layer is followed by a ReLU; the flattened size is derived
    from the geometry so one definition serves MNIST and CIFAR.
    """
    layers: list[nn.Module] = []
    ch, size = in_channels, image_size
    for out_ch, k, s, p in convs:
        layers += [nn.Conv2d(ch, out_ch, k, stride=s, padding=p), nn.ReLU()]
        ch, size = out_ch, _conv_out(size, k, s, p)
    layers.append(nn.Flatten())
    feat = ch * size * size
    for hidden in linears:
        layers += [nn.Linear(feat, hidden), nn.ReLU()]
        feat = hidden
    layers.append(nn.Linear(feat, num_classes))
    return nn.Sequential(*layers)


@register("dm_small")
def dm_small(in_channels, image_size, num_classes, width: float = 1.0, linear_size: int = 100):
    """Gowal et al. small: conv16 4x4/2, conv32 4x4/1 (valid), FC100."""
    convs = [(_ch(16, width), 4, 2, 0), (_ch(32, width), 4, 1, 0)]
    return _cnn(in_channels, image_size, num_classes, convs, [_ch(linear_size, width)])


@register("dm_medium")
def dm_medium(in_channels, image_size, num_classes, width: float = 1.0, linear_size: int = 512):
    """Gowal et al. medium: conv32 3x3/1, conv32 4x4/2, conv64 3x3/1, conv64 4x4/2 (valid), FC512, FC512."""
    convs = [(_ch(32, width), 3, 1, 0), (_ch(32, width), 4, 2, 0), (_ch(64, width), 3, 1, 0), (_ch(64, width), 4, 2, 0)]
    hidden = _ch(linear_size, width)
    return _cnn(in_channels, image_size, num_classes, convs, [hidden, hidden])


@register("dm_large")
def dm_large(in_channels, image_size, num_classes, width: float = 1.0, linear_size: int = 512):
    """Gowal et al. large (CROWN-IBP ``IBP_large``): conv64, conv64, conv128/2, conv128, conv128 (3x3, pad 1), FC512."""
    c64, c128 = _ch(64, width), _ch(128, width)
    convs = [(c64, 3, 1, 1), (c64, 3, 1, 1), (c128, 3, 2, 1), (c128, 3, 1, 1), (c128, 3, 1, 1)]
    return _cnn(in_channels, image_size, num_classes, convs, [_ch(linear_size, width)])


@register("crownibp_cnn_2layer")
def crownibp_cnn_2layer(in_channels, image_size, num_classes, width: float = 1, linear_size: int = 128):
    """CROWN-IBP ``model_cnn_2layer``: conv 4w 4x4/2 p1, conv 8w 4x4/2 p1, FC linear_size."""
    convs = [(_ch(4, width), 4, 2, 1), (_ch(8, width), 4, 2, 1)]
    return _cnn(in_channels, image_size, num_classes, convs, [linear_size])


@register("crownibp_cnn_3layer")
def crownibp_cnn_3layer(in_channels, image_size, num_classes, width: float = 1, kernel_size: int = 3, linear_size: int | None = None):
    """CROWN-IBP ``model_cnn_3layer_fixed``: conv 4w kxk/1 p1, conv 8w kxk/1 p1, conv 8w 4x4/4, FC (64w)."""
    if kernel_size not in (3, 5):
        raise ValueError("kernel_size must be 3 or 5")
    convs = [(_ch(4, width), kernel_size, 1, 1), (_ch(8, width), kernel_size, 1, 1), (_ch(8, width), 4, 4, 0)]
    return _cnn(in_channels, image_size, num_classes, convs, [linear_size or _ch(64, width)])


@register("crownibp_cnn_4layer")
def crownibp_cnn_4layer(in_channels, image_size, num_classes, width: float = 1, linear_size: int = 256):
    """CROWN-IBP ``model_cnn_4layer``: conv 4w 3x3/1, conv 4w 4x4/2, conv 8w 3x3/1, conv 8w 4x4/2 (pad 1), FC, FC."""
    convs = [(_ch(4, width), 3, 1, 1), (_ch(4, width), 4, 2, 1), (_ch(8, width), 3, 1, 1), (_ch(8, width), 4, 2, 1)]
    return _cnn(in_channels, image_size, num_classes, convs, [linear_size, linear_size])


@register("mlp")
def mlp(in_channels, image_size, num_classes, hidden_sizes=(64,), width: float = 1.0):
    """Flatten -> [Linear -> ReLU] per hidden size -> Linear."""
    if isinstance(hidden_sizes, int):
        hidden_sizes = (hidden_sizes,)
    return _cnn(in_channels, image_size, num_classes, [], [_ch(h, width) for h in hidden_sizes])
