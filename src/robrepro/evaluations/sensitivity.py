"""TRDNN sensitivity: the volume of an interval over-approximation of the reachable output set.

For a sample ``x`` and radius ``eps`` the bound engine gives a box ``[l, u]`` that contains every
output ``N(x')`` with ``x'`` in the eps-box around ``x`` intersected with the input domain
(:func:`robrepro.bounds.output_box`; logits, or probabilities through the exact softmax box). The
sensitivity is the box's volume ``S = prod_k (u_k - l_k)`` (catalog section 3.2); it is computed
in log space, ``log S = sum_k log(u_k - l_k)``, because ten widths under- or overflow easily. Over a
data set we report the mean of ``log S`` and the log of the mean volume
``log mean S = logsumexp(log S) - log n`` (the paper's robustness estimate is ``1 / mean S``).

Guarantee: the boxes are sound (they contain every reachable output), which
:func:`check_containment` verifies by sampling; ``log S = -inf`` only if some width is exactly 0.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from .. import bounds
from ..attacks import attack_mode, to_input
from ..progress import Ticker, progress
from . import JobContext, register_kind

SPACES = ("logits", "probs")


def log_widths(model: nn.Module, x: torch.Tensor, eps, *, space: str = "logits", method: str = "ibp", domain=(0.0, 1.0)) -> torch.Tensor:
    """``log(u - l)`` of the output box of every sample, shape ``(B, K)`` (differentiable)."""
    lo, hi = bounds.output_box(model, x, eps, space=space, method=method, domain=domain)
    return torch.log(hi - lo)


def log_volume(
    model: nn.Module, x: torch.Tensor, eps, *, space: str = "logits", method: str = "ibp", domain=(0.0, 1.0), width_floor: float = 0.0
) -> torch.Tensor:
    """Per-sample log-volume ``sum_k log(u_k - l_k)`` of the output box, shape ``(B,)`` (differentiable).

    ``width_floor > 0`` clamps the widths from below first (a training loss needs finite gradients
    where a width underflows to 0; a measurement keeps 0, i.e. ``-inf``).
    """
    lo, hi = bounds.output_box(model, x, eps, space=space, method=method, domain=domain)
    w = hi - lo
    if width_floor > 0:
        w = w.clamp(min=width_floor)
    return torch.log(w).sum(1)


def summarize(logvol: torch.Tensor) -> dict[str, float]:
    """Data-set summaries of per-sample log-volumes: mean log-volume and log of the mean volume."""
    logvol = logvol.double()
    n = logvol.numel()
    return {
        "n": n,
        "mean_log_volume": logvol.mean().item(),
        "log_mean_volume": (torch.logsumexp(logvol, 0) - math.log(n)).item(),
        "median_log_volume": logvol.median().item(),
    }


def sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    eps_grid: list[float],
    *,
    space: str = "logits",
    method: str = "ibp",
    domain=(0.0, 1.0),
    batch_size: int = 256,
    device="cpu",
) -> dict[str, Any]:
    """Per-sample log-volumes and their summaries for every eps (``x`` uint8 images or float features)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}")
    out = []
    with attack_mode(model), torch.no_grad():
        for eps in eps_grid:
            t0 = time.perf_counter()
            parts = [
                log_volume(model, to_input(x[i : i + batch_size], device), float(eps), space=space, method=method, domain=domain).cpu()
                for i in range(0, len(x), batch_size)
            ]
            lv = torch.cat(parts)
            out.append({"eps": float(eps), **summarize(lv), "log_volume": lv.tolist(), "seconds": round(time.perf_counter() - t0, 3)})
    return {"space": space, "method": method, "per_eps": out}


def sample_box(x: torch.Tensor, eps: float, n: int, generator: torch.Generator, domain=(0.0, 1.0)) -> torch.Tensor:
    """``n`` points in the (domain-clipped) eps-box of each sample, ``(B, n, ...)``: half random
    corners (where extremes of near-linear maps sit), half uniform."""
    lo, hi = bounds.input_box(x, eps, domain=domain)
    shape = (x.shape[0], n) + x.shape[1:]
    t = torch.rand(shape, generator=generator, dtype=x.dtype)
    corners = (torch.rand(shape, generator=generator, dtype=x.dtype) < 0.5).to(x.dtype)
    t[:, : n // 2] = corners[:, : n // 2]
    return lo.unsqueeze(1) + t * (hi - lo).unsqueeze(1)


def check_containment(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    n_per_sample: int,
    space: str = "logits",
    method: str = "ibp",
    domain=(0.0, 1.0),
    seed: int = 0,
    chunk: int = 4096,
) -> dict[str, Any]:
    """Sample outputs of ``n_per_sample`` points in each eps-box and count those outside the box.

    Returns ``{"outputs", "outside", "max_excess"}``; a sound box has ``outside == 0`` (``max_excess``
    is the largest distance by which a sampled output left its box, 0 when none did).
    """
    g = torch.Generator().manual_seed(seed)
    outside, total, excess = 0, 0, 0.0
    with attack_mode(model), torch.no_grad():
        lo, hi = bounds.output_box(model, x, eps, space=space, method=method, domain=domain)
        for i in range(x.shape[0]):
            done = 0
            while done < n_per_sample:
                m = min(chunk, n_per_sample - done)
                pts = sample_box(x[i : i + 1], eps, m, g, domain)[0]
                z = model(pts)
                if space == "probs" and not isinstance(bounds.network_ops(model)[-1], bounds.SoftmaxOp):
                    z = torch.softmax(z, 1)
                over = torch.maximum(lo[i] - z, z - hi[i]).amax(1)
                outside += int((over > 0).sum())
                excess = max(excess, float(over.max().clamp(min=0)))
                total += m
                done += m
    return {"outputs": total, "outside": outside, "max_excess": excess}


def verified_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: list[float], *, method: str, domain, batch_size: int, device
) -> list[float]:
    """Fraction of test points whose every margin is certified positive over the eps-box, per eps."""
    ok = torch.zeros(len(eps_grid))
    ticker = Ticker("verify", -(-len(y) // batch_size), "batches")
    with attack_mode(model):
        for i in range(0, len(y), batch_size):
            xb, yb = to_input(x[i : i + batch_size], device), y[i : i + batch_size].to(device)
            ok += bounds.verified_radii(model, xb, yb, eps_grid, method=method, domain=domain).sum(1).float().cpu()
            ticker.update()
    return (ok / max(1, len(y))).tolist()


@register_kind("sensitivity", resources="attack")
def sensitivity_job(ctx: JobContext) -> dict[str, Any]:
    """TRDNN sensitivity of a trained model on the test split.

    ``params``: ``eps`` (radii of the sensitivity), ``spaces`` (logits and/or probs), ``method``
    (bound of the box), ``verify_eps`` and ``verify_method`` (certified accuracy), ``containment``
    (``{"points": P, "per_point": N}``: N sampled outputs for each of the first P test points must
    lie in their boxes at the largest eps, else the job fails), ``batch_size``.
    """
    p = ctx.params
    model, (x, y) = ctx.model, ctx.test
    domain = ctx.dataset.domain
    out: dict[str, Any] = {"n": len(y), "domain": list(domain)}
    out["sensitivity"] = {}
    for s in p["spaces"]:
        t0 = time.perf_counter()
        out["sensitivity"][s] = sensitivity(model, x, p["eps"], space=s, method=p["method"], domain=domain, batch_size=p["batch_size"], device=ctx.device)
        progress("sensitivity", f"{s}: {len(p['eps'])} radii, {len(y)} points, {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    acc = verified_accuracy(model, x, y, p["verify_eps"], method=p["verify_method"], domain=domain, batch_size=p["batch_size"], device=ctx.device)
    out["verified"] = {"method": p["verify_method"], "per_eps": [{"eps": e, "verified_acc": a} for e, a in zip(p["verify_eps"], acc)]}
    out["verified"]["seconds"] = round(time.perf_counter() - t0, 3)
    c = p.get("containment") or {}
    if c.get("points", 0) > 0:
        xs = to_input(x[: c["points"]], ctx.device)
        checks = {
            s: check_containment(model, xs, max(p["eps"]), n_per_sample=c["per_point"], space=s, method=p["method"], domain=domain, seed=ctx.spec["seed"])
            for s in p["spaces"]
        }
        bad = {s: r for s, r in checks.items() if r["outside"]}
        if bad:
            raise AssertionError(f"unsound output box: sampled outputs outside it {bad}")
        out["containment"] = checks
    progress(
        "sensitivity", ", ".join(f"{s} eps={e['eps']:.4g}: mean log S {e['mean_log_volume']:.3f}" for s, r in out["sensitivity"].items() for e in r["per_eps"])
    )
    return out
