"""Training and evaluation perturbations checked by direction and symmetry, not only by invariants
(inside the ball, inside the box), which a perturbation of the wrong sign or a one-sided noise also
satisfies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robrepro import models
from robrepro.attacks.linf import pgd
from robrepro.evaluations.growth import ball_accuracy
from robrepro.objectives import Progress, build_objective
from robrepro.objectives.noise import noisy_copies
from robrepro.objectives.yopo import first_layer

P = Progress(0, 0, 1, 1)


def test_yopo_inner_step_ascends_the_hamiltonian_by_a_sign_step():
    """With f0 a 1x1 conv of weight w and co-state p, dH/deta = w p: one inner step from eta = 0
    (far from the ball's edge and the box) is exactly +sigma * sign(w p)."""
    first = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        first.weight.fill_(-2.0)
    x = torch.full((2, 1, 3, 3), 0.5)
    p = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    obj = build_objective({"name": "yopo", "eps": 0.1, "sigma": 0.01, "outer": 1, "inner": 1})
    eta0 = torch.zeros_like(x)
    eta1 = obj.hamiltonian_step(nn.Identity(), first, x, eta0, p)
    assert torch.allclose(eta1, 0.01 * torch.sign(-2.0 * p), atol=1e-7)

    def h(e):
        return (first(x + e) * p).sum()

    assert h(eta1) > h(eta0)


def test_yopo_inner_steps_raise_the_loss_over_their_start():
    """Over a whole training step the perturbation the inner steps reach is worse for the model than
    its random start (measured by the full loss at the last round's start)."""
    torch.manual_seed(0)
    m = nn.Sequential(models.Normalize([0.5], [0.5]), nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
    pre, first = first_layer(m)
    seen = []
    first.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach().clone()))
    obj = build_objective({"name": "yopo", "eps": 0.1, "sigma": 0.02, "outer": 2, "inner": 5})
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    obj.train_step(m, opt, x, y, P)
    # Calls of the first layer: [round start, 5 inner steps, weight gradient] per round.
    start, reached = seen[0], seen[1 + 5 + 1]  # the random start; the second round's start
    rest = m[2:]
    with torch.no_grad():
        assert F.cross_entropy(rest(first(reached)), y) > F.cross_entropy(rest(first(start)), y)


def _assert_symmetric_uniform(noise: torch.Tensor, radius: float):
    assert noise.min() < -0.9 * radius and noise.max() > 0.9 * radius
    assert noise.abs().max() <= radius + 1e-6
    assert abs(noise.mean().item()) < 0.02 * radius
    # Uniform, not concentrated: a quarter of the draws in each quarter of [-r, r].
    quarters = torch.histc(noise, bins=4, min=-radius, max=radius) / noise.numel()
    assert torch.allclose(quarters, torch.full((4,), 0.25), atol=0.02)


def test_ball_training_noise_is_symmetric_and_uniform():
    x = torch.full((50, 1, 8, 8), 0.5)  # mid-box: the clipping to [0, 1] never acts at radius 0.3
    torch.manual_seed(0)
    _assert_symmetric_uniform(noisy_copies(x, 0.3, 5) - 0.5, 0.3)


def test_ball_evaluation_noise_is_symmetric_and_uniform():
    seen = []

    class Spy(nn.Module):
        def forward(self, z):
            seen.append(z.clone())
            return torch.zeros(z.shape[0], 2)

    x = torch.full((40, 1, 8, 8), 0.5)
    out = ball_accuracy(Spy(), x, torch.zeros(40, dtype=torch.long), 0.3, copies=5, batch_size=40)
    assert out["ball_acc"] == 1.0 and len(seen) == 5
    _assert_symmetric_uniform(torch.cat(seen) - 0.5, 0.3)


def test_pgd_at_trains_on_the_pgd_maximiser_which_raises_the_loss():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.rand(6, 1, 4, 4) * 0.5 + 0.25, torch.randint(0, 3, (6,))
    obj = build_objective({"name": "pgd_at", "eps": 0.1, "steps": 4, "alpha": 0.03, "random_start": False})
    loss, _ = obj.loss(m, x, y, P)
    xa = pgd(m, x, y, 0.1, None, steps=4, alpha=0.03, random_start=False)
    with torch.no_grad():
        assert loss.item() == pytest.approx(F.cross_entropy(m(xa), y).item(), rel=1e-6)
        assert loss.item() > F.cross_entropy(m(x), y).item() + 1e-3
    # The first step is +alpha * sign(grad of the loss): an ascent step, exactly.
    xt = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(m(xt), y, reduction="sum"), xt)
    one = pgd(m, x, y, 0.1, None, steps=1, alpha=0.03, random_start=False)
    assert torch.allclose(one - x, 0.03 * g.sign(), atol=1e-7)


def test_trades_inner_step_ascends_the_kl_from_its_start():
    from robrepro.objectives.trades import trades_example, trades_kl

    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.rand(6, 1, 4, 4) * 0.5 + 0.25
    torch.manual_seed(3)
    start = trades_example(m, x, 0.1, steps=0, alpha=0.02)
    torch.manual_seed(3)
    one = trades_example(m, x, 0.1, steps=1, alpha=0.02)
    xt = start.clone().requires_grad_(True)
    with torch.no_grad():
        target = m(x)
    (g,) = torch.autograd.grad(trades_kl(m(xt), target), xt)
    assert torch.allclose(one - start, 0.02 * g.sign(), atol=1e-6)
