"""Certified-training objectives: IBP, CROWN-IBP and GM-CROWN-IBP (catalog section 5).

All three share one loss shape (catalog 5.2/5.3)::

    loss = kappa * CE(model(x), y) + (1 - kappa) * L_rob
    L_rob(x, r) = CE(pad(-m_lower(x, r)), y)        # -m scattered into K logits, 0 at the true class
    m_lower = beta * m_crown_ibp + (1 - beta) * m_ibp

* ``ibp``: ``L_rob = L_rob(x, eps_t)`` with IBP margins (beta = 0); Gowal et al. kappa 1 -> 0.5.
* ``crown_ibp``: the beta-mixed CROWN-IBP margins; CROWN-IBP's "robust" method, kappa 0.
* ``gm_crown_ibp``: ``L_rob = sum_i c_i L_rob(x, r_i)`` over ``r_i = i eps / N`` with monotone
  weights (Liang et al. 2023, GM = c_i proportional to 1/r_i). The N radii are stacked along the
  batch and bounded in ONE call of the bound engine.

Schedules (eps, kappa, beta) come from :mod:`robrepro.schedules` and depend on the global step
only, so the objectives are stateless. Every objective reports eps, kappa, beta, the losses, clean
accuracy and the verified accuracy of the batch under the training bound at the current eps.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from .. import bounds, schedules
from ..eps import parse_eps
from . import Objective, Progress, accuracy, register_objective

GM_WEIGHTS = ("uniform", "inverse", "linear", "inverse_square", "exp", "reverse_rank")
GM_NORMS = ("sum1", "none")


# ----------------------------------------------------------------------------------------------
# Pieces shared by the objectives (public so tests and evaluation can use them)
# ----------------------------------------------------------------------------------------------


def robust_logits(m_lower: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Worst-case logits ``(B, K)``: ``-m_lower`` at the classes ``j != y``, 0 at ``y``.

    ``CE(robust_logits, y)`` is the robust cross-entropy of CROWN-IBP: an upper bound of the CE
    of every point in the perturbation set.
    """
    B, M = m_lower.shape
    idx = bounds.other_classes(y, M + 1)
    return m_lower.new_zeros(B, M + 1).scatter(1, idx, -m_lower)


def robust_ce(m_lower: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Robust cross-entropy ``CE([-m_lower]_pad, y)``.

    The mean is taken as ``.mean()`` of the per-sample losses, the same reduction GM applies per
    radius, so that GM with N = 1 reproduces CROWN-IBP bit for bit.
    """
    per_sample = F.cross_entropy(robust_logits(m_lower, y), y, reduction="none")
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', not {reduction!r}")


def gm_radii(n: int, eps_t: float, eps_max: float, relative_to: str = "current") -> list[float]:
    """The N sub-perturbation radii of GM, largest last.

    ``current`` (default, catalog [INF]): ``r_i = i eps_t / N``, following the eps warm-up.
    ``final``: the fixed grid ``r_i = i eps_max / N``, each clipped to the current ``eps_t`` (during
    the ramp the larger radii collapse onto ``eps_t``; the loss never looks beyond ``eps_t``).
    """
    if n < 1:
        raise ValueError("gm_n: GM needs N >= 1")
    if relative_to == "current":
        return [i * eps_t / n for i in range(1, n + 1)]
    if relative_to == "final":
        return [min(i * eps_max / n, eps_t) for i in range(1, n + 1)]
    raise ValueError(f"gm_r_relative_to must be 'current' or 'final', not {relative_to!r}")


def gm_weights(n: int, kind: str = "inverse", norm: str = "sum1") -> list[float]:
    """Weights ``c_1..c_N`` of the N radii, as functions of the relative radius ``t_i = r_i/eps = i/N``.

    ``uniform`` 1 (GRT), ``inverse`` 1/t_i (GM), ``linear`` t_i (increasing), ``inverse_square``
    1/t_i^2, ``exp`` exp(-t_i), ``reverse_rank`` N - i + 1. Using ``t_i`` instead of ``r_i`` makes
    the weights independent of eps (after ``sum1`` normalisation they coincide with the r-based
    ones) and defined at eps = 0. ``norm="sum1"`` divides by the sum; ``"none"`` keeps the raw values.
    """
    if n < 1:
        raise ValueError("gm_n: GM needs N >= 1")
    t = [i / n for i in range(1, n + 1)]
    raw = {
        "uniform": lambda i, ti: 1.0,
        "inverse": lambda i, ti: 1.0 / ti,
        "linear": lambda i, ti: ti,
        "inverse_square": lambda i, ti: 1.0 / ti**2,
        "exp": lambda i, ti: math.exp(-ti),
        "reverse_rank": lambda i, ti: float(n - i + 1),
    }
    if kind not in raw:
        raise ValueError(f"gm_weight: unknown GM weight {kind!r}; choose from {GM_WEIGHTS}")
    w = [raw[kind](i, ti) for i, ti in zip(range(1, n + 1), t)]
    if norm == "sum1":
        total = sum(w)
        return [v / total for v in w]
    if norm == "none":
        return w
    raise ValueError(f"gm_weight_norm must be one of {GM_NORMS}, not {norm!r}")


# ----------------------------------------------------------------------------------------------
# Objectives
# ----------------------------------------------------------------------------------------------


class _Certified(Objective):
    """Common schedule handling; subclasses define :meth:`robust_part`."""

    uses_beta: ClassVar[bool] = True
    # eps_max comes from each run's eps_train, not from the config: the config check builds the
    # objective with this stand-in to validate the configured parameters.
    plan_sets: ClassVar[dict] = {"eps_max": 0.1}

    def __init__(
        self,
        *,
        eps_max,
        schedule: str = "linear",
        start: float = 1,
        length: float = 61,
        eps_start=0.0,
        kappa_start: float = 0.0,
        kappa_end: float = 0.0,
        beta_start: float = 1.0,
        beta_end: float = 0.0,
        clip_input: bool = True,
    ):
        super().__init__()
        if schedule not in schedules.SCHEDULES:
            raise ValueError(f"schedule: unknown eps schedule {schedule!r}; choose from {schedules.SCHEDULES}")
        for name, v in (("kappa_start", kappa_start), ("kappa_end", kappa_end), ("beta_start", beta_start), ("beta_end", beta_end)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")
        schedules.ramp_steps(start, length, 1)  # validates start/length
        self.eps_max, self.eps_start = parse_eps(eps_max), parse_eps(eps_start)
        self.schedule, self.start, self.length = schedule, start, length
        self.kappa_start, self.kappa_end = float(kappa_start), float(kappa_end)
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        self.clip_input = clip_input

    def values(self, progress: Progress) -> dict[str, float]:
        """eps, kappa and beta at this step (pure function of the global step)."""
        eps = schedules.epsilon(progress.step, progress.steps_per_epoch, self.eps_max, self.start, self.length, self.schedule, self.eps_start)
        kappa = schedules.kappa(eps, self.eps_max, self.kappa_start, self.kappa_end)
        beta = schedules.beta(eps, self.eps_max, self.beta_start, self.beta_end) if self.uses_beta else 0.0
        return {"eps": eps, "kappa": kappa, "beta": beta}

    def robust_part(self, model, x, y, eps: float, beta: float, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Return (robust loss, margin lower bounds at ``eps`` (B, K-1), extra metrics)."""
        raise NotImplementedError

    def loss(self, model, x, y, progress):
        v = self.values(progress)
        kappa = v["kappa"]
        # The clean pass feeds the natural loss when kappa > 0 and the accuracy metric always.
        with torch.set_grad_enabled(torch.is_grad_enabled() and kappa > 0):
            logits = model(x)
        nat = F.cross_entropy(logits, y)
        rob, m_lower, extra = self.robust_part(model, x, y, v["eps"], v["beta"], logits.shape[1])
        if kappa >= 1:
            total = nat
        elif kappa <= 0:
            total = rob
        else:
            total = kappa * nat + (1 - kappa) * rob
        with torch.no_grad():
            correct = logits.argmax(1) == y
            ver = ((m_lower > 0).all(1) & correct).float().mean().item()
        metrics = {
            "loss": total.item(),
            "nat_loss": nat.item(),
            "rob_loss": rob.item(),
            "acc": accuracy(logits, y),
            "verified_acc": ver,
            **v,
            **extra,
        }
        return total, metrics


@register_objective
class IBPTraining(_Certified):
    """Gowal et al. IBP training: robust CE on IBP margins, kappa 1 -> 0.5 by default."""

    name = "ibp"
    uses_beta = False

    # Explicit parameters (no **kwargs): the configuration is checked against this signature, and
    # IBP has no beta (it is CROWN-IBP with beta = 0).
    def __init__(
        self,
        *,
        eps_max,
        schedule: str = "linear",
        start: float = 1,
        length: float = 61,
        eps_start=0.0,
        kappa_start: float = 1.0,
        kappa_end: float = 0.5,
        clip_input: bool = True,
    ):
        super().__init__(
            eps_max=eps_max,
            schedule=schedule,
            start=start,
            length=length,
            eps_start=eps_start,
            kappa_start=kappa_start,
            kappa_end=kappa_end,
            beta_start=0.0,
            beta_end=0.0,
            clip_input=clip_input,
        )

    def robust_part(self, model, x, y, eps, beta, num_classes):
        m = bounds.margin_bounds(model, x, y, eps, method="ibp", num_classes=num_classes, clip=self.clip_input)
        return robust_ce(m, y), m, {}


@register_objective
class CrownIBPTraining(_Certified):
    """CROWN-IBP (Zhang et al. 2020): beta-mixed CROWN-IBP/IBP margins, beta 1 -> 0, kappa 0."""

    name = "crown_ibp"

    def robust_part(self, model, x, y, eps, beta, num_classes):
        m = bounds.margin_bounds(model, x, y, eps, method="crown_ibp", beta=beta, num_classes=num_classes, clip=self.clip_input)
        return robust_ce(m, y), m, {}


@register_objective
class GMCrownIBPTraining(_Certified):
    """GM-CROWN-IBP (Liang et al. 2023): weighted robust CE over N sub-perturbations ``r_i = i eps/N``.

    Parameters beyond CROWN-IBP's: ``gm_n`` (N, default 5), ``gm_weight`` (one of
    :data:`GM_WEIGHTS`, default ``inverse`` = GM), ``gm_weight_norm`` (``sum1`` | ``none``),
    ``gm_r_relative_to`` (``current`` | ``final``, see :func:`gm_radii`) and ``gm_relaxation``
    (``per_radius``: every radius its own bounds, the paper's definition; ``shared``: one CROWN
    relaxation at the largest radius reused for the others, cheaper and looser, see
    :func:`robrepro.bounds.margin_bounds_radii`). N = 1 is exactly CROWN-IBP.
    """

    name = "gm_crown_ibp"

    def __init__(
        self,
        *,
        eps_max,
        schedule: str = "linear",
        start: float = 1,
        length: float = 61,
        eps_start=0.0,
        kappa_start: float = 0.0,
        kappa_end: float = 0.0,
        beta_start: float = 1.0,
        beta_end: float = 0.0,
        clip_input: bool = True,
        gm_n: int = 5,
        gm_weight: str = "inverse",
        gm_weight_norm: str = "sum1",
        gm_r_relative_to: str = "current",
        gm_relaxation: str = "per_radius",
    ):
        super().__init__(
            eps_max=eps_max,
            schedule=schedule,
            start=start,
            length=length,
            eps_start=eps_start,
            kappa_start=kappa_start,
            kappa_end=kappa_end,
            beta_start=beta_start,
            beta_end=beta_end,
            clip_input=clip_input,
        )
        self.weights = gm_weights(int(gm_n), gm_weight, gm_weight_norm)  # validates
        gm_radii(int(gm_n), 0.0, 1.0, gm_r_relative_to)  # validates
        if gm_relaxation not in ("per_radius", "shared"):
            raise ValueError("gm_relaxation must be 'per_radius' or 'shared'")
        self.n, self.relative_to, self.relaxation = int(gm_n), gm_r_relative_to, gm_relaxation

    def robust_part(self, model, x, y, eps, beta, num_classes):
        radii = gm_radii(self.n, eps, self.eps_max, self.relative_to)
        m = bounds.margin_bounds_radii(
            model, x, y, radii, method="crown_ibp", beta=beta, num_classes=num_classes, relaxation=self.relaxation, clip=self.clip_input
        )  # (N, B, K-1), one batched bound call
        N, B, M = m.shape
        per_radius = robust_ce(m.reshape(N * B, M), y.repeat(N), reduction="none").view(N, B).mean(1)
        w = torch.as_tensor(self.weights, dtype=per_radius.dtype, device=per_radius.device)
        rob = (w * per_radius).sum()
        extra = {"rob_loss_r1": per_radius[0].item(), "rob_loss_rN": per_radius[-1].item()}
        return rob, m[-1], extra
