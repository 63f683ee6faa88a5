"""Pluggable training objectives for the one training engine.

An objective turns a batch into a scalar loss. The engine owns everything else (data order, the
optimiser, LR schedule, checkpoints), so a new method (adversarial, certified, TRADES, YOPO, a
sensitivity penalty) is a new class here and no change to the loop. Objectives are stateless
functions of :class:`Progress`: any schedule (epsilon ramp, kappa, beta) is computed from the
global step, which is what makes a resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Progress:
    """Where training is: ``step`` is the global batch index (0-based), ``epoch`` the 0-based epoch."""

    epoch: int
    step: int
    steps_per_epoch: int
    epochs: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def fraction(self) -> float:
        """Fraction of training done before this step, in [0, 1)."""
        return self.step / max(1, self.total_steps)


class Objective:
    """Base class. Subclasses set ``name`` and implement :meth:`loss`."""

    name: ClassVar[str] = ""
    # True for objectives that run their own optimisation step (``train_step``) instead of
    # returning a loss; the engine's loop, checkpoints and schedules stay the same.
    owns_step: ClassVar[bool] = False
    # Stand-in values of parameters the plan sets per run rather than the config; the config check
    # builds every configured objective once with them (see robrepro.config).
    plan_sets: ClassVar[dict] = {}

    # No **kwargs: the configuration check reads a constructor's explicit parameters, and an objective
    # without its own __init__ takes none (a stray key is then an error at parse time, not in a job).
    def __init__(self) -> None:
        pass

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the batch loss (a scalar with grad) and batch metrics to log (floats)."""
        raise NotImplementedError

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, progress: Progress) -> dict[str, float]:
        """For ``owns_step`` objectives: zero the gradients, backpropagate, step ``optimizer``; return batch metrics."""
        raise NotImplementedError


_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    if not cls.name or cls.name in _OBJECTIVES:
        raise ValueError(f"objective name {cls.name!r} empty or registered twice")
    _OBJECTIVES[cls.name] = cls
    return cls


def build_objective(spec: dict[str, Any]) -> Objective:
    """``spec`` = ``{"name": ..., **params}`` as it comes from the config."""
    _load_all()
    spec = dict(spec)
    name = spec.pop("name")
    if name not in _OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; known: {', '.join(sorted(_OBJECTIVES))}")
    return _OBJECTIVES[name](**spec)


def available() -> list[str]:
    _load_all()
    return sorted(_OBJECTIVES)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


@register_objective
class Natural(Objective):
    """Plain cross-entropy on clean inputs."""

    name = "natural"

    def loss(self, model, x, y, progress):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "acc": accuracy(logits, y)}


def _load_all() -> None:
    # Every module of this package registers its objectives on import (robrepro.registry).
    from ..registry import import_submodules

    import_submodules(__name__)


def registry() -> dict[str, type[Objective]]:
    """Name -> class of every registered objective (a copy)."""
    _load_all()
    return dict(_OBJECTIVES)
