"""Solver twins of ODE nets, and counting the vector field's evaluations (NFE) of a whole attack.

A *twin* is the same network, sharing every parameter and buffer, whose ODE blocks are integrated
by another solver: a fixed-step one (``rk4`` with a step size, ``euler``) or the same adaptive one
at a looser tolerance. Gradients of an adaptive solver can be masked by its step-size control
(steps accepted or rejected by an error estimate); a fixed-step twin has smooth, honest gradients of
nearly the same function. Adversarial points found on the twin and then evaluated on the original
model are a transfer attack that does not rely on the original's gradients.

Guarantees: the twin shares the original's parameters (no copy: training or loading one changes the
other); the original model is not modified.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

from torch import nn

from .odenet import ODEBlock, ODEFunc


class TwinBlock(nn.Module):
    """Integrates the vector field of ``block`` (shared) with another solver setting."""

    def __init__(self, block: ODEBlock, method: str, rtol: float, atol: float, step_size: float | None):
        super().__init__()
        self.block = block  # registered, so parameters stay reachable (and shared)
        self.method, self.rtol, self.atol, self.step_size = method, rtol, atol, step_size
        self.last_nfe = 0

    def forward(self, x):
        from torchdiffeq import odeint

        b = self.block
        options = {"step_size": self.step_size} if self.step_size else None
        b.func.nfe = 0
        out = odeint(b.func, x, b.t.to(x.dtype), rtol=self.rtol, atol=self.atol, method=self.method, options=options)[1]
        self.last_nfe = b.func.nfe
        return out


def ode_blocks(model: nn.Module) -> list[ODEBlock]:
    return [m for m in model.modules() if isinstance(m, ODEBlock)]


def solver_twin(
    model: nn.Module,
    *,
    method: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    step_size: float | None = None,
    n_steps: int | None = None,
) -> nn.Module:
    """The model with every ODE block integrated by ``method`` (default: its own) at ``rtol``/``atol``
    (default: its own). Fixed-grid methods (rk4, euler, midpoint) take ``step_size``, or ``n_steps``
    equal steps over each block's own time interval.

    Parameters are shared, not copied. A model without ODE blocks is returned as it is.
    """
    if not ode_blocks(model):
        return model

    def rebuild(mod: nn.Module) -> nn.Module:
        if isinstance(mod, ODEBlock):
            return TwinBlock(
                mod,
                method or mod.method,
                mod.rtol if rtol is None else rtol,
                mod.atol if atol is None else atol,
                float(mod.t[1] - mod.t[0]) / n_steps if n_steps else step_size,
            )
        if not any(isinstance(m, ODEBlock) for m in mod.modules()):
            return mod  # shared as is
        # A shallow copy with its own table of children: the original's table is left untouched.
        twin = copy.copy(mod)
        twin._modules = {name: rebuild(child) if child is not None else None for name, child in mod._modules.items()}
        return twin

    return rebuild(model)


@dataclass
class NFECount:
    """Vector-field evaluations counted so far (forward solves, and adjoint backward solves)."""

    evaluations: int = 0
    forward_calls: int = 0


@contextlib.contextmanager
def count_nfe(model: nn.Module):
    """Count every evaluation of every ODE vector field of ``model`` inside the block.

    Yields an :class:`NFECount`; ``forward_calls`` counts calls of the model itself (``evaluations``
    stays 0 for a model without ODE blocks). Backpropagating
    through the solver re-uses the forward graph (no new evaluations); the adjoint method's backward
    evaluations are counted.
    """
    count = NFECount()
    funcs = [m for m in model.modules() if isinstance(m, ODEFunc)]

    def on_eval(*_):
        count.evaluations += 1

    def on_call(*_):
        count.forward_calls += 1

    handles = [f.register_forward_pre_hook(on_eval) for f in funcs]
    handles.append(model.register_forward_pre_hook(on_call))
    try:
        yield count
    finally:
        for h in handles:
            h.remove()


def nfe_per_call(model: nn.Module) -> int | None:
    """NFE of the latest forward pass summed over blocks (twins included); None without ODE blocks."""
    blocks = [m for m in model.modules() if isinstance(m, (ODEBlock, TwinBlock))]
    # A twin's block is also a submodule of the twin: count the twins, and originals not wrapped.
    wrapped = {id(m.block) for m in blocks if isinstance(m, TwinBlock)}
    return sum(m.last_nfe for m in blocks if id(m) not in wrapped) if blocks else None
