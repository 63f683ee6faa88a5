"""l-inf gradient attacks: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018)."""

from __future__ import annotations

import torch

from . import input_grad, logits_and_grad, parse_eps, project, register_attack


@register_attack("fgsm", threat="linf", access="white-box")
def fgsm(model, x, y, eps, generator=None):
    """Fast gradient sign method: one step of size eps along sign(grad)."""
    return project(x + eps * input_grad(model, x, y).sign(), x, eps).detach()


@register_attack("pgd", threat="linf", access="white-box")
def pgd(
    model,
    x,
    y,
    eps,
    generator=None,
    *,
    steps: int = 20,
    alpha: float | None = None,
    alpha_rel: float = 0.25,
    random_start: bool = True,
    restarts: int = 1,
    early_stop: bool = False,
):
    """Projected gradient descent (Madry et al.) with random start and restarts.

    Step size ``alpha`` (absolute) or ``alpha_rel * eps``. With several restarts, each later restart
    attacks only the points no earlier restart has broken; the first adversarial point found is kept.
    ``early_stop`` (evaluation): a point stops moving as soon as it is misclassified. The logits of
    the current iterate come with its gradient, so this costs nothing, and it can only make the
    attack stronger: a success is kept instead of possibly being walked away from. Training wants
    the loss-maximising point instead, so the default is off.
    """
    a = parse_eps(alpha) if alpha is not None else alpha_rel * eps
    return pgd_loop(model, x, y, eps, generator, steps=steps, alpha=a, random_start=random_start, restarts=restarts, early_stop=early_stop)


def pgd_loop(model, x, y, eps, generator, *, steps: int, alpha: float, random_start: bool, restarts: int = 1, early_stop: bool = False, proj=project):
    """The PGD iteration shared by every PGD variant; ``proj(x_adv, x, eps)`` maps an iterate back
    into the threat model (the ball and box here, the 8-bit grid as well in :mod:`.grid`)."""
    best = x.clone()
    todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    n_restarts = max(1, restarts)
    for r in range(n_restarts):
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0, y0 = x[idx], y[idx]
        xa = x0
        if random_start:
            noise = torch.rand(x0.shape, generator=generator, device="cpu").to(x0.device)
            xa = proj(x0 + (2 * noise - 1) * eps, x0, eps)
        active = torch.arange(idx.numel(), device=x.device)  # positions in this restart still moving
        for _ in range(steps):
            logits, grad = logits_and_grad(model, xa[active], y0[active])
            if early_stop:
                going = logits.argmax(1) == y0[active]
                active, grad = active[going], grad[going]
                if active.numel() == 0:
                    break
            xa = xa.clone()
            xa[active] = proj(xa[active] + alpha * grad.sign(), x0[active], eps).detach()
        best[idx] = xa
        if r + 1 < n_restarts:
            # Only a later restart needs to know what is broken; no extra forward pass otherwise
            # (a model attacked in train mode would update its batch-norm statistics with it).
            with torch.no_grad():
                fooled = model(xa).argmax(1) != y0
            todo[idx[fooled]] = False
    return best.detach()
