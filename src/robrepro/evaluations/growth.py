"""Perturbation growth ratio per block group, and accuracy under uniform noise (Kim et al., ECCV 2020).

Growth ratio of group g (the paper's measure of how much a group amplifies an adversarial
perturbation): with h_in, h_out the group's input and output, flattened per image,

    PGR_g = mean over images of ||h_out(x_adv) - h_out(x)||_p / ||h_in(x_adv) - h_in(x)||_p,  p in {1, 2},

x_adv an attack on the whole model (paper: grid PGD-20, eps 8/255, step 2/255, no random start).
The groups are the modules a network lists in ``block_groups``; their inputs and outputs are read by
forward hooks, so the model's own forward runs unchanged. Images whose perturbation does not reach
a group (zero denominator: the attack left them unchanged) have no ratio and are left out of the
mean; their number is reported. Everything runs in eval mode without gradients.

``ball_accuracy``: accuracy over ``copies`` uniform-noise copies x + U(-r, r) of each image, clipped
to [0, 1] (the paper's ``ball`` evaluation, 10 copies).

Job kinds declared here: ``growth`` (growth ratios of a trained model) and ``ball`` (accuracy under
uniform noise at a list of radii).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from ..attacks import attack_mode, input_domain, make_attack, to_input
from ..eps import parse_eps
from ..progress import Ticker, progress
from . import JobContext, register_kind

NORMS = (1, 2)


def block_groups(model: nn.Module) -> list[nn.Module]:
    """The group modules of the first submodule that lists them in ``block_groups``."""
    for m in model.modules():
        groups = getattr(m, "block_groups", None)
        if isinstance(groups, nn.ModuleList):
            return list(groups)
    raise ValueError("model has no block_groups to measure")


@contextlib.contextmanager
def _group_taps(groups: list[nn.Module]):
    """Record (input, output) of every group on each forward pass, flattened per image."""
    taps: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(groups)

    def hook(i):
        def fn(module, inputs, output):
            taps[i] = (inputs[0].detach().flatten(1), output.detach().flatten(1))

        return fn

    handles = [g.register_forward_hook(hook(i)) for i, g in enumerate(groups)]
    try:
        yield taps
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def group_growth_ratios(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, norms=NORMS) -> dict[int, torch.Tensor]:
    """Per-image growth ratios: ``{p: tensor (groups, images)}``, NaN where the group's input did not move.

    ``x`` and ``x_adv`` are model inputs (floats in the input box).
    """
    groups = block_groups(model)
    with attack_mode(model), _group_taps(groups) as taps:
        model(x)
        clean = list(taps)
        model(x_adv)
        adv = list(taps)
    out = {}
    for p in norms:
        rows = []
        for (cin, cout), (ain, aout) in zip(clean, adv):
            num = torch.linalg.vector_norm(aout - cout, ord=p, dim=1)
            den = torch.linalg.vector_norm(ain - cin, ord=p, dim=1)
            rows.append(torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.full_like(den, float("nan"))))
        out[p] = torch.stack(rows)
    return out


def growth_ratios(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack,
    eps: float,
    *,
    batch_size: int = 100,
    device="cpu",
    seed: int = 0,
    norms=NORMS,
    domain=(0.0, 1.0),
) -> dict:
    """Mean growth ratio per group and norm over stored samples ``x`` (uint8 images or floats).

    ``attack`` has the common l-inf signature; it attacks the whole model at radius ``eps``.
    Returns ``{"groups": G, "n": N, "per_group": [{"group": g (1-based), "L1": ..., "L2": ..., "n_used": ...}], "clean_acc", "adv_acc"}``.
    """
    g = torch.Generator().manual_seed(seed)
    sums = {p: None for p in norms}
    counts = None
    correct = correct_adv = 0
    ticker = Ticker("growth", -(-x.shape[0] // batch_size), "batches")
    with attack_mode(model), input_domain(*domain):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = to_input(x[i : i + batch_size], device), y[i : i + batch_size].to(device)
            xa = attack(model, xb, yb, eps, g)
            with torch.no_grad():
                correct += (model(xb).argmax(1) == yb).sum().item()
                correct_adv += (model(xa).argmax(1) == yb).sum().item()
            ratios = group_growth_ratios(model, xb, xa, norms)
            for p in norms:
                r = ratios[p]
                valid = ~torch.isnan(r)
                s = torch.where(valid, r, torch.zeros_like(r)).sum(1).double().cpu()
                sums[p] = s if sums[p] is None else sums[p] + s
                if p == norms[0]:
                    c = valid.sum(1).cpu()
                    counts = c if counts is None else counts + c
            ticker.update()
    n = int(x.shape[0])
    per_group = []
    for gi in range(len(counts)):
        row = {"group": gi + 1, "n_used": int(counts[gi])}
        for p in norms:
            row[f"L{p}"] = (sums[p][gi] / counts[gi]).item() if counts[gi] else float("nan")
        per_group.append(row)
    return {"groups": len(per_group), "n": n, "per_group": per_group, "clean_acc": correct / max(1, n), "adv_acc": correct_adv / max(1, n)}


@torch.no_grad()
def ball_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: float, *, copies: int = 10, batch_size: int = 256, device="cpu", seed: int = 0
) -> dict:
    """Accuracy over ``copies`` noisy copies x + U(-radius, radius) (clipped to [0, 1]) of every image."""
    g = torch.Generator().manual_seed(seed)
    correct = total = 0
    with attack_mode(model):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = to_input(x[i : i + batch_size], device), y[i : i + batch_size].to(device)
            for _ in range(copies):
                noise = torch.rand(xb.shape, generator=g).to(device)
                xn = (xb + (2 * noise - 1) * radius).clamp(0, 1)
                correct += (model(xn).argmax(1) == yb).sum().item()
                total += yb.numel()
    return {"radius": float(radius), "copies": int(copies), "n": int(x.shape[0]), "ball_acc": correct / max(1, total)}


@register_kind("growth", resources="attack")
def growth_job(ctx: JobContext) -> dict[str, Any]:
    """``params``: attack (spec), eps, batch_size, norms. Growth ratio of every block group of the model."""
    p = ctx.params
    x, y = ctx.test
    out = growth_ratios(
        ctx.model,
        x,
        y,
        make_attack(p["attack"]),
        parse_eps(p["eps"]),
        batch_size=p["batch_size"],
        device=ctx.device,
        seed=ctx.spec["seed"],
        norms=tuple(p.get("norms", NORMS)),
        domain=ctx.dataset.domain,
    )
    progress("growth", "; ".join(f"group {r['group']}: L1 {r['L1']:.3f} L2 {r['L2']:.3f}" for r in out["per_group"]))
    return {"attack": p["attack"], "eps": parse_eps(p["eps"]), "eps_label": str(p["eps"]), **out}


@register_kind("ball", resources="attack")
def ball_job(ctx: JobContext) -> dict[str, Any]:
    """``params``: radii (list), copies, batch_size. Accuracy under uniform noise at each radius."""
    p = ctx.params
    x, y = ctx.test
    ticker = Ticker("ball", len(p["radii"]), "radii")
    rows = []
    for r in p["radii"]:
        rows.append(
            {
                **ball_accuracy(ctx.model, x, y, parse_eps(r), copies=p["copies"], batch_size=p["batch_size"], device=ctx.device, seed=ctx.spec["seed"]),
                "label": str(r),
            }
        )
        ticker.update(note=f"r={r}: {rows[-1]['ball_acc']:.3f}")
    with torch.no_grad(), attack_mode(ctx.model):
        correct = sum(
            (ctx.model(to_input(x[i : i + p["batch_size"]], ctx.device)).argmax(1).cpu() == y[i : i + p["batch_size"]]).sum().item()
            for i in range(0, len(x), p["batch_size"])
        )
    progress("ball", ", ".join(f"r={r['label']}: {r['ball_acc']:.3f}" for r in rows))
    return {"clean_acc": correct / max(1, len(x)), "n": int(len(x)), "per_radius": rows}
