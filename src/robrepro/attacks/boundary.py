"""Boundary Attack (Brendel et al. 2018): decision-based, minimum-l2, through foolbox 3.

Threat model ``l2-min``: the attack does not work at a fixed radius; it starts from an adversarial
point (blended uniform noise, foolbox's default initialisation) and walks along the decision
boundary towards the clean image, using only the predicted label. The result per image is the
smallest l2 distance found (in input units, images in [0, 1]; ``inf`` where no adversarial start was
found) and the number of model queries spent. Accuracy at an l2 threshold tau is then the fraction
of clean-correct points whose distance exceeds tau.

Parameters are foolbox's (defaults: 25 000 steps, spherical and source steps 0.01, step adaptation
1.5); ``init_steps``/``init_directions`` are those of the blended-noise initialisation. Points whose
initialisation fails are reported with distance ``inf`` instead of aborting the batch (foolbox
raises). Randomness: foolbox draws from the global torch RNG; it is seeded from ``generator`` and
the caller's global RNG state is restored afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from ..progress import Ticker
from . import _BOX, register_attack
from ._torchattacks import seed_from


class _Counted(nn.Module):
    """The model, counting its calls (each call queries every point of the batch once) and
    reporting them to the log: one batch's search can run for many minutes."""

    def __init__(self, model: nn.Module, steps: int):
        super().__init__()
        self.model, self.calls = model, 0
        self.ticker = Ticker("boundary", None, "queries")
        self.steps = steps

    def forward(self, x):
        self.calls += 1
        self.ticker.update(note=f"{self.steps} steps of the Boundary Attack per batch")
        return self.model(x)


@register_attack("boundary", threat="l2-min", access="decision")
def boundary(
    model,
    x,
    y,
    generator=None,
    *,
    steps: int = 25000,
    spherical_step: float = 0.01,
    source_step: float = 0.01,
    source_step_convergance: float = 1e-7,
    step_adaptation: float = 1.5,
    update_stats_every_k: int = 10,
    init_steps: int = 50,
    init_directions: int = 1000,
):
    """Returns ``{"x_adv", "distance", "queries"}``; ``distance`` is 0 for points already misclassified."""
    import foolbox as fb

    lo, hi = _BOX.get()
    counted = _Counted(model, steps).eval()
    fmodel = fb.PyTorchModel(counted, bounds=(lo, hi), device=x.device)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed_from(generator))
        x_adv = x.clone()
        wrong = model(x).argmax(1) != y
        todo = (~wrong).nonzero().squeeze(1)
        found = wrong.clone()
        if todo.numel():
            xs, ys = x[todo], y[todo]
            init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=init_steps, directions=init_directions)
            starts = init.run(fmodel, xs, fb.criteria.Misclassification(ys))
            ok = model(starts).argmax(1) != ys
            if ok.any():
                attack = fb.attacks.BoundaryAttack(
                    steps=steps,
                    spherical_step=spherical_step,
                    source_step=source_step,
                    source_step_convergance=source_step_convergance,
                    step_adaptation=step_adaptation,
                    update_stats_every_k=update_stats_every_k,
                )
                sel = ok.nonzero().squeeze(1)
                advs = attack.run(fmodel, xs[sel], fb.criteria.Misclassification(ys[sel]), starting_points=starts[sel])
                fooled = model(advs).argmax(1) != ys[sel]
                x_adv[todo[sel[fooled]]] = advs[fooled]
                found[todo[sel[fooled]]] = True
        dist = (x_adv - x).flatten(1).norm(dim=1)
        dist[~found] = float("inf")
    return {"x_adv": x_adv, "distance": dist.cpu(), "queries": torch.full((x.shape[0],), counted.calls, dtype=torch.long)}
