"""l-inf FGSM and PGD on the 8-bit image grid, as evaluated by Kim et al. (ECCV 2020).

Differences from :mod:`robrepro.attacks.linf` (the project's standard attacks):

* after every step the iterate is projected onto the eps-ball, clipped to the input box and
  *quantised to the 1/255 grid*: every image an attack returns is a valid 8-bit image;
* no random start by default (the paper's evaluation PGD is BIM); the training attack of the paper
  starts at a uniform point of the ball, quantised likewise (``random_start=True``);
* no restarts, no early stop: the last iterate is returned, as in the authors' code.

Quantisation never leaves the ball: a value rounded past x +- eps (possible when eps is not a
multiple of 1/255, e.g. MNIST's 0.3) is moved to the nearest grid value inside the ball. The
authors' code rounds to nearest and can overshoot the ball by less than half a grid step; here the
threat model is kept exact instead.
"""

from __future__ import annotations

import torch

from . import clip_to_domain, input_grad, parse_eps, project, register_attack
from .linf import pgd_loop

LEVELS = 255


def to_grid(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest multiple of 1/255."""
    return torch.round(x * LEVELS) / LEVELS


def project_to_grid(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto ball and box, then quantise to the nearest grid value inside ball and box.

    ``x`` (the clean image) should lie on the grid; the grid values inside [x - eps, x + eps] are then
    the levels from ceil((x - eps) * 255) to floor((x + eps) * 255).
    """
    tol = 1e-4  # float error of x * 255 for grid-valued x must not move a bound by a level
    q = to_grid(project(x_adv, x, eps))
    lo = clip_to_domain(torch.ceil((x - eps) * LEVELS - tol) / LEVELS)
    hi = clip_to_domain(torch.floor((x + eps) * LEVELS + tol) / LEVELS)
    return torch.min(torch.max(q, lo), hi)


@register_attack("fgsm_grid", threat="linf", access="white-box")
def fgsm_grid(model, x, y, eps, generator=None):
    """One step of size eps along sign(grad), projected, clipped and quantised."""
    return project_to_grid(x + eps * input_grad(model, x, y).sign(), x, eps).detach()


@register_attack("pgd_grid", threat="linf", access="white-box")
def pgd_grid(
    model,
    x,
    y,
    eps,
    generator=None,
    *,
    steps: int = 20,
    alpha: float | None = None,
    alpha_rel: float = 0.25,
    random_start: bool = False,
):
    """``steps`` signed-gradient steps of size ``alpha`` (a number or "2/255"; else ``alpha_rel * eps``), each projected, clipped, quantised.

    ``random_start``: begin at x + U(-eps, eps) (quantised), drawn from ``generator`` (CPU) or the
    global RNG when it is None.
    """
    a = parse_eps(alpha) if alpha is not None else alpha_rel * eps  # configs may write "2/255"
    # One pass, the last iterate: the shared PGD loop with the grid projection.
    return pgd_loop(model, x, y, eps, generator, steps=steps, alpha=a, random_start=random_start, proj=project_to_grid)
