"""Robust accuracy of a trained model under one attack over a grid of radii (job kind ``attack``).

Besides the accuracies it records what the evaluation cost: the number of model calls with and
without input gradients, and, for models integrated by an adaptive ODE solver, the solver's function
evaluations (NFE) per clean forward pass and in total during the attack.

Adaptive solvers choose one step size for a whole batch, so an ODE net's output for an image
depends slightly on its batch-mates. The job measures that: it predicts the first
``batch_check`` test images once at the evaluation batch size and once one by one, and records how
many predictions flip and the largest logit change. Tables put the flip rate in their notes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..attacks import attack_mode, make_attack, predict, registry, robust_accuracy, to_input
from ..models.odenet import forward_nfe
from ..progress import Ticker, progress
from . import JobContext, register_kind


class CallCounter:
    """Counts a model's forward calls, split by whether the input needs a gradient (an attack's
    gradient passes), and collects the ODE solver's NFE of each call."""

    def __init__(self, model: nn.Module):
        self.model, self.grad_calls, self.plain_calls, self.nfe_grad, self.nfe_plain = model, 0, 0, [], []

    def _hook(self, module, inputs, output):
        grad = torch.is_grad_enabled() and inputs[0].requires_grad
        nfe = forward_nfe(self.model)
        if grad:
            self.grad_calls += 1
            if nfe is not None:
                self.nfe_grad.append(nfe)
        else:
            self.plain_calls += 1
            if nfe is not None:
                self.nfe_plain.append(nfe)

    def __enter__(self):
        self._handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


@torch.no_grad()
def batch_dependence(model: nn.Module, x: torch.Tensor, batch_size: int, device) -> dict[str, Any]:
    """Predictions of ``x`` at ``batch_size`` against one image at a time: flips and the largest logit change."""
    with attack_mode(model):
        big = torch.cat([model(to_input(x[i : i + batch_size], device)).cpu() for i in range(0, len(x), batch_size)])
        one = torch.cat([model(to_input(x[i : i + 1], device)).cpu() for i in range(len(x))])
    flipped = int((big.argmax(1) != one.argmax(1)).sum())
    return {
        "n_checked": len(x),
        "flipped": flipped,
        "flip_rate": flipped / max(1, len(x)),
        "max_logit_change": float((big - one).abs().max()) if len(x) else 0.0,
    }


@register_kind("attack", resources="attack")
def attack_job(ctx: JobContext) -> dict[str, Any]:
    """``params``: attack (spec), eps (floats), eps_labels, batch_size, independent (each radius
    attacked alone, default) and batch_check (images for the batch-dependence check of ODE nets)."""
    p = ctx.params
    model, (x, y) = ctx.model, ctx.test
    with CallCounter(model) as clean:
        predict(model, x, p["batch_size"], ctx.device)
    # Upper bound: every radius attacks at most every point (only the clean-correct ones in fact).
    n_radii = sum(1 for e in p["eps"] if float(e) > 0)
    ticker = Ticker("attack", n_radii * -(-len(y) // p["batch_size"]), "batches", bound=True)
    with CallCounter(model) as during:
        res = robust_accuracy(
            model,
            x,
            y,
            p["eps"],
            make_attack(p["attack"]),
            batch_size=p["batch_size"],
            device=ctx.device,
            seed=ctx.spec["seed"],
            independent=p.get("independent", True),
            domain=ctx.dataset.domain,
            on_batch=ticker.update,
        )
    is_ode = forward_nfe(model) is not None
    cost = {
        "attack_gradient_passes": during.grad_calls,
        "attack_forward_passes": during.plain_calls,
        "nfe_per_clean_forward_mean": (sum(clean.nfe_plain) / len(clean.nfe_plain)) if clean.nfe_plain else None,
        "attack_nfe_total": (sum(during.nfe_grad) + sum(during.nfe_plain)) if is_ode else None,
    }
    dep = batch_dependence(model, x[: p.get("batch_check", 0)], p["batch_size"], ctx.device) if is_ode and p.get("batch_check", 0) else None
    progress("attack", ", ".join(f"eps={e['eps']:.4g}: {e['robust_acc_cumulative']:.3f}" for e in res["per_eps"]) + f" (clean {res['clean_acc']:.3f})")
    threat = registry()[p["attack"]["name"]].threat
    return {"attack": p["attack"]["name"], "threat": threat, "eps_labels": p["eps_labels"], **res, "cost": cost, "batch_dependence": dep}
