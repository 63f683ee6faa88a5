"""The attack suite: a registry of attacks with their threat models, and robust accuracy over an
epsilon grid.

Threat model of the bounded attacks: l-inf perturbations inside the dataset's input box (images in
[0, 1]; normalisation is inside the model, so epsilon is in input units). Every attack is a module
of this package that registers itself with :func:`register_attack`, naming its threat model
(``linf`` bounded, or ``l2-min`` minimum-norm) and the access it needs; adding an attack is adding
a file. Bounded attacks return points in the eps-ball around x intersected with the input box.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..eps import parse_eps  # noqa: F401  (re-exported: the attacks' modules take it from here)

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, torch.Generator], torch.Tensor]


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Parameters without gradients for the duration; the train/eval mode is left as it is."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


@contextlib.contextmanager
def attack_mode(model: nn.Module):
    """Eval mode (BN running stats, no dropout) and frozen parameters while attacking; restored after."""
    was_training = model.training
    model.eval()
    try:
        with frozen(model):
            yield model
    finally:
        model.train(was_training)


def logits_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the gradient of the summed cross-entropy with respect to the input."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    # Summed, not averaged: each example's gradient is then independent of the batch size.
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return logits.detach(), grad


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits_and_grad(model, x, y)[1]


# The input box of the data being attacked (set by input_domain; images in [0, 1] by default).
_BOX: contextvars.ContextVar[tuple[float, float]] = contextvars.ContextVar("input_box", default=(0.0, 1.0))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Projection onto the l-inf ball of radius eps around x, intersected with the input box."""
    lo, hi = _BOX.get()
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), lo, hi)


def clip_to_domain(x: torch.Tensor) -> torch.Tensor:
    lo, hi = _BOX.get()
    return torch.clamp(x, lo, hi)


THREATS = ("linf", "l2-min")


@dataclass(frozen=True)
class AttackInfo:
    """A registered attack: the function, its threat model and the access it needs.

    ``threat``: ``linf`` attacks return a point in the eps-ball (signature
    ``fn(model, x, y, eps, generator, **params)``); ``l2-min`` attacks search the smallest l2
    perturbation that flips the label (signature ``fn(model, x, y, generator, **params)`` returning
    adversarial points, a distance per point and the queries spent).
    ``access``: white-box (gradients), black-box (scores) or decision (labels only).
    """

    name: str
    fn: Callable[..., Any]
    threat: str
    access: str


ATTACKS: dict[str, AttackInfo] = {}


def register_attack(name: str, *, threat: str = "linf", access: str = "white-box"):
    if threat not in THREATS:
        raise ValueError(f"attack {name!r}: unknown threat model {threat!r}")

    def deco(fn):
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} registered twice")
        ATTACKS[name] = AttackInfo(name, fn, threat, access)
        return fn

    return deco


def registry() -> dict[str, AttackInfo]:
    """Name -> :class:`AttackInfo` of every registered attack (modules of this package register on import)."""
    from ..registry import import_submodules

    import_submodules(__name__)
    return dict(ATTACKS)


def make_attack(spec: dict[str, Any]) -> Attack:
    """``spec`` = ``{"name": "pgd", "steps": 20, ...}`` -> a callable with the common signature."""
    spec = dict(spec)
    name = spec.pop("name")
    known = registry()
    if name not in known:
        raise KeyError(f"unknown attack {name!r}; known: {', '.join(sorted(known))}")
    fn = known[name].fn
    return lambda model, x, y, eps, generator=None: fn(model, x, y, eps, generator, **spec)


def to_input(x: torch.Tensor, device) -> torch.Tensor:
    """Stored samples -> model inputs: uint8 images become floats in [0, 1], float data pass as they are."""
    x = x.to(device)
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


@contextlib.contextmanager
def input_domain(lower: float | None, upper: float | None):
    """Inside this block, attacks project onto the dataset's input box (None: unbounded)."""
    token = _BOX.set((-math.inf if lower is None else lower, math.inf if upper is None else upper))
    try:
        yield
    finally:
        _BOX.reset(token)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Predicted labels of stored samples ``x`` (evaluated in batches on ``device``)."""
    with attack_mode(model):
        out = [model(to_input(x[i : i + batch_size], device)).argmax(1).cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_grid: list[float],
    attack: Attack,
    *,
    batch_size: int = 256,
    device="cpu",
    seed: int = 0,
    independent: bool = True,
    domain: tuple[float | None, float | None] = (0.0, 1.0),
    on_batch: Callable[[], None] | None = None,
    return_masks: bool = False,
) -> dict[str, Any]:
    """Clean and robust accuracy of ``model`` on stored samples ``x`` for every epsilon of the grid.

    Two measurements per radius:

    * ``robust_acc``: the attack at that radius alone, started from every clean-correct point (what
      papers report as "accuracy under attack X at eps"). Only with ``independent=True``.
    * ``robust_acc_cumulative``: the worst case up to that radius: a point counts as robust only if
      the attack failed at every radius of the grid up to eps. Any adversarial point found at a
      smaller radius also lies in the larger ball, so this is a valid, and never weaker, attack at eps.

    ``independent=False`` measures only the cumulative accuracy, attacking at each radius just the
    points that survived every smaller one: much cheaper on a fine grid, and enough where only the
    worst case matters (e.g. checking certificates). ``domain`` is the dataset's input box.
    Returns ``{"clean_acc", "n", "mode", "per_eps": [{"eps", "robust_acc", "robust_acc_cumulative",
    "attacked", "seconds"}, ...]}`` in the order of ``eps_grid``; random starts come from one generator
    seeded with ``seed``. ``return_masks`` adds ``masks`` (eps -> points robust up to eps, cumulative)
    and ``masks_alone`` (eps -> points robust at that radius attacked alone; only with ``independent``).
    """
    g = torch.Generator().manual_seed(seed)
    clean = predict(model, x, batch_size, device) == y
    cumulative = clean.clone()
    per_eps, masks, masks_alone = {}, {}, {}
    with attack_mode(model), input_domain(*domain):
        for eps in sorted(set(float(e) for e in eps_grid)):
            t0 = time.perf_counter()
            alone = clean.clone()
            idx = (clean if independent else cumulative).nonzero().squeeze(1)
            if eps > 0:
                for i in range(0, idx.numel(), batch_size):
                    sel = idx[i : i + batch_size]
                    xb, yb = to_input(x[sel], device), y[sel].to(device)
                    xa = attack(model, xb, yb, eps, g)
                    if not in_ball(xa, xb, eps):
                        raise AssertionError(f"attack left the eps={eps} ball or the input domain")
                    with torch.no_grad():
                        alone[sel[(model(xa).argmax(1) != yb).cpu()]] = False
                    if on_batch:
                        on_batch()
            cumulative &= alone
            per_eps[eps] = {
                "eps": eps,
                "robust_acc": alone.float().mean().item() if independent else None,
                "robust_acc_cumulative": cumulative.float().mean().item(),
                "attacked": int(idx.numel()),
                "seconds": round(time.perf_counter() - t0, 3),
            }
            masks[eps] = cumulative.clone()
            masks_alone[eps] = alone
    out = {
        "clean_acc": clean.float().mean().item(),
        "n": int(x.shape[0]),
        "mode": "independent" if independent else "cumulative",
        "per_eps": [per_eps[float(e)] for e in eps_grid],
    }
    if return_masks:
        out["masks"] = masks
        if independent:
            out["masks_alone"] = masks_alone
    return out


def in_ball(xa: torch.Tensor, x: torch.Tensor, eps: float) -> bool:
    """Whether every point of ``xa`` lies in the eps-ball around ``x`` and in the current input box."""
    tol = 1e-6
    lo, hi = _BOX.get()
    return bool(((xa - x).abs().max() <= eps + tol) and xa.min() >= lo - tol and xa.max() <= hi + tol)


from .linf import fgsm, pgd  # noqa: E402, F401  (re-exported; the module registers both)
