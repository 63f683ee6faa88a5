"""Uniform-noise augmentation (``ball``), the MNIST training perturbation of Kim et al. (ECCV 2020).

Each image of a batch is replaced by ``copies`` noisy copies x + U(-radius, radius)^d, clipped to
[0, 1]; the loss is the cross-entropy over all copies (the clean image itself is not trained on,
as in the authors' code). The noise is not quantised to the 8-bit grid (neither is theirs). It
draws from the global RNG, which the engine checkpoints, so a resumed run replays it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..eps import parse_eps
from . import Objective, accuracy, register_objective


def noisy_copies(x: torch.Tensor, radius: float, copies: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``copies`` blocks of the batch, each x + U(-radius, radius) clipped to [0, 1] (copy-major order)."""
    rep = x.repeat(copies, *([1] * (x.dim() - 1)))
    noise = torch.rand(rep.shape, generator=generator, device="cpu").to(x.device)
    return (rep + (2 * noise - 1) * radius).clamp(0, 1)


@register_objective
class BallNoise(Objective):
    """Cross-entropy on ``copies`` uniform-noise copies of each image (paper's MNIST setting: 0.3, 5)."""

    name = "ball"

    def __init__(self, radius=0.3, copies: int = 5):
        self.radius = parse_eps(radius)
        if int(copies) < 1:
            raise ValueError("ball: copies must be >= 1")
        self.copies = int(copies)

    def loss(self, model, x, y, progress):
        xn = noisy_copies(x, self.radius, self.copies)
        yn = y.repeat(self.copies)
        logits = model(xn)
        loss = F.cross_entropy(logits, yn)
        return loss, {"loss": loss.item(), "noisy_acc": accuracy(logits, yn)}
