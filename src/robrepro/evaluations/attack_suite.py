"""Several attacks on one model over radii: per-attack robust accuracy, cost (time, model calls, ODE
function evaluations) and the attack's access, the raw material of the gradient-masking audit.

Each attack of the suite is measured with :func:`robrepro.attacks.robust_accuracy` (each radius
attacked alone, from every clean-correct point, on the same points for every attack), inside
:func:`robrepro.models.ode_twin.count_nfe`, so the cost of an attack on an ODE net is reported in
vector-field evaluations. Per radius, the points that survived (``robust``, one 0/1 character per
test point) are stored beside the accuracy: the audit's worst case over the suite is their
intersection. Progress (attack, radius, batch) goes to stderr. The state is saved after each attack (atomically) when ``state_path`` is
given: a killed audit resumes with the next attack; each attack has its own seed (from ``seed`` and
its position), so a resumed suite gives the numbers of an uninterrupted one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attacks import Attack, make_attack, registry, robust_accuracy
from ..models.ode_twin import count_nfe
from ..results import atomic_path
from .masking import encode_mask

ONE_STEP = ("fgsm",)


def is_one_step(spec: dict[str, Any]) -> bool:
    """Single gradient step: FGSM, or an iterative attack run for one step."""
    return spec["name"] in ONE_STEP or int(spec.get("steps", 0)) == 1


def with_progress(attack: Attack, label: str, n_points: int, batch_size: int) -> Attack:
    """``attack`` that prints one line per batch to stderr: the logs of long audits say where they are."""
    batches = max(1, -(-n_points // batch_size))
    state = {"eps": None, "batch": 0, "t0": time.perf_counter()}

    def run(model, x, y, eps, generator=None):
        if state["eps"] != eps:
            state.update(eps=eps, batch=0)
        state["batch"] += 1
        out = attack(model, x, y, eps, generator)
        print(f"[suite] {label} eps={eps:.4g} batch {state['batch']}/{batches} ({time.perf_counter() - state['t0']:.0f}s)", file=sys.stderr, flush=True)
        return out

    return run


def run_suite(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    suite: dict[str, dict[str, Any]],
    radii: list[float],
    *,
    batch_size: int,
    device="cpu",
    seed: int = 0,
    domain: tuple[float | None, float | None] = (0.0, 1.0),
    state_path: str | Path | None = None,
    key: str = "",
    extra_radii: dict[str, list[float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """``suite``: label -> attack spec (``{"name": ..., **params}``); every attack runs at ``radii``
    plus ``extra_radii[label]`` (e.g. the very large radius of the sanity check, for some attacks).

    Returns label -> ``{"attack", "threat", "access", "one_step", "clean_acc", "per_eps", "seconds",
    "model_calls", "nfe"}`` (``nfe`` 0 for a model without ODE blocks); each ``per_eps`` entry holds
    ``eps``, ``robust_acc``, ``robust`` (survivors, see :func:`robrepro.evaluations.masking.encode_mask`)
    and ``seconds``.
    """
    known = registry()
    state = Path(state_path) if state_path else None
    done: dict[str, Any] = {}
    if state and state.exists():
        saved = json.loads(state.read_text())
        if saved.get("key") == key:
            done = saved["results"]
    out: dict[str, dict[str, Any]] = {}
    for i, (label, spec) in enumerate(suite.items()):
        if label in done:
            out[label] = done[label]
            continue
        info = known[spec["name"]]
        if info.threat != "linf":
            raise ValueError(f"{label}: the audit compares l-inf attacks at fixed radii, {spec['name']!r} is {info.threat}")
        grid = sorted({float(e) for e in [*radii, *(extra_radii or {}).get(label, [])]})
        t0 = time.perf_counter()
        with count_nfe(model) as nfe:
            # Points attacked per radius: the clean-correct ones (known only inside; the test set bounds it).
            attack = with_progress(make_attack(spec), label, len(y), batch_size)
            res = robust_accuracy(model, x, y, grid, attack, batch_size=batch_size, device=device, seed=seed * 1009 + i, domain=domain, return_masks=True)
        out[label] = {
            "attack": dict(spec),
            "threat": info.threat,
            "access": info.access,
            "one_step": is_one_step(spec),
            "clean_acc": res["clean_acc"],
            "n": res["n"],
            "per_eps": [
                {"eps": e["eps"], "robust_acc": e["robust_acc"], "robust": encode_mask(res["masks_alone"][e["eps"]].tolist()), "seconds": e["seconds"]}
                for e in res["per_eps"]
            ],
            "seconds": round(time.perf_counter() - t0, 3),
            "model_calls": nfe.forward_calls,
            "nfe": nfe.evaluations,
        }
        if state:
            with atomic_path(state) as tmp:
                tmp.write_text(json.dumps({"key": key, "results": {**done, **out}}))
    return out
