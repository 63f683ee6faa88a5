"""TRDNN objectives: the sensitivity loss, and an input-Jacobian regulariser as its sensitivity-based baseline.

* ``sensitivity`` (catalog section 3.2): ``CE + weight_decay * ||w||^2 + lambda_s * T`` where ``T``
  is the batch mean of the output box's log-volume (``sens_term: logvolume``) or of its volume
  (``volume``), in logit or probability space (``sens_space``), the box from IBP or CROWN-IBP
  (``method``) over the eps-box intersected with ``input_domain``. Whether the paper penalises the
  volume or its log, in which space, with which lambda_s / weight decay / eps: unknown; all are keys.
  ``eps`` may ramp up linearly over the first ``eps_ramp`` fraction of training (a pure function of
  the step, so resumed runs are identical). lambda_s = 0 skips the bound pass (plain training).
* ``jacobian_reg`` (Hoffman, Roberts and Yaida 2019): ``CE + weight_decay * ||w||^2 + lambda_j *
  ||J||_F^2`` with ``J = d logits / d x`` per sample, estimated without bias by ``n_proj`` random
  unit projections ``K * ||v^T J||^2`` (``v`` uniform on the sphere of the K outputs); the
  projections come from a generator seeded by ``(seed, step)``.

The weight decay here is part of the loss (so the loss equals the paper's objective and the
energy of the landscape search); leave the optimiser's own weight decay at 0 to avoid counting it twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..evaluations.sensitivity import SPACES, log_volume
from . import Objective, accuracy, register_objective

SENS_TERMS = ("logvolume", "volume")


def l2_penalty(model) -> torch.Tensor:
    """``||w||^2`` over every trainable parameter (weights and biases)."""
    return sum((p * p).sum() for p in model.parameters() if p.requires_grad)


@register_objective
class SensitivityLoss(Objective):
    name = "sensitivity"

    def __init__(
        self,
        *,
        eps: float,
        lambda_s: float = 0.0,
        sens_term: str = "logvolume",
        sens_space: str = "logits",
        method: str = "ibp",
        weight_decay: float = 0.0,
        input_domain=(0.0, 1.0),
        eps_ramp: float = 0.0,
        width_floor: float = 1e-12,
    ):
        super().__init__()
        if sens_term not in SENS_TERMS:
            raise ValueError(f"sens_term must be one of {SENS_TERMS}")
        if sens_space not in SPACES:
            raise ValueError(f"sens_space must be one of {SPACES}")
        if method not in ("ibp", "crown_ibp"):
            raise ValueError("method must be 'ibp' or 'crown_ibp' (a training loss)")
        if not 0.0 <= eps_ramp <= 1.0:
            raise ValueError("eps_ramp is a fraction of training in [0, 1]")
        self.eps, self.lambda_s, self.term, self.space, self.method = float(eps), float(lambda_s), sens_term, sens_space, method
        self.weight_decay, self.eps_ramp, self.width_floor = float(weight_decay), float(eps_ramp), float(width_floor)
        self.domain = tuple(input_domain) if input_domain is not None else (None, None)

    def current_eps(self, progress) -> float:
        if self.eps_ramp <= 0:
            return self.eps
        return self.eps * min(1.0, progress.fraction / self.eps_ramp)

    def sensitivity_term(self, model, x, eps) -> tuple[torch.Tensor, torch.Tensor]:
        """(the penalty, the per-sample log-volumes)."""
        lv = log_volume(model, x, eps, space=self.space, method=self.method, domain=self.domain, width_floor=self.width_floor)
        return (lv.mean() if self.term == "logvolume" else lv.exp().mean()), lv

    def loss(self, model, x, y, progress):
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        total = ce
        metrics = {"ce": ce.item(), "acc": accuracy(logits, y)}
        if self.weight_decay > 0:
            total = total + self.weight_decay * l2_penalty(model)
        eps = self.current_eps(progress)
        if self.lambda_s > 0 and eps > 0:
            term, lv = self.sensitivity_term(model, x, eps)
            total = total + self.lambda_s * term
            metrics.update(sens_term=term.item(), mean_log_volume=lv.mean().item(), eps=eps)
        metrics["loss"] = total.item()
        return total, metrics


@register_objective
class JacobianRegularizer(Objective):
    name = "jacobian_reg"

    def __init__(self, *, lambda_j: float = 0.01, n_proj: int = 1, weight_decay: float = 0.0, seed: int = 0):
        super().__init__()
        if n_proj < 1:
            raise ValueError("n_proj must be >= 1")
        self.lambda_j, self.n_proj, self.weight_decay, self.seed = float(lambda_j), int(n_proj), float(weight_decay), int(seed)

    def jacobian_sq_norm(self, logits: torch.Tensor, x: torch.Tensor, progress) -> torch.Tensor:
        """Unbiased estimate of the batch mean of ``||d logits / d x||_F^2`` (``x`` requires grad), differentiable in the weights."""
        B, K = logits.shape
        g = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + progress.step)
        est = logits.new_zeros(())
        for _ in range(self.n_proj):
            v = torch.randn(B, K, generator=g).to(logits)
            v = v / v.norm(dim=1, keepdim=True)
            (jv,) = torch.autograd.grad((logits * v).sum(), x, create_graph=True)
            est = est + K * jv.flatten(1).pow(2).sum(1).mean()
        return est / self.n_proj

    def loss(self, model, x, y, progress):
        x = x.detach().requires_grad_(self.lambda_j > 0)
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        total = ce
        metrics = {"ce": ce.item(), "acc": accuracy(logits, y)}
        if self.weight_decay > 0:
            total = total + self.weight_decay * l2_penalty(model)
        if self.lambda_j > 0:
            jac = self.jacobian_sq_norm(logits, x, progress)
            total = total + self.lambda_j * jac
            metrics["jacobian_sq"] = jac.item()
        metrics["loss"] = total.item()
        return total, metrics
