"""Perturbation radii as the configuration writes them: numbers or fractions such as ``"8/255"``.

A module of its own, free of torch, because the papers' declarations and the table builders read
radii too, and those run where torch is not imported (parsing the workflow, table and figure jobs).
"""

from __future__ import annotations

import math


def parse_eps(value) -> float:
    """Epsilons in configs may be numbers or strings like "8/255"; either must be finite and >= 0."""
    if isinstance(value, str):
        num, _, den = value.partition("/")
        try:
            v = float(num) / float(den) if den else float(num)
        except ZeroDivisionError:
            raise ValueError(f"epsilon {value!r} divides by zero") from None
    else:
        v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"epsilon must be finite and >= 0, got {value!r}")
    return v
