"""The certified >= attack check, recomputed from the per-point results a verify job stores.

Torch-free on purpose: the report runs it at aggregation time, where no model is loaded, so that a
broken bound fails a check that is not the verify job's own say-so.
"""

from __future__ import annotations

from typing import Any

from .masking import decode_mask


def soundness(e: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per bound, the certified >= attack check of one stored radius (an entry of ``per_eps``),
    recomputed from its per-point results: ``violations`` (points certified that the attack broke),
    ``verified_err`` and ``attack_err`` recomputed, and ``consistent`` (the stored errors equal the
    recomputed ones, both masks cover the same points, and the recomputed certified error is not
    below the attack's). Empty when the entry has no per-point results."""
    if "attack_robust" not in e or not isinstance(e.get("verified"), dict):
        return {}
    robust = decode_mask(e["attack_robust"])
    n = len(robust)
    attack_err = 1 - sum(robust) / n if n else 0.0
    out = {}
    for method, s in e["verified"].items():
        ver = decode_mask(s)
        err = 1 - sum(ver) / n if n else 0.0
        stored = (e.get("verified_err") or {}).get(method)
        # The stored errors are float32 means: equal counts agree to far better than half a point.
        half = 0.5 / max(n, 1)
        consistent = (
            n > 0
            # Masks of other lengths would pair the wrong points (zip stops at the shorter one).
            and len(ver) == n
            and stored is not None
            and abs(float(stored) - err) < half
            and abs(float(e.get("attack_err", -1)) - attack_err) < half
            and err >= attack_err - half
        )
        bad = [i for i, (v, r) in enumerate(zip(ver, robust)) if v and not r]
        out[method] = {"violations": len(bad), "first": bad[:10], "verified_err": err, "attack_err": attack_err, "consistent": consistent}
    return out
