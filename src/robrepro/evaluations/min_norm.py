"""Minimum-norm attacks over a test set: per-image distances with per-batch resume, and accuracy
against a threshold.

A decision-based attack such as the Boundary Attack runs for hours on a slow model. The evaluation
therefore saves its state after every batch (atomically) and, when restarted with the same
``key``, continues after the last finished batch; every batch has its own generator (seeded from
``seed`` and the batch index), so a resumed run gives the same numbers as an uninterrupted one.

Accuracy at an l2 threshold tau is the fraction of points whose smallest adversarial distance
exceeds tau (misclassified points have distance 0; points where no adversarial point was found,
``inf``, are robust at every threshold).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attacks import attack_mode, input_domain, to_input
from ..results import atomic_path


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
    from tqdm.auto import tqdm

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
    bar = tqdm(
        total=n_batches, initial=done, disable=not progress_bar, desc="min-norm attack", file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 30.0
    )
    with attack_mode(model), input_domain(*domain):
        for b in range(done, n_batches):
            sl = slice(b * batch_size, min(n, (b + 1) * batch_size))
            g = torch.Generator().manual_seed(seed * 1_000_003 + b)
            out = attack(model, to_input(x[sl], device), y[sl].to(device), g)
            dist[sl], queries[sl] = out["distance"].float().cpu(), out["queries"].cpu()
            if state:
                with atomic_path(state) as tmp:
                    torch.save({"key": key, "distance": dist, "queries": queries, "done": b + 1}, tmp)
            bar.update(1)
            if on_batch:
                on_batch(b)
    bar.close()
    return {"distance": dist, "queries": queries, "batches_resumed": resumed}


def accuracy_at_thresholds(distance: torch.Tensor, thresholds: list[float]) -> list[float]:
    """Fraction of points whose adversarial distance exceeds each threshold (same units as ``distance``)."""
    d = distance.float()
    return [float((d > t).float().mean()) for t in thresholds]
