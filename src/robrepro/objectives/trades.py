"""TRADES (Zhang et al. 2019): natural cross-entropy plus beta times the KL divergence between the
predictions on the clean and on the adversarial input.

    L = CE(f(x), y) + beta * (1/B) * sum_i KL( softmax f(x_i) || softmax f(x'_i) )
    x' = argmax_{||x' - x||_inf <= eps} KL( softmax f(x) || softmax f(x') )

The inner maximisation is PGD on that KL, from x + 0.001 * N(0, I) (the reference implementation's
start), ``steps`` sign-gradient steps of ``alpha``, projected onto the eps-ball and the input box,
with the model in eval mode (BN statistics are not updated by the attack). ``beta`` = 1/lambda.
Defaults: the TRADES-10 baseline of the YOPO paper (eps 0.031, step 0.007, 10 steps, beta 1.0);
the TRADES paper's own CIFAR value is beta 6.0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attacks import attack_mode, project
from ..eps import parse_eps
from . import Objective, accuracy, register_objective


def trades_kl(logits_adv: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(p_clean || p_adv), summed over classes (the reference's ``KLDivLoss(sum) / B``)."""
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction="sum") / logits_adv.shape[0]


def trades_example(model, x, eps: float, *, steps: int, alpha: float, init_std: float = 0.001) -> torch.Tensor:
    """The TRADES inner maximisation (model already in eval mode); random start from the global RNG."""
    with torch.no_grad():
        target = model(x)
    xa = project(x + init_std * torch.randn_like(x), x, eps)
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(trades_kl(model(xa), target), xa)
        xa = project(xa + alpha * g.sign(), x, eps)
    return xa.detach()


@register_objective
class TRADES(Objective):
    name = "trades"

    def __init__(self, eps=0.031, steps: int = 10, alpha=0.007, beta: float = 1.0, init_std: float = 0.001):
        self.eps, self.alpha = parse_eps(eps), parse_eps(alpha)
        self.steps, self.beta, self.init_std = int(steps), float(beta), float(init_std)

    def loss(self, model, x, y, progress):
        with attack_mode(model):
            # The engine restores the global RNG from checkpoints, so the random starts replay on resume.
            x_adv = trades_example(model, x, self.eps, steps=self.steps, alpha=self.alpha, init_std=self.init_std)
        logits = model(x)
        natural = F.cross_entropy(logits, y)
        robust = trades_kl(model(x_adv), logits)
        loss = natural + self.beta * robust
        return loss, {"loss": loss.item(), "natural_loss": natural.item(), "kl": robust.item(), "acc": accuracy(logits, y)}
