"""Attack options off the default path, checked by behaviour: which points a PGD restart attacks,
and DI2-FGSM's diversity probability and momentum. The masking verdicts rest on a strong PGD, so a
bug here would weaken them silently; each test pins what the option does, not just that it runs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robrepro.attacks import make_attack, project
from robrepro.attacks.linf import pgd


class _MarkedPoints(nn.Module):
    """Two kinds of points told apart by pixel 0: marked points (pixel 0 = 1) are broken by any
    step that raises their pixel sum; unmarked ones are unbreakable (constant logits, zero gradient).
    Every call records which kinds of points it saw."""

    def __init__(self):
        super().__init__()
        self.calls: list[torch.Tensor] = []

    def forward(self, x):
        flat = x.flatten(1)
        marked = (flat[:, 0] > 0.5).float()
        self.calls.append(marked.detach().clone())
        s = flat[:, 1:].sum(1)
        return torch.stack([torch.zeros_like(s), marked * (s - 1.0)], 1)


def _marked_batch():
    x = torch.full((4, 1, 2, 2), 0.3)
    x.view(4, -1)[:, 0] = torch.tensor([1.0, 0.0, 1.0, 0.0])  # points 0 and 2 breakable
    return x, torch.zeros(4, dtype=torch.long)


def test_pgd_later_restarts_attack_only_the_points_not_yet_broken():
    m = _MarkedPoints()
    x, y = _marked_batch()
    xa = pgd(m, x, y, 0.1, torch.Generator().manual_seed(0), steps=10, restarts=3)
    # The breakable points are broken and stay so; the unbreakable ones come back inside the ball.
    assert (m(xa).argmax(1) == torch.tensor([1, 0, 1, 0])).all()
    assert ((xa - x).abs() <= 0.1 + 1e-7).all()
    # Restart 1: 10 steps + the check of what is broken, all 4 points. Restarts 2 and 3: the 2
    # unbreakable points only (10 steps each, and a check after restart 2 only).
    sizes = [len(c) for c in m.calls[:-1]]
    assert sizes == [4] * 11 + [2] * 21
    assert all(c.sum() == 0 for c in m.calls[11:-1]), "a later restart re-attacked a point already broken"


def test_pgd_keeps_the_first_adversarial_point_of_an_earlier_restart():
    """A point broken by restart 1 keeps restart 1's iterate, even if a later restart would move it."""
    m = _MarkedPoints()
    x, y = _marked_batch()
    g = torch.Generator().manual_seed(0)
    one = pgd(m, x, y, 0.1, torch.Generator().manual_seed(0), steps=10, restarts=1)
    three = pgd(m, x, y, 0.1, g, steps=10, restarts=3)
    assert torch.equal(three[[0, 2]], one[[0, 2]])


class _Recorder(nn.Module):
    """A small conv net that records, for every gradient call, whether its input was transformed
    (a tensor computed from the iterate has a grad_fn; the iterate itself is a leaf)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 10 * 10, 3))
        self.transformed: list[bool] = []

    def forward(self, x):
        if x.requires_grad:
            self.transformed.append(x.grad_fn is not None)
        return self.net(x)


def _toy_images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 12, 12, generator=g), torch.randint(0, 3, (6,), generator=g)


def test_di2fgsm_diversity_probability_reaches_the_transform():
    x, y = _toy_images()
    seen = {}
    for p in (0.0, 0.5, 1.0):
        m = _Recorder()
        make_attack({"name": "di2fgsm", "steps": 40, "diversity_prob": p, "early_stop": False})(m, x, y, 0.05, torch.Generator().manual_seed(0))
        seen[p] = sum(m.transformed) / len(m.transformed)
    assert seen[0.0] == 0.0 and seen[1.0] == 1.0
    assert 0.2 < seen[0.5] < 0.8


def _reference_mi_fgsm(model, x, y, eps, alpha, steps, momentum):
    """Momentum iterative FGSM (Dong et al. 2018) written out, no input diversity, no early stop."""
    xa, g = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        xt = xa.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xt), y, reduction="sum"), xt)
        g = momentum * g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True)
        xa = project(xa + alpha * g.sign(), x, eps).detach()
    return xa


def test_di2fgsm_momentum_accumulates_normalised_gradients():
    x, y = _toy_images()
    m = _Recorder()
    out = {}
    for mu in (0.0, 1.0):
        spec = {"name": "di2fgsm", "steps": 8, "alpha": 0.02, "diversity_prob": 0.0, "momentum": mu, "early_stop": False}
        out[mu] = make_attack(spec)(m, x, y, 0.1, torch.Generator().manual_seed(0))
        ref = _reference_mi_fgsm(m, x, y, 0.1, 0.02, 8, mu)
        assert torch.allclose(out[mu], ref, atol=1e-6), f"momentum={mu}"
    assert not torch.allclose(out[0.0], out[1.0])  # momentum changes the path on this model


def test_pgd_early_stop_freezes_a_point_at_its_first_success():
    """Breakable points stop at the first iterate that fools the model: their pixel sum is past 1 by
    at most one step (3 pixels x alpha 0.025); without early stop they would go on to the ball's edge
    (sum 1.2). Later passes see the unbreakable points only."""
    m = _MarkedPoints()
    x, y = _marked_batch()
    xa = pgd(m, x, y, 0.1, None, steps=10, random_start=False, early_stop=True)
    s = xa.flatten(1)[:, 1:].sum(1)
    assert (m(xa).argmax(1) == torch.tensor([1, 0, 1, 0])).all()
    assert (s[[0, 2]] <= 1.0 + 3 * 0.025 + 1e-6).all()
    assert [len(c) for c in m.calls[-4:-1]] == [2, 2, 2]
    assert m.calls[-2].sum() == 0


def test_pgd_random_start_option_and_relative_step():
    """No random start: a point with zero gradient comes back exactly; with one, it moves. One step
    without random start is alpha_rel * eps * sign(grad)."""
    m = _MarkedPoints()
    x, y = _marked_batch()
    plain = pgd(m, x, y, 0.1, None, steps=3, random_start=False)
    assert torch.equal(plain[[1, 3]], x[[1, 3]])
    moved = pgd(m, x, y, 0.1, torch.Generator().manual_seed(0), steps=3, random_start=True)
    assert not torch.equal(moved[[1, 3]], x[[1, 3]])
    one = pgd(m, x, y, 0.1, None, steps=1, random_start=False, alpha_rel=0.3)
    step = torch.zeros_like(x)
    step.view(4, -1)[[0, 2], 1:] = 0.03  # d(sum)/dx = 1 on the breakable points' other pixels
    assert torch.allclose(one - x, step, atol=1e-7)
