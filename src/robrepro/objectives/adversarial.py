"""Adversarial-training objectives (Madry et al. PGD training) built on the attack suite."""

from __future__ import annotations

import torch.nn.functional as F

from ..attacks import attack_mode, pgd
from ..eps import parse_eps
from . import Objective, accuracy, register_objective


@register_objective
class PGDTraining(Objective):
    """Cross-entropy on PGD adversarial examples (optionally mixed with the clean loss).

    Adversarial examples are generated in eval mode so that BN statistics are not updated by the
    attack's forward passes; the loss is then taken in train mode on the adversarial batch.
    """

    name = "pgd_at"

    def __init__(self, eps=8 / 255, steps: int = 10, alpha=None, alpha_rel: float = 0.25, random_start: bool = True, clean_weight: float = 0.0):
        self.eps = parse_eps(eps)
        self.steps, self.random_start, self.clean_weight = steps, random_start, clean_weight
        self.alpha = parse_eps(alpha) if alpha is not None else alpha_rel * self.eps

    def loss(self, model, x, y, progress):
        with attack_mode(model):
            # The engine restores the global RNG from checkpoints, so random starts replay on resume.
            x_adv = pgd(model, x, y, self.eps, None, steps=self.steps, alpha=self.alpha, random_start=self.random_start)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        metrics = {"adv_loss": loss.item(), "adv_acc": accuracy(logits, y)}
        if self.clean_weight:
            clean = model(x)
            loss = (1 - self.clean_weight) * loss + self.clean_weight * F.cross_entropy(clean, y)
            metrics["acc"] = accuracy(clean, y)
        metrics["loss"] = loss.item()
        return loss, metrics
