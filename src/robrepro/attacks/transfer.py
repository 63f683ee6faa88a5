"""Transfer from a solver twin: PGD on the same ODE net integrated by another solver.

The surrogate shares every weight with the attacked model but integrates its ODE blocks with a
fixed-step solver (default RK4, ``n_steps`` equal steps) or with the same adaptive solver at a
looser tolerance (``method=None, rtol=..., atol=...``). The adversarial points are then returned
for evaluation on the original model. The attack never differentiates through the original's
adaptive step-size control, so when a white-box attack on the original is much weaker than this
transfer, the original's gradients are masked (Athalye et al. 2018, "Obfuscated gradients").

For a model without ODE blocks the twin is the model itself and this is plain PGD (a control).
A transfer attack is only as good as its surrogate: :func:`twin_agreement` measures how often the
twin's clean predictions agree with the model's (the audit reports a leg below its gate as unusable).
Guarantees: points in the eps-ball around x and in the input box.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models.ode_twin import solver_twin
from . import attack_mode, predict, register_attack
from .linf import pgd

FIXED_STEP = ("rk4", "euler", "midpoint", "explicit_adams")


def twin_for(model, *, method: str | None = "rk4", n_steps: int | None = 8, rtol: float | None = None, atol: float | None = None):
    """The surrogate of ``model`` this attack differentiates (weights shared)."""
    return solver_twin(model, method=method, rtol=rtol, atol=atol, n_steps=n_steps if method in FIXED_STEP else None)


def twin_agreement(model, x: torch.Tensor, spec: dict[str, Any], *, batch_size: int, device="cpu") -> float:
    """Fraction of the stored samples ``x`` on which the twin of ``spec`` predicts the model's label."""
    keys = ("method", "n_steps", "rtol", "atol")
    twin = twin_for(model, **{k: spec[k] for k in keys if k in spec})
    return (predict(model, x, batch_size, device) == predict(twin, x, batch_size, device)).float().mean().item()


@register_attack("transfer_twin", threat="linf", access="transfer")
def transfer_twin(
    model,
    x,
    y,
    eps,
    generator=None,
    *,
    method: str | None = "rk4",
    n_steps: int | None = 8,
    rtol: float | None = None,
    atol: float | None = None,
    steps: int = 20,
    alpha_rel: float = 0.25,
    restarts: int = 1,
):
    """PGD-``steps`` (``restarts`` random restarts) on the solver twin of ``model``."""
    twin = twin_for(model, method=method, n_steps=n_steps, rtol=rtol, atol=atol)
    with attack_mode(twin):
        # early_stop off: success is judged on the twin, and the loss-maximising point transfers better.
        return pgd(twin, x, y, eps, generator, steps=steps, alpha_rel=alpha_rel, restarts=restarts, early_stop=False)
