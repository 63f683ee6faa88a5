"""YOPO-m-n (Zhang et al. 2019, "You only propagate once"): adversarial training that re-attacks only
the first layer.

Write the network as g(f0(x)) with f0 its first layer. Per minibatch, from a random start eta in the
eps-ball, for each of ``outer`` (m) rounds:

1. one full forward/backward pass at x + eta: the gradients of the loss with respect to every
   parameter except the first layer's are accumulated, and the adjoint ("co-state")
   p = dL/dz at the first layer's output z = f0(x + eta) is kept;
2. ``inner`` (n) steps change only eta, ascending the Hamiltonian H(eta) = <p, f0(x + eta)> (to first
   order the loss, with p frozen) by sign steps of ``sigma``, projected onto the eps-ball and the
   input box; each step evaluates f0 alone, not the network;
3. the first layer's weights accumulate the gradient of H at the new eta, dH/dtheta0 = p . df0/dtheta0.

After the m rounds the optimiser takes one step with the accumulated gradients (m times a single
gradient: the YOPO paper scales the learning rate by 2/m to compensate). Defaults: YOPO-5-3,
eps 8/255, sigma 2/255 (the YOPO paper's CIFAR-10 setting).

The first layer: the model's first ``Conv2d`` in module order, which must be applied to the output of
the leading :class:`Normalize` layers (true of every convolutional model of the registry, e.g. the
PreAct-ResNet stem). This is checked on the first batch: the conv's recorded input must equal the
normalised input, otherwise the objective refuses to train.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import project
from ..eps import parse_eps
from ..models.layers import Normalize
from . import Objective, accuracy, register_objective


def first_layer(model: nn.Module) -> tuple[nn.Module, nn.Conv2d]:
    """(the leading Normalize layers, as one module; the first Conv2d) of ``model``."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ValueError("YOPO needs a model whose first layer is a Conv2d")
    lead = []
    for m in model if isinstance(model, nn.Sequential) else []:
        if not isinstance(m, Normalize):
            break
        lead.append(m)
    return nn.Sequential(*lead), first  # an empty Sequential is the identity


@register_objective
class YOPO(Objective):
    name = "yopo"
    owns_step = True

    def __init__(self, eps=8 / 255, sigma=2 / 255, outer: int = 5, inner: int = 3, grad_clip: float | None = None):
        self.eps, self.sigma = parse_eps(eps), parse_eps(sigma)
        self.outer, self.inner = int(outer), int(inner)
        self.grad_clip = grad_clip
        self._checked: set[int] = set()

    def hamiltonian_step(self, pre: nn.Module, first: nn.Module, x: torch.Tensor, eta: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """One inner step: eta <- proj(eta + sigma * sign(d<p, f0(x + eta)>/d eta)); only f0 is evaluated."""
        e = eta.detach().requires_grad_(True)
        with torch.enable_grad():
            h = (first(pre(x + e)) * p).sum()
            (g,) = torch.autograd.grad(h, e)
        return project(x + e.detach() + self.sigma * g.sign(), x, self.eps) - x

    def train_step(self, model, optimizer, x, y, progress):
        pre, first = first_layer(model)
        first_params = list(first.parameters())
        first_ids = {id(q) for q in first_params}
        rest = [q for q in model.parameters() if id(q) not in first_ids and q.requires_grad]
        saved: dict[str, torch.Tensor] = {}

        def keep_output(_m, inp, out):
            out.retain_grad()
            saved["z"], saved["in"] = out, inp[0]

        eta = project(x + (2 * torch.rand_like(x) - 1) * self.eps, x, self.eps) - x
        optimizer.zero_grad(set_to_none=True)
        losses, accs = [], []
        for _ in range(self.outer):
            handle = first.register_forward_hook(keep_output)
            try:
                logits = model(x + eta)
            finally:
                handle.remove()
            if id(model) not in self._checked:
                if not torch.allclose(saved["in"], pre(x + eta)):
                    raise ValueError("YOPO: the first Conv2d is not applied to the normalised input of this model")
                self._checked.add(id(model))
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at step {progress.step}")
            # Full backward: gradients for every layer but the first (accumulated over the rounds),
            # and the co-state p at the first layer's output.
            grads = torch.autograd.grad(loss, rest + [saved["z"]], allow_unused=True)
            for q, g in zip(rest, grads[:-1]):
                if g is not None:
                    q.grad = g if q.grad is None else q.grad + g
            p = grads[-1].detach()
            losses.append(loss.item())
            accs.append(accuracy(logits, y))
            for _ in range(self.inner):
                eta = self.hamiltonian_step(pre, first, x, eta, p).detach()
            # The first layer's weights: gradient of the Hamiltonian at the updated perturbation.
            h = (first(pre(x + eta)) * p).sum()
            for q, g in zip(first_params, torch.autograd.grad(h, first_params)):
                q.grad = g if q.grad is None else q.grad + g
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        optimizer.step()
        return {"loss": sum(losses) / len(losses), "adv_acc": sum(accs) / len(accs)}
