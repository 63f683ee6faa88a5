"""SSP blocks, networks, grid attacks, noise objective and growth ratio (Kim et al., ECCV 2020).

Claims tested: the blocks are the Runge-Kutta schemes they name (Shu-Osher form = Butcher
tableau; on a linear f the stability polynomial); they are strongly stable where the paper says
so; Ark reduces to SSP2; weight sharing keeps the parameter count; the growth ratio of an identity
group is 1; grid attacks return 8-bit images inside the ball and the box.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robrepro import models
from robrepro.attacks import attack_mode, make_attack, registry
from robrepro.attacks.grid import fgsm_grid, pgd_grid
from robrepro.evaluations.growth import ball_accuracy, group_growth_ratios, growth_ratios
from robrepro.models.ssp import ArkBlock, MidRK2Block, ResBlock, SSP2Block, SSP3Block, ark_coefficients, ark_step, make_block
from robrepro.objectives import Progress, build_objective
from robrepro.objectives.noise import noisy_copies

torch.set_default_dtype(torch.float32)


class Lin(nn.Module):
    """f(x) = x A^T: a linear residual function on vectors."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = a

    def forward(self, x):
        return x @ self.a.T


class Tanh(nn.Module):
    """A nonlinear f: tanh(x A^T) + b."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return torch.tanh(x @ self.a.T) + self.b


def _butcher(f, x, a, b):
    """Explicit RK step y = x + sum_i b_i k_i, k_i = f(x + sum_{j<i} a_ij k_j)."""
    ks = []
    for i in range(len(b)):
        ks.append(f(x + sum((a[i][j] * ks[j] for j in range(i)), torch.zeros_like(x))))
    return x + sum(bi * k for bi, k in zip(b, ks))


SSPRK22 = ([[], [1.0]], [0.5, 0.5])
SSPRK33 = ([[], [1.0], [0.25, 0.25]], [1 / 6, 1 / 6, 2 / 3])


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("f_kind", ["linear", "nonlinear"])
def test_shu_osher_blocks_equal_butcher_tableaux(f_kind):
    a = 0.5 * _rand(6, 6)
    f = Lin(a) if f_kind == "linear" else Tanh(a, 0.1 * _rand(6, seed=1))
    x = _rand(5, 6, seed=2)
    torch.testing.assert_close(SSP2Block(f)(x), _butcher(f, x, *SSPRK22), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(SSP3Block(f)(x), _butcher(f, x, *SSPRK33), rtol=1e-12, atol=1e-12)


def test_linear_f_gives_the_taylor_stability_polynomials():
    a = 0.5 * _rand(6, 6)
    x = _rand(5, 6, seed=2)
    eye = torch.eye(6, dtype=torch.float64)
    p2 = eye + a + a @ a / 2
    p3 = p2 + a @ a @ a / 6
    torch.testing.assert_close(SSP2Block(Lin(a))(x), x @ p2.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(SSP3Block(Lin(a))(x), x @ p3.T, rtol=1e-12, atol=1e-12)
    # Convex-combination formulas written out (paper Eqs. 9, 10)
    e = eye + a
    torch.testing.assert_close(SSP2Block(Lin(a))(x), x @ (0.5 * eye + 0.5 * e @ e).T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(SSP3Block(Lin(a))(x), x @ (eye / 3 + 2 / 3 * e @ (0.75 * eye + 0.25 * e @ e)).T, rtol=1e-12, atol=1e-12)


class L1Rotor(nn.Module):
    """f(z) = T(z) - z with T(z) = ||z||_1 * (e_2 if z_0 > z_1 else e_1): forward Euler E = T keeps ||.||_1."""

    def forward(self, z):
        n = z.abs().sum(1, keepdim=True)
        e1 = torch.tensor([1.0, 0.0], dtype=z.dtype)
        e2 = torch.tensor([0.0, 1.0], dtype=z.dtype)
        t = torch.where((z[:, 0] > z[:, 1])[:, None], e2, e1) * n
        return t - z


def _nonexpansive_linear(seed: int) -> nn.Module:
    """f(x) = (M - I) x with ||M||_inf <= 1, so ||x + f(x)||_inf <= ||x||_inf."""
    m = _rand(8, 8, seed=seed)
    m = m / m.abs().sum(1, keepdim=True)  # every row has l1 norm 1: ||M||_inf = 1
    return Lin(m - torch.eye(8, dtype=torch.float64))


def test_ssp_blocks_are_strongly_stable_where_forward_euler_is():
    x = _rand(256, 8, seed=3)
    for seed in range(5):
        f = _nonexpansive_linear(seed)
        inf = lambda v: v.abs().amax(1)  # noqa: E731
        assert torch.all(inf(ResBlock(f)(x)) <= inf(x) + 1e-12)  # the hypothesis holds
        for block in (SSP2Block(f), SSP3Block(f)):
            assert torch.all(inf(block(x)) <= inf(x) + 1e-12)
    # nonlinear f, l1 norm: Euler keeps the norm, SSP2/SSP3 do not increase it, the textbook midpoint does
    f = L1Rotor()
    z = torch.tensor([[1.0, 0.0], [0.3, -0.2], [-1.0, 2.0]], dtype=torch.float64)
    l1 = lambda v: v.abs().sum(1)  # noqa: E731
    torch.testing.assert_close(l1(ResBlock(f)(z)), l1(z))
    for block in (SSP2Block(f), SSP3Block(f), MidRK2Block(f, form="code")):
        assert torch.all(l1(block(z)) <= l1(z) + 1e-12)
    mid = l1(MidRK2Block(f, form="textbook")(z))
    assert mid[0] == pytest.approx(2.0)  # doubles the norm of e_1
    assert torch.any(mid > l1(z) + 0.5)


def test_midrk2_forms():
    f = Tanh(0.5 * _rand(4, 4), 0.0)
    x = _rand(3, 4, seed=1)
    half = x + 0.5 * f(x)
    torch.testing.assert_close(MidRK2Block(f)(x), half + f(half))
    torch.testing.assert_close(MidRK2Block(f, form="textbook")(x), x + f(half))
    # the textbook form is the Butcher tableau of the explicit midpoint rule
    torch.testing.assert_close(MidRK2Block(f, form="textbook")(x), _butcher(f, x, [[], [0.5]], [0.0, 1.0]))


def test_ark_with_beta10_one_alpha21_half_is_ssp2():
    assert ark_coefficients(1.0, 0.5) == (0.5, 0.0, 0.5)
    f = Tanh(0.5 * _rand(6, 6), 0.1 * _rand(6, seed=1))
    x = _rand(5, 6, seed=2)
    torch.testing.assert_close(ark_step(x, f, 1.0, 0.5), SSP2Block(f)(x), rtol=1e-12, atol=1e-12)
    # (1/2, 1) is the midpoint scheme: beta20 = -1/2 (not SSP), and second order (Butcher tableau)
    assert ark_coefficients(0.5, 1.0)[1] == pytest.approx(-0.5)
    torch.testing.assert_close(ark_step(x, f, 0.5, 1.0), _butcher(f, x, [[], [0.5]], [0.0, 1.0]), rtol=1e-12, atol=1e-12)


def test_ark_block_uses_sigmoid_coefficients_and_its_flags():
    f = Tanh(0.5 * _rand(6, 6).float(), 0.0)
    blk = ArkBlock(f, a21=0.25, b10=1.0, train_a21=False)
    x = _rand(5, 6, seed=2).float()
    s = torch.sigmoid
    torch.testing.assert_close(blk(x), ark_step(x, f, s(torch.tensor(1.0)), s(torch.tensor(0.25))))
    c = blk.coefficients()
    assert c["beta20"] < 0  # at the CIFAR initial values the scheme is not SSP
    assert not blk.a21.requires_grad and blk.b10.requires_grad


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_weight_sharing_keeps_the_resnet_parameter_count():
    res = _count(make_block("res", 16, "batch"))
    for kind in ("ssp2", "ssp3", "midrk2"):
        assert _count(make_block(kind, 16, "batch")) == res
    assert _count(make_block("ark", 16, "batch", ark={"a21": 0.0, "b10": 0.0})) == res + 2
    kw = dict(in_channels=3, image_size=32, num_classes=10, mean=[0.5] * 3, std=[0.5] * 3, n=2)
    nets = {b: models.build("ssp_cifar", block=b, **kw) for b in ("res", "ssp2", "ssp3", "midrk2", "ark")}
    assert {_count(nets[b]) for b in ("res", "ssp2", "ssp3", "midrk2")} == {_count(nets["res"])}
    assert _count(nets["ark"]) == _count(nets["res"]) + 2 * 2  # Ark only in group 1 (n = 2 blocks)
    kinds = [type(g[0]).__name__ for g in nets["ark"][1].block_groups]
    assert kinds == ["ArkBlock", "ResBlock", "SSP2Block"]


def test_ssp_block_calls_the_shared_function_once_per_stage():
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(1)
            return 0.1 * x

    for block, n in ((SSP2Block(Counting()), 2), (SSP3Block(Counting()), 3), (ArkBlock(Counting(), 0.0, 0.0), 2), (ResBlock(Counting()), 1)):
        calls.clear()
        block(torch.ones(1, 3))
        assert len(calls) == n


@pytest.mark.parametrize(
    "name, shape, classes, kw",
    [
        ("ssp_mnist", (2, 1, 28, 28), 10, dict(block="ark", n_blocks=2, channels=8)),
        ("ssp_cifar", (2, 3, 32, 32), 10, dict(block="ark", n=1, widths=(4, 8, 16))),
        ("ssp_tiny", (2, 3, 64, 64), 200, dict(block="ark", n=1, widths=(4, 8, 16, 32))),
    ],
)
def test_networks_shapes_and_groups(name, shape, classes, kw):
    m = models.build(name, in_channels=shape[1], image_size=shape[2], num_classes=classes, mean=[0.5] * shape[1], std=[0.5] * shape[1], **kw)
    assert m(torch.rand(shape)).shape == (2, classes)
    groups = m[1].block_groups
    assert len(groups) == {"ssp_mnist": 1, "ssp_cifar": 3, "ssp_tiny": 4}[name]
    if name == "ssp_tiny":
        assert [type(g[0]).__name__ for g in groups] == ["ArkBlock", "ResBlock", "SSP2Block", "SSP2Block"]


def _small_cifar(block="res", seed=0):
    torch.manual_seed(seed)
    return models.build(
        "ssp_cifar", in_channels=3, image_size=16, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3, block=block, n=1, widths=(4, 8, 16), init="default"
    ).eval()


def test_growth_ratio_of_an_identity_group_is_one():
    m = _small_cifar("ssp2")
    g2 = m[1].block_groups[1]
    with torch.no_grad():
        for blk in g2:
            blk.f[-1].weight.zero_()  # last conv of f -> 0: f = 0, every stage is the identity
            blk.f[-1].bias.zero_()
    x = torch.rand(6, 3, 16, 16)
    xa = (x + 0.03 * torch.randn(6, 3, 16, 16)).clamp(0, 1)
    r = group_growth_ratios(m, x, xa)
    torch.testing.assert_close(r[1][1], torch.ones(6))
    torch.testing.assert_close(r[2][1], torch.ones(6))
    assert not torch.allclose(r[2][2], torch.ones(6))  # a real group is not the identity: the test can fail


def test_growth_ratio_matches_a_direct_computation_and_skips_unmoved_images():
    m = _small_cifar("res")
    x = torch.rand(4, 3, 16, 16)
    xa = x.clone()
    xa[:3] = (x[:3] + 0.05 * torch.randn(3, 3, 16, 16)).clamp(0, 1)  # image 4 unchanged
    r = group_growth_ratios(m, x, xa)
    net = m[1]

    def h3(v):
        h = net.transitions[1](net.block_groups[1](net.transitions[0](net.block_groups[0](net.stem(m[0](v))))))
        return h, net.block_groups[2](h)

    with torch.no_grad():
        (ci, co), (ai, ao) = h3(x), h3(xa)
    ref = (ao - co).flatten(1).abs().sum(1) / (ai - ci).flatten(1).abs().sum(1)
    torch.testing.assert_close(r[1][2][:3], ref[:3])
    assert torch.isnan(r[1][:, 3]).all()


def test_growth_ratios_summary_runs_the_attack():
    m = _small_cifar("ssp3")
    x = (torch.rand(10, 3, 16, 16) * 255).to(torch.uint8)
    y = torch.randint(0, 10, (10,))
    out = growth_ratios(m, x, y, make_attack({"name": "pgd_grid", "steps": 2, "alpha": "2/255"}), 8 / 255, batch_size=4)
    assert out["groups"] == 3 and out["n"] == 10
    assert all(row["n_used"] == 10 and math.isfinite(row["L1"]) and math.isfinite(row["L2"]) for row in out["per_group"])


def _on_grid(v):
    return torch.allclose(v * 255, torch.round(v * 255), atol=1e-4)


@pytest.mark.parametrize("eps", [8 / 255, 0.3, 0.1])
def test_grid_attacks_stay_on_grid_in_ball_and_box(eps):
    m = _small_cifar("ssp2")
    x = torch.round(torch.rand(8, 3, 16, 16) * 255) / 255
    y = torch.randint(0, 10, (8,))
    g = torch.Generator().manual_seed(0)
    with attack_mode(m):
        outs = [fgsm_grid(m, x, y, eps), pgd_grid(m, x, y, eps, steps=3, alpha=eps / 4), pgd_grid(m, x, y, eps, g, steps=2, alpha=eps / 4, random_start=True)]
    for xa in outs:
        assert _on_grid(xa)
        assert (xa - x).abs().max() <= eps + 1e-6
        assert xa.min() >= 0 and xa.max() <= 1
        assert not torch.equal(xa, x)
    assert registry()["pgd_grid"].threat == "linf" and registry()["fgsm_grid"].threat == "linf"


def test_grid_pgd_increases_the_loss_and_has_no_random_start_by_default():
    m = _small_cifar("res")
    x = torch.round(torch.rand(16, 3, 16, 16) * 255) / 255
    y = torch.randint(0, 10, (16,))
    with attack_mode(m):
        a = pgd_grid(m, x, y, 8 / 255, steps=5, alpha=2 / 255)
        b = pgd_grid(m, x, y, 8 / 255, steps=5, alpha=2 / 255)
        ce = nn.functional.cross_entropy
        assert ce(m(a), y) > ce(m(x), y)
    assert torch.equal(a, b)  # deterministic: no random start


def test_ball_objective_and_noise():
    x = torch.rand(4, 1, 8, 8)
    xn = noisy_copies(x, 0.3, 5)
    assert xn.shape == (20, 1, 8, 8)
    assert (xn - x.repeat(5, 1, 1, 1)).abs().max() <= 0.3 + 1e-6
    assert xn.min() >= 0 and xn.max() <= 1
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    obj = build_objective({"name": "ball", "radius": 0.3, "copies": 5})
    loss, metrics = obj.loss(m, x, torch.arange(4), Progress(0, 0, 1, 1))
    loss.backward()
    assert m[1].weight.grad is not None and "noisy_acc" in metrics


def test_grid_pgd_training_objective_trains_and_leaves_params_trainable():
    m = _small_cifar("ssp2").train()
    obj = build_objective({"name": "pgd_grid_at", "eps": "8/255", "steps": 2, "alpha": "2/255"})
    loss, _ = obj.loss(m, torch.rand(4, 3, 16, 16), torch.arange(4), Progress(0, 0, 1, 1))
    loss.backward()
    assert all(p.requires_grad for p in m.parameters()) and m.training
    assert m[1].stem.weight.grad is not None


def test_ball_accuracy_of_a_constant_model():
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        m[1].weight.zero_()
        m[1].bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    x = (torch.rand(10, 1, 4, 4) * 255).to(torch.uint8)
    y = torch.tensor([1] * 7 + [0] * 3)
    out = ball_accuracy(m, x, y, 0.3, copies=10, batch_size=4)
    assert out["ball_acc"] == pytest.approx(0.7)
