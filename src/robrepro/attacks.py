"""The attack suite, and robust accuracy over a whole epsilon grid in one pass.

Threat model: l-inf perturbations of images in [0, 1]; normalisation is inside the model, so
epsilon is in pixel units. Attacks return points in the epsilon-ball around x intersected with
[0, 1]. Each attack has the signature ``attack(model, x, y, eps, generator) -> x_adv``.

``robust_accuracy`` evaluates a grid of epsilons from small to large and attacks only points that
are still robust: a point already broken at a smaller epsilon has an adversarial example inside
every larger ball, so re-attacking it cannot change the result. On a typical grid most points fall
early, which makes the sweep several times cheaper than attacking everything at every epsilon, and
never weaker (the reported accuracy at each epsilon is the worst case over the smaller ones too).
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, torch.Generator], torch.Tensor]


@contextlib.contextmanager
def attack_mode(model: nn.Module):
    """Eval mode (BN running stats, no dropout) and frozen parameters while attacking; restored after."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def _logits_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    logits = model(x)
    # Summed, not averaged: each example's gradient is then independent of the batch size.
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return logits.detach(), grad


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _logits_and_grad(model, x, y)[1]


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)


def fgsm(model, x, y, eps, generator=None):
    """Fast gradient sign method: one step of size eps along sign(grad)."""
    return _project(x + eps * _input_grad(model, x, y).sign(), x, eps).detach()


def pgd(model, x, y, eps, generator=None, *, steps: int = 20, alpha: float | None = None, alpha_rel: float = 0.25,
        random_start: bool = True, restarts: int = 1, early_stop: bool = False):
    """Projected gradient descent (Madry et al.) with random start and restarts.

    Step size ``alpha`` (absolute) or ``alpha_rel * eps``. With several restarts, each later restart
    attacks only the points no earlier restart has broken; the first adversarial point found is kept.
    ``early_stop`` (evaluation): a point stops moving as soon as it is misclassified. The logits of
    the current iterate come with its gradient, so this costs nothing, and it can only make the
    attack stronger: a success is kept instead of possibly being walked away from. Training wants
    the loss-maximising point instead, so the default is off.
    """
    a = alpha if alpha is not None else alpha_rel * eps
    best = x.clone()
    todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(max(1, restarts)):
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0, y0 = x[idx], y[idx]
        xa = x0
        if random_start:
            noise = torch.rand(x0.shape, generator=generator, device="cpu").to(x0.device)
            xa = _project(x0 + (2 * noise - 1) * eps, x0, eps)
        active = torch.arange(idx.numel(), device=x.device)  # positions in this restart still moving
        for _ in range(steps):
            logits, grad = _logits_and_grad(model, xa[active], y0[active])
            if early_stop:
                going = logits.argmax(1) == y0[active]
                active, grad = active[going], grad[going]
                if active.numel() == 0:
                    break
            xa = xa.clone()
            xa[active] = _project(xa[active] + a * grad.sign(), x0[active], eps).detach()
        with torch.no_grad():
            fooled = model(xa).argmax(1) != y0
        best[idx] = xa
        todo[idx[fooled]] = False
    return best.detach()


ATTACKS: dict[str, Callable[..., torch.Tensor]] = {"fgsm": fgsm, "pgd": pgd}


def make_attack(spec: dict[str, Any]) -> Attack:
    """``spec`` = ``{"name": "pgd", "steps": 20, ...}`` -> a callable with the common signature."""
    spec = dict(spec)
    name = spec.pop("name")
    if name not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    fn = ATTACKS[name]
    return lambda model, x, y, eps, generator=None: fn(model, x, y, eps, generator, **spec)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Predicted labels of uint8 images ``x`` (evaluated in batches on ``device``)."""
    with attack_mode(model):
        out = [model(x[i:i + batch_size].to(device).float().div_(255)).argmax(1).cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: list[float], attack: Attack, *,
                    batch_size: int = 256, device="cpu", seed: int = 0, on_batch: Callable[[], None] | None = None,
                    return_masks: bool = False) -> dict[str, Any]:
    """Clean and robust accuracy of ``model`` on uint8 images ``x`` for every epsilon of the grid.

    Returns ``{"clean_acc", "n", "per_eps": [{"eps", "robust_acc", "attacked", "seconds"}, ...]}`` in
    the order of ``eps_grid``. The random starts come from one generator seeded with ``seed``.
    ``return_masks`` adds ``masks``: eps -> bool tensor of the points still robust at that radius.
    """
    g = torch.Generator().manual_seed(seed)
    robust = (predict(model, x, batch_size, device) == y)
    clean_acc = robust.float().mean().item()
    per_eps, masks = {}, {}
    with attack_mode(model):
        for eps in sorted(set(float(e) for e in eps_grid)):
            t0, idx = time.perf_counter(), robust.nonzero().squeeze(1)
            if eps > 0:
                for i in range(0, idx.numel(), batch_size):
                    sel = idx[i:i + batch_size]
                    xb, yb = x[sel].to(device).float().div_(255), y[sel].to(device)
                    xa = attack(model, xb, yb, eps, g)
                    if not _in_ball(xa, xb, eps):
                        raise AssertionError(f"attack left the eps={eps} ball or [0,1]")
                    with torch.no_grad():
                        robust[sel[(model(xa).argmax(1) != yb).cpu()]] = False
                    if on_batch:
                        on_batch()
            per_eps[eps] = {"eps": eps, "robust_acc": robust.float().mean().item(), "attacked": int(idx.numel()), "seconds": round(time.perf_counter() - t0, 3)}
            masks[eps] = robust.clone()
    out = {"clean_acc": clean_acc, "n": int(x.shape[0]), "per_eps": [per_eps[float(e)] for e in eps_grid]}
    if return_masks:
        out["masks"] = masks
    return out


def _in_ball(xa: torch.Tensor, x: torch.Tensor, eps: float) -> bool:
    tol = 1e-6
    return bool(((xa - x).abs().max() <= eps + tol) and xa.min() >= 0 and xa.max() <= 1)


def parse_eps(value) -> float:
    """Epsilons in configs may be numbers or strings like "8/255"."""
    if isinstance(value, str):
        num, _, den = value.partition("/")
        return float(num) / float(den) if den else float(num)
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"epsilon must be finite and >= 0, got {value!r}")
    return v
