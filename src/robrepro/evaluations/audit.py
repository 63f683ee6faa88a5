"""Gradient-masking audit of one trained model (job kind ``audit``).

Runs the paper's attacks and a suite of stronger ones on the same test points (each radius attacked
alone; see :mod:`robrepro.evaluations.attack_suite`): PGD with many more steps and restarts,
gradient-free score-based attacks (Square, SPSA), AutoAttack's standard suite, and transfer from the
model's solver twins (fixed-step, looser tolerance; skipped for a model without ODE blocks, where
the twin would be the model itself). The iterative white-box attacks named in ``large_eps_attacks``
also run at ``large_eps``. The payload holds every attack's accuracies, its survivors per point and
radius, and cost (seconds, model calls, ODE function evaluations); for a transfer leg, how often its
surrogate agrees with the model's clean predictions (``twin_agreement``); and, per paper attack and
radius, the audit row of :func:`robrepro.evaluations.masking.audit` on this model alone. The table
builder recomputes the rows from the stored per-point results with what one job cannot know (which
gradient-free legs failed on the undefended reference model). The suite resumes after the last
finished attack.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from typing import Any

from ..attacks import registry
from ..attacks.transfer import twin_agreement
from ..models.ode_twin import ode_blocks
from . import JobContext, register_kind
from .attack_suite import run_suite
from .masking import Thresholds, as_attack_results, audit


@register_kind(
    "audit",
    resources="attack",
)
def audit_job(ctx: JobContext) -> dict[str, Any]:
    """``params``: suite (label -> attack spec), radii, radii_labels, paper_attacks (labels of the
    suite), large_eps, large_eps_attacks, thresholds (tol, gap, near_zero), batch_size."""
    p = ctx.params
    model, (x, y) = ctx.model, ctx.test
    has_ode = bool(ode_blocks(model))
    suite = {k: v for k, v in p["suite"].items() if has_ode or v["name"] != "transfer_twin"}
    skipped = sorted(set(p["suite"]) - set(suite))
    key = hashlib.sha256(json.dumps(ctx.spec, sort_keys=True, default=str).encode()).hexdigest()
    results = run_suite(
        model,
        x,
        y,
        suite,
        p["radii"],
        batch_size=p["batch_size"],
        device=ctx.device,
        seed=ctx.spec["seed"],
        domain=ctx.dataset.domain,
        state_path=ctx.partial,
        key=key,
        extra_radii={a: [p["large_eps"]] for a in p["large_eps_attacks"] if a in suite},
    )
    th = Thresholds(**p["thresholds"])
    transfer = {k for k, v in suite.items() if registry()[v["name"]].access == "transfer"}
    for label in sorted(transfer):
        results[label]["twin_agreement"] = twin_agreement(model, x, suite[label], batch_size=p["batch_size"], device=ctx.device)
        print(f"[audit] {label}: surrogate agrees with the model on {100 * results[label]['twin_agreement']:.1f} % of clean predictions", file=sys.stderr)
    rows = []
    for paper_attack in p["paper_attacks"]:
        for row in audit(as_attack_results(results, th), paper_attack, p["radii"], large_eps=p["large_eps"], n=int(len(y)), th=th):
            rows.append({**asdict(row), "eps_label": p["radii_labels"][p["radii"].index(row.eps)]})
    for r in rows:
        print(
            f"[audit] {r['paper_attack']} eps={r['eps_label']}: {r['paper_acc']:.3f} -> worst case {r['worst_acc']:.3f} "
            f"(strongest single: {r['strongest_attack']} {r['strongest_acc']:.3f}): {r['verdict']}",
            file=sys.stderr,
        )
    return {"n": int(len(y)), "has_ode": has_ode, "suite": results, "skipped": skipped, "rows": rows, "thresholds": asdict(th), "large_eps": p["large_eps"]}
