"""PGD adversarial training on the 8-bit grid, as Kim et al. (ECCV 2020) trained.

The training attack is :func:`robrepro.attacks.grid.pgd_grid` with a random start (every iterate
projected, clipped and quantised to 1/255). ``attack_bn``: the authors' code generates the
adversarial batch with the model in *train* mode (batch statistics, running averages updated by
every attack step), which is the default here; ``eval`` uses the running statistics instead, as the
project's ``pgd_at`` does. Parameters never receive gradients from the attack.
"""

from __future__ import annotations

import torch.nn.functional as F

from ..attacks import attack_mode, frozen
from ..attacks.grid import pgd_grid
from ..eps import parse_eps
from . import Objective, accuracy, register_objective


@register_objective
class GridPGDTraining(Objective):
    """Cross-entropy on grid-PGD adversarial examples (paper: CIFAR eps 8/255, step 2/255, K in {7, 12})."""

    name = "pgd_grid_at"

    def __init__(self, eps=8 / 255, steps: int = 7, alpha=2 / 255, random_start: bool = True, attack_bn: str = "train"):
        if attack_bn not in ("train", "eval"):
            raise ValueError(f"pgd_grid_at: attack_bn must be train or eval, got {attack_bn!r}")
        self.eps, self.alpha = parse_eps(eps), parse_eps(alpha)
        self.steps, self.random_start, self.attack_bn = int(steps), bool(random_start), attack_bn

    def loss(self, model, x, y, progress):
        ctx = frozen(model) if self.attack_bn == "train" else attack_mode(model)
        with ctx:
            # Random starts draw from the global RNG, which the engine restores on resume.
            x_adv = pgd_grid(model, x, y, self.eps, None, steps=self.steps, alpha=self.alpha, random_start=self.random_start)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "adv_acc": accuracy(logits, y)}
