"""Minimum-norm attacks over a test set (job kind ``min_norm``): per-image distances with per-batch
resume and a progress bar, and accuracy against a threshold.

A decision-based attack such as the Boundary Attack runs for hours on a slow model. The evaluation
therefore saves its state after every batch (atomically) and, when restarted with the same
``key``, continues after the last finished batch; every batch has its own generator (seeded from
``seed`` and the batch index), so a resumed run gives the same numbers as an uninterrupted one.

Accuracy at an l2 threshold tau is the fraction of points whose smallest adversarial distance
exceeds tau (misclassified points have distance 0; points where no adversarial point was found,
``inf``, are robust at every threshold).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attacks import attack_mode, input_domain, registry, to_input
from ..models.ode_twin import count_nfe
from ..progress import Ticker
from ..results import atomic_path
from . import JobContext, register_kind


def min_norm_distances(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Callable[..., dict[str, torch.Tensor]],
    *,
    batch_size: int,
    device="cpu",
    seed: int = 0,
    state_path: str | Path | None = None,
    key: str = "",
    domain: tuple[float | None, float | None] = (0.0, 1.0),
    progress_bar: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``attack(model, xb, yb, generator)`` (an ``l2-min`` attack) over ``x`` in batches.

    Returns ``{"distance": (n,), "queries": (n,), "batches_resumed": k}``. ``state_path``: where the
    partial state lives (deleted by the caller once the result is written); a state written under
    another ``key`` is ignored.
    """
    n = x.shape[0]
    n_batches = (n + batch_size - 1) // batch_size
    dist = torch.full((n,), float("nan"))
    queries = torch.zeros(n, dtype=torch.long)
    done = 0
    state = Path(state_path) if state_path else None
    if state and state.exists():
        st = torch.load(state, weights_only=True)
        if st.get("key") == key and st["distance"].shape[0] == n:
            dist, queries, done = st["distance"], st["queries"], int(st["done"])
    resumed = done
    # A line per batch: each is a long decision-based search (the attack reports its queries meanwhile).
    ticker = Ticker("min-norm", n_batches - done, "batches", every=0.0, enabled=progress_bar)
    with attack_mode(model), input_domain(*domain):
        for b in range(done, n_batches):
            sl = slice(b * batch_size, min(n, (b + 1) * batch_size))
            g = torch.Generator().manual_seed(seed * 1_000_003 + b)
            out = attack(model, to_input(x[sl], device), y[sl].to(device), g)
            dist[sl], queries[sl] = out["distance"].float().cpu(), out["queries"].cpu()
            if state:
                with atomic_path(state) as tmp:
                    torch.save({"key": key, "distance": dist, "queries": queries, "done": b + 1}, tmp)
            ticker.update(note=f"batch {b + 1}/{n_batches}, median distance {float(out['distance'].float().median()):.4g}")
            if on_batch:
                on_batch(b)
    return {"distance": dist, "queries": queries, "batches_resumed": resumed}


def accuracy_at_thresholds(distance: torch.Tensor, thresholds: list[float]) -> list[float]:
    """Fraction of points whose adversarial distance exceeds each threshold (same units as ``distance``)."""
    d = distance.float()
    return [float((d > t).float().mean()) for t in thresholds]


@register_kind("min_norm", resources="attack")
def min_norm_job(ctx: JobContext) -> dict[str, Any]:
    """``params``: attack (an ``l2-min`` attack spec), batch_size. Per-image distances (l2, input
    units [0, 1]; ``null`` where no adversarial point was found) and queries; resumable per batch."""
    p = ctx.params
    spec = dict(p["attack"])
    info = registry()[spec.pop("name")]
    if info.threat != "l2-min":
        raise ValueError(f"min_norm job: attack {info.name!r} is {info.threat}, not l2-min")

    def attack(model, xb, yb, g):
        return info.fn(model, xb, yb, g, **spec)

    model, (x, y) = ctx.model, ctx.test
    key = hashlib.sha256(json.dumps(ctx.spec, sort_keys=True, default=str).encode()).hexdigest()
    t0 = time.perf_counter()
    with count_nfe(model) as cost:
        res = min_norm_distances(
            model,
            x,
            y,
            attack,
            batch_size=p["batch_size"],
            device=ctx.device,
            seed=ctx.spec["seed"],
            state_path=ctx.partial,
            key=key,
            domain=ctx.dataset.domain,
            progress_bar=ctx.progress,
        )
    d = res["distance"]
    found = torch.isfinite(d) & (d > 0)
    return {
        "attack": info.name,
        "threat": info.threat,
        "access": info.access,
        "n": int(len(y)),
        "clean_acc": float((d > 0).float().mean()),
        "distance": [None if not math.isfinite(v) else v for v in d.tolist()],
        "queries": res["queries"].tolist(),
        "median_distance_found": float(d[found].median()) if found.any() else None,
        "not_found": int((~torch.isfinite(d)).sum()),
        "cost": {
            "seconds": round(time.perf_counter() - t0, 3),
            "model_calls": cost.forward_calls,
            "nfe": cost.evaluations,
            "batches_resumed": res["batches_resumed"],
        },
    }
