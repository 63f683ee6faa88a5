"""Per-batch schedules of certified training as pure functions of the global step.

Nothing here keeps state: the value at a step is computed from the step alone, so a resumed run
sees exactly the values an uninterrupted run would (catalog section 5.4, CROWN-IBP
``eps_scheduler``). Steps are 0-based global batch indices; ``start`` and ``length`` are in epochs,
as in the CROWN-IBP configs ("schedule_start", "schedule_length"):

* ramp from ``s0 = start * steps_per_epoch`` to ``s1 = (start + length - 1) * steps_per_epoch``;
  before ``s0`` the value is ``eps_start`` (normally 0, the warm-up), from ``s1`` on ``eps_max``.
* ``linear``: straight line between the two.
* ``smoothed`` (DeepMind IBP): a power ``(s - s0)^4`` up to the mid point
  ``m = s0 + floor(0.25 (s1 - s0))``, then a straight line to ``eps_max`` at ``s1``, with the
  constant chosen so that value and slope are continuous at ``m``.

The CROWN-IBP loss mixes (catalog section 5.2) are functions of the scheduled epsilon:
``kappa = kappa_start + (kappa_end - kappa_start) * eps_t / eps_max`` (with ``kappa_start = 1`` this
is the catalog's ``(eps_max - eps_t (1 - kappa_end)) / eps_max``) and the same for ``beta``.
"""

from __future__ import annotations

SCHEDULES = ("linear", "smoothed")


def ramp_steps(start: float, length: float, steps_per_epoch: int) -> tuple[int, int]:
    """First and last step ``(s0, s1)`` of the ramp; ``length`` counts the epochs including ``start``."""
    if steps_per_epoch < 1:
        raise ValueError("steps_per_epoch must be >= 1")
    if start < 0 or length < 1:
        raise ValueError("need start >= 0 and length >= 1")
    return int(round(start * steps_per_epoch)), int(round((start + length - 1) * steps_per_epoch))


def linear_ramp(step: int, s0: int, s1: int, v0: float, v1: float) -> float:
    """``v0`` up to ``s0``, linear to ``v1`` at ``s1``, ``v1`` after (a zero-length ramp jumps at ``s0``)."""
    if step <= s0:
        return float(v0) if step < s0 or s1 > s0 else float(v1)
    if step >= s1:
        return float(v1)
    return float(v0 + (v1 - v0) * (step - s0) / (s1 - s0))


def smoothed_ramp(step: int, s0: int, s1: int, v0: float, v1: float, mid_point: float = 0.25, exponent: float = 4.0) -> float:
    """DeepMind's smooth ramp: ``v0 + alpha (s - s0)^exponent`` until the mid step, then linear to ``v1``.

    ``alpha = (v1 - v0) / ((s1 - m) b (m - s0)^(b-1) + (m - s0)^b)`` makes the two pieces meet with
    equal slope at ``m = s0 + floor(mid_point (s1 - s0))``. Ramps too short for a mid step are linear.
    """
    if exponent < 2 or not 0 <= mid_point <= 1:
        raise ValueError("need exponent >= 2 and 0 <= mid_point <= 1")
    m = s0 + int((s1 - s0) * mid_point)
    if m <= s0:
        return linear_ramp(step, s0, s1, v0, v1)
    if step <= s0:
        return float(v0)
    alpha = (v1 - v0) / ((s1 - m) * exponent * (m - s0) ** (exponent - 1) + (m - s0) ** exponent)
    if step < m:
        return float(v0 + alpha * (step - s0) ** exponent)
    return linear_ramp(step, m, s1, v0 + alpha * (m - s0) ** exponent, v1)


def epsilon(
    step: int,
    steps_per_epoch: int,
    eps_max: float,
    start: float,
    length: float,
    kind: str = "linear",
    eps_start: float = 0.0,
) -> float:
    """Scheduled training epsilon at global step ``step`` (``kind`` = ``linear`` | ``smoothed``)."""
    s0, s1 = ramp_steps(start, length, steps_per_epoch)
    if kind == "linear":
        return linear_ramp(step, s0, s1, eps_start, eps_max)
    if kind == "smoothed":
        return smoothed_ramp(step, s0, s1, eps_start, eps_max)
    raise ValueError(f"unknown epsilon schedule {kind!r}; choose from {SCHEDULES}")


def mix_weight(eps_t: float, eps_max: float, start_value: float, end_value: float) -> float:
    """A weight moving linearly from ``start_value`` (eps_t = 0) to ``end_value`` (eps_t = eps_max)."""
    frac = 0.0 if eps_max <= 0 else min(max(eps_t / eps_max, 0.0), 1.0)
    return float(start_value + (end_value - start_value) * frac)


def kappa(eps_t: float, eps_max: float, kappa_start: float = 1.0, kappa_end: float = 0.0) -> float:
    """Weight of the clean loss: ``kappa CE(clean) + (1 - kappa) L_rob`` (catalog 5.2)."""
    return mix_weight(eps_t, eps_max, kappa_start, kappa_end)


def beta(eps_t: float, eps_max: float, beta_start: float = 1.0, beta_end: float = 0.0) -> float:
    """Weight of the CROWN-IBP bound: ``beta m_crown_ibp + (1 - beta) m_ibp`` (catalog 5.2)."""
    return mix_weight(eps_t, eps_max, beta_start, beta_end)
