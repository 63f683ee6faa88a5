"""Tests of the bound engine (robrepro.bounds): soundness, tightness against LPs, toy cases, goldens.

Everything runs in float64 on tiny networks so that a violation is a bug, not rounding.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

from robrepro import bounds
from robrepro.models import certified as cert
from robrepro.models.layers import Normalize

DT = torch.float64
MNIST_NORM = ([0.1307], [0.3081])
CIFAR_NORM = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])


def with_norm(body: nn.Sequential, mean, std) -> nn.Sequential:
    """What ``models.build`` returns, without going through the registry."""
    return nn.Sequential(Normalize(mean, std), *body).to(DT)


def _margins(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact margins z_y - z_j, j != y (increasing j), shape (B, K-1)."""
    idx = bounds.other_classes(y, z.shape[1])
    return z.gather(1, y[:, None]) - z.gather(1, idx)


def all_bounds(model, x, y, eps):
    """Lower margin bounds of the three methods plus the IBP upper bound."""
    K = bounds._num_outputs(bounds.network_layers(model))
    lo, hi = bounds.input_box(x, eps)
    C = bounds.margin_spec(y, K, DT)
    with torch.no_grad():
        lb_ibp, ub_ibp = bounds.ibp(model, lo, hi, C)
        return {
            "ibp": lb_ibp,
            "crown_ibp": bounds.crown_ibp(model, lo, hi, C),
            "crown": bounds.crown(model, lo, hi, C),
        }, ub_ibp


def sample_box(x, eps, n, gen):
    """n points per sample in the clipped eps-box: half corners (where minima of piecewise-linear
    functions sit), half uniform. Returns (B, n, ...)."""
    lo, hi = bounds.input_box(x, eps)
    B = x.shape[0]
    shape = (B, n) + x.shape[1:]
    u = torch.rand(shape, generator=gen, dtype=DT)
    corner = (torch.rand(shape, generator=gen, dtype=DT) < 0.5).to(DT)
    t = torch.cat([corner[:, : n // 2], u[:, n // 2 :]], 1)
    return lo.unsqueeze(1) + t * (hi - lo).unsqueeze(1)


def pgd_min_margins(model, x, y, eps, K, steps=30, gen=None):
    """Small PGD that minimises each margin z_y - z_j separately; returns the margins found (B, K-1)."""
    lo, hi = bounds.input_box(x, eps)
    B = x.shape[0]
    rep = lambda t: t.repeat_interleave(K - 1, 0)  # row b*(K-1)+j attacks margin j of sample b
    lo_r, hi_r, y_r = rep(lo), rep(hi), rep(y)
    j = torch.arange(K - 1).repeat(B)
    xa = lo_r + torch.rand(lo_r.shape, generator=gen, dtype=DT) * (hi_r - lo_r)
    step = (hi_r - lo_r).amax() / 4
    for k in range(steps):
        xa = xa.detach().requires_grad_(True)
        m = _margins(model(xa), y_r)[torch.arange(len(j)), j]
        (g,) = torch.autograd.grad(m.sum(), xa)
        xa = torch.minimum(torch.maximum(xa - step * g.sign(), lo_r), hi_r)
        if k == steps // 2:
            step = step / 4
    with torch.no_grad():
        m = _margins(model(xa), y_r)[torch.arange(len(j)), j]
    return m.view(B, K - 1)


def unstable_count(model, x, eps) -> int:
    lo, hi = bounds.input_box(x, eps)
    with torch.no_grad():
        return sum(int(((l < 0) & (u > 0)).sum()) for l, u in bounds.intermediate_bounds(model, lo, hi))


# ----------------------------------------------------------------------------------------------
# Soundness on sampled and PGD points
# ----------------------------------------------------------------------------------------------

SOUNDNESS_CASES = [
    # (name, body builder, (C, H), normalisation, eps, samples per point)
    ("mlp-mnistlike", lambda: cert.mlp(1, 6, 10, hidden_sizes=(12, 8)), (1, 6), MNIST_NORM, 0.05, 8000),
    ("dm_small-mnist", lambda: cert.dm_small(1, 28, 10, width=0.125, linear_size=16), (1, 28), MNIST_NORM, 0.02, 6000),
    ("cnn2-cifar", lambda: cert.crownibp_cnn_2layer(3, 32, 10, width=0.5, linear_size=12), (3, 32), CIFAR_NORM, 0.004, 6000),
    ("dm_large-cifarlike", lambda: cert.dm_large(3, 8, 10, width=1 / 32, linear_size=12), (3, 8), CIFAR_NORM, 0.02, 6000),
]


@pytest.mark.parametrize("name,make,geom,norm,eps,n", SOUNDNESS_CASES, ids=[c[0] for c in SOUNDNESS_CASES])
def test_bounds_contain_sampled_and_pgd_outputs(name, make, geom, norm, eps, n):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = with_norm(make(), *norm)
    c, s = geom
    x = torch.rand(4, c, s, s, generator=gen, dtype=DT)
    y = torch.tensor([0, 3, 7, 9])
    K = 10
    assert unstable_count(model, x, eps) > 0, "test would be vacuous without unstable neurons"
    lbs, ub = all_bounds(model, x, y, eps)
    for lb in lbs.values():
        assert torch.isfinite(lb).all()

    pts = sample_box(x, eps, n, gen)  # (B, n, C, H, W): 4 * n points per model
    with torch.no_grad():
        z = model(pts.flatten(0, 1)).view(4, n, K)
    m = _margins(z.flatten(0, 1), y.repeat_interleave(n)).view(4, n, K - 1)
    m_pgd = pgd_min_margins(model, x, y, eps, K, gen=gen)
    lowest = torch.minimum(m.amin(1), m_pgd)
    tol = 1e-9
    for method, lb in lbs.items():
        bad = (lb > lowest + tol).sum().item()
        assert bad == 0, f"{method}: {bad} margins below the lower bound"
    assert (m.amax(1) <= ub + tol).all(), "IBP upper bound violated"
    # PGD may only get closer to the bounds than random points (sanity check of the attack).
    assert (m_pgd <= m.amin(1) + 1e-9).float().mean() > 0.9

    # The plain-output IBP box (no C) contains every sampled logit vector too.
    lo, hi = bounds.input_box(x, eps)
    with torch.no_grad():
        zl, zu = bounds.ibp(model, lo, hi)
    assert (z >= zl.unsqueeze(1) - tol).all() and (z <= zu.unsqueeze(1) + tol).all()


def test_total_sampled_points_at_least_1e5():
    assert sum(4 * case[-1] for case in SOUNDNESS_CASES) >= 100_000


def test_float32_bounds_sound_on_dm_small_cifar():
    """The training dtype: bounds of a float32 DM-small hold on sampled points (small tolerance)."""
    torch.manual_seed(3)
    model = nn.Sequential(Normalize(*CIFAR_NORM), *cert.dm_small(3, 32, 10, width=0.25, linear_size=16))
    x, y = torch.rand(3, 3, 32, 32), torch.tensor([1, 2, 3])
    eps = 2 / 255
    lo, hi = bounds.input_box(x, eps)
    C = bounds.margin_spec(y, 10)
    with torch.no_grad():
        lbs = [bounds.ibp(model, lo, hi, C)[0], bounds.crown_ibp(model, lo, hi, C)]
        pts = lo.unsqueeze(1) + torch.rand(3, 2000, 3, 32, 32) * (hi - lo).unsqueeze(1)
        m = _margins(model(pts.flatten(0, 1)), y.repeat_interleave(2000)).view(3, 2000, 9).amin(1)
    for lb in lbs:
        assert lb.dtype == torch.float32
        assert (lb <= m + 1e-4).all()


# ----------------------------------------------------------------------------------------------
# Tightness against LPs on tiny MLPs
# ----------------------------------------------------------------------------------------------


def mlp_model(sizes, seed, mean=0.3, std=0.7):
    """Normalize -> Flatten -> Linear/ReLU ... -> Linear on inputs of shape (1, 1, sizes[0])."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [Normalize([mean], [std]), nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).to(DT)


def affine_layers(model):
    """(W, b) of every Linear with Normalize folded into the first one (numpy)."""
    norm = model[0]
    lins = [m for m in model if isinstance(m, nn.Linear)]
    Ws = [l.weight.detach().numpy().copy() for l in lins]
    bs = [l.bias.detach().numpy().copy() for l in lins]
    mean, std = norm.mean.item(), norm.std.item()
    bs[0] = bs[0] - Ws[0].sum(1) * mean / std
    Ws[0] = Ws[0] / std
    return Ws, bs


def triangle_lp(Ws, bs, lo, hi, pre, c):
    """min c.z over the triangle relaxation of the MLP, with pre-activation bounds ``pre``.

    Variables: x, then (z_k, a_k) per hidden layer; z_k = W_k a_{k-1} + b_k, z_k in [l, u], and per
    neuron a = 0 (u <= 0), a = z (l >= 0), else a >= 0, a >= z, a <= u (z - l) / (u - l).
    """
    n0 = len(lo)
    hidden = [W.shape[0] for W in Ws[:-1]]
    nvar = n0 + 2 * sum(hidden)
    A_eq, b_eq, A_ub, b_ub = [], [], [], []
    var_bounds = [(lo[i], hi[i]) for i in range(n0)]
    prev = list(range(n0))
    off = n0
    for k, h in enumerate(hidden):
        z_idx, a_idx = list(range(off, off + h)), list(range(off + h, off + 2 * h))
        off += 2 * h
        l, u = pre[k]
        for i in range(h):
            row = np.zeros(nvar)
            row[z_idx[i]] = 1.0
            row[prev] = -Ws[k][i]
            A_eq.append(row), b_eq.append(bs[k][i])
            if u[i] <= 0:
                row = np.zeros(nvar)
                row[a_idx[i]] = 1.0
                A_eq.append(row), b_eq.append(0.0)
            elif l[i] >= 0:
                row = np.zeros(nvar)
                row[a_idx[i]] = 1.0
                row[z_idx[i]] = -1.0
                A_eq.append(row), b_eq.append(0.0)
            else:
                row = np.zeros(nvar)
                row[z_idx[i]] = 1.0
                row[a_idx[i]] = -1.0  # z - a <= 0
                A_ub.append(row), b_ub.append(0.0)
                s = u[i] / (u[i] - l[i])
                row = np.zeros(nvar)
                row[a_idx[i]] = 1.0
                row[z_idx[i]] = -s  # a - s z <= -s l
                A_ub.append(row), b_ub.append(-s * l[i])
        var_bounds += [(l[i], u[i]) for i in range(h)] + [(0.0, None)] * h
        prev = a_idx
    obj = np.zeros(nvar)
    obj[prev] = c @ Ws[-1]
    res = linprog(obj, A_ub=np.array(A_ub) if A_ub else None, b_ub=b_ub or None, A_eq=np.array(A_eq), b_eq=b_eq, bounds=var_bounds, method="highs")
    assert res.status == 0, res.message
    return res.fun + c @ bs[-1]


def exact_min_one_hidden(Ws, bs, lo, hi, c):
    """Exact min of c.z for a 1-hidden-layer ReLU net: min over activation patterns of an LP on the
    pattern's region (empty regions are skipped). Returns (value, minimiser)."""
    W1, W2 = Ws
    b1, b2 = bs
    best, arg = np.inf, None
    for pattern in itertools.product([0.0, 1.0], repeat=W1.shape[0]):
        p = np.array(pattern)
        obj = (c @ W2 * p) @ W1
        const = (c @ W2 * p) @ b1 + c @ b2
        sign = np.where(p > 0, -1.0, 1.0)  # active: -(W1 x + b1) <= 0, inactive: W1 x + b1 <= 0
        res = linprog(obj, A_ub=sign[:, None] * W1, b_ub=-sign * b1, bounds=list(zip(lo, hi)), method="highs")
        if res.status == 0 and res.fun + const < best:
            best, arg = res.fun + const, res.x
    return best, arg


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_one_hidden_layer_relaxed_le_lp_le_exact_le_sampled(seed):
    model = mlp_model([3, 5, 3], seed)
    Ws, bs = affine_layers(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, 1, 3, generator=gen, dtype=DT)
    y = torch.tensor([0, 2])
    eps = 0.35
    lbs, _ = all_bounds(model, x, y, eps)
    lo, hi = bounds.input_box(x, eps)
    with torch.no_grad():
        pre = bounds.intermediate_bounds(model, lo, hi, "ibp")
    pts = sample_box(x, eps, 20000, gen)
    with torch.no_grad():
        m_s = _margins(model(pts.flatten(0, 1)), y.repeat_interleave(20000)).view(2, 20000, 2).amin(1)
    C = bounds.margin_spec(y, 3, DT)
    n_unstable = 0
    for b in range(2):
        lo_b, hi_b = lo[b].flatten().numpy(), hi[b].flatten().numpy()
        l1, u1 = (t[b].numpy() for t in pre[0])
        n_unstable += int(((l1 < 0) & (u1 > 0)).sum())
        for j in range(2):
            c = C[b, j].numpy()
            lp = triangle_lp(Ws, bs, lo_b, hi_b, [(l1, u1)], c)
            exact, x_star = exact_min_one_hidden(Ws, bs, lo_b, hi_b, c)
            # The minimiser really attains the exact value (so it is the true minimum).
            with torch.no_grad():
                z_star = model(torch.tensor(x_star, dtype=DT).view(1, 1, 1, 3))[0].numpy()
            assert abs(c @ z_star - exact) < 1e-7
            for method in ("ibp", "crown_ibp", "crown"):
                assert lbs[method][b, j].item() <= lp + 1e-7, method
            assert lp <= exact + 1e-7
            assert exact <= m_s[b, j].item() + 1e-9
            assert m_s[b, j].item() - exact < 0.05  # dense sampling in 3-D gets close to the minimum
    assert n_unstable > 0
    # One hidden layer: CROWN's only intermediate bounds are the exact first-layer ones, as in CROWN-IBP.
    torch.testing.assert_close(lbs["crown"], lbs["crown_ibp"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_two_hidden_layers_bounds_below_triangle_lp(seed):
    """With the same intermediate bounds, the triangle LP is at least as tight as the backward pass."""
    model = mlp_model([4, 8, 6, 3], seed)
    Ws, bs = affine_layers(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, 1, 4, generator=gen, dtype=DT)
    y = torch.tensor([1, 2])
    eps = 0.2
    lbs, _ = all_bounds(model, x, y, eps)
    lo, hi = bounds.input_box(x, eps)
    with torch.no_grad():
        pre_ibp = bounds.intermediate_bounds(model, lo, hi, "ibp")
        pre_crown = bounds.intermediate_bounds(model, lo, hi, "crown")
    C = bounds.margin_spec(y, 3, DT)
    for b in range(2):
        lo_b, hi_b = lo[b].flatten().numpy(), hi[b].flatten().numpy()
        for j in range(2):
            c = C[b, j].numpy()
            lp_ibp = triangle_lp(Ws, bs, lo_b, hi_b, [(l[b].numpy(), u[b].numpy()) for l, u in pre_ibp], c)
            lp_crown = triangle_lp(Ws, bs, lo_b, hi_b, [(l[b].numpy(), u[b].numpy()) for l, u in pre_crown], c)
            assert lbs["ibp"][b, j].item() <= lp_ibp + 1e-7
            assert lbs["crown_ibp"][b, j].item() <= lp_ibp + 1e-7
            assert lbs["crown"][b, j].item() <= lp_crown + 1e-7
    # CROWN intermediate bounds contain the IBP-exact first layer and are sound for the second.
    torch.testing.assert_close(pre_crown[0][0], pre_ibp[0][0])
    pts = sample_box(x, eps, 5000, gen).flatten(0, 1)
    with torch.no_grad():
        z2 = model[:5](pts).view(2, 5000, -1)  # Normalize, Flatten, Linear, ReLU, Linear
    for l2, u2 in (pre_crown[1], pre_ibp[1]):
        assert (z2 >= l2.unsqueeze(1) - 1e-9).all() and (z2 <= u2.unsqueeze(1) + 1e-9).all()


# ----------------------------------------------------------------------------------------------
# Hand-computed toy network
# ----------------------------------------------------------------------------------------------


def toy_net():
    """x in R^2 -> h = (x1 + x2 - 0.5, x1 - x2 - 0.5) -> ReLU -> z = (a1 - a2, 0.25).

    Class 0 margin: m = relu(x1 + x2 - 0.5) - relu(x1 - x2 - 0.5) - 0.25.
    """
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).to(DT)
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        net[1].bias.copy_(torch.tensor([-0.5, -0.5]))
        net[3].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
        net[3].bias.copy_(torch.tensor([0.0, 0.25]))
    return net


def test_toy_network_hand_computed():
    # x0 = (0.5, 0.5), eps = 0.5: the box is [0, 1]^2 (clipping is inactive).
    # Pre-activations: h1 = x1 + x2 - 0.5 in [-0.5, 1.5], h2 = x1 - x2 - 0.5 in [-1.5, 0.5].
    # IBP: a1 in [0, 1.5], a2 in [0, 0.5]  =>  m >= 0 - 0.5 - 0.25 = -0.75, m <= 1.5 - 0 - 0.25 = 1.25.
    # CROWN(-IBP): m = a1 - a2 - 0.25. a1 has coefficient +1 -> lower relaxation; u = 1.5 > -l = 0.5
    #   so alpha = 1: a1 >= h1. a2 has coefficient -1 -> upper chord: s = 0.5 / (0.5 + 1.5) = 0.25,
    #   a2 <= 0.25 (h2 + 1.5). Hence m >= h1 - 0.25 (h2 + 1.5) - 0.25 = 0.75 x1 + 1.25 x2 - 1,
    #   minimised at x = (0, 0): -1.0 (looser than IBP here: CROWN is not always tighter).
    # Exact: if h2 > 0 then a1 - a2 = 2 x2 >= 0, else a1 - a2 = a1 >= 0; so min m = -0.25 (e.g. at x = 0).
    net = toy_net()
    x = torch.tensor([[[[0.5, 0.5]]]], dtype=DT)
    y = torch.tensor([0])
    lo, hi = bounds.input_box(x, 0.5)
    C = bounds.margin_spec(y, 2, DT)
    assert C.tolist() == [[[1.0, -1.0]]]
    lb, ub = bounds.ibp(net, lo, hi, C)
    assert lb.item() == pytest.approx(-0.75) and ub.item() == pytest.approx(1.25)
    assert bounds.crown_ibp(net, lo, hi, C).item() == pytest.approx(-1.0)
    assert bounds.crown(net, lo, hi, C).item() == pytest.approx(-1.0)
    A, d = bounds.linear_bounds(net, lo, hi, C)
    assert A.flatten().tolist() == pytest.approx([0.75, 1.25]) and d.item() == pytest.approx(-1.0)
    ((l1, u1),) = bounds.intermediate_bounds(net, lo, hi)
    assert l1.flatten().tolist() == pytest.approx([-0.5, -1.5]) and u1.flatten().tolist() == pytest.approx([1.5, 0.5])
    # The unclipped forward value: h = (0.5, -0.5) -> a = (0.5, 0) -> z = (0.5, 0.25), margin 0.25.
    assert net(x).flatten().tolist() == pytest.approx([0.5, 0.25])

    # eps = 0.1: h1 in [0.3, 0.7] (active), h2 in [-0.7, -0.3] (inactive): every ReLU is stable and
    # m = x1 + x2 - 0.75 >= 0.8 - 0.75 = 0.05 for all three methods, which verify the point.
    for method in bounds.METHODS:
        assert bounds.margin_bounds(net, x, y, 0.1, method=method).item() == pytest.approx(0.05)
        assert bounds.verified(net, x, y, 0.1, method=method).tolist() == [True]
        assert bounds.verified(net, x, y, 0.5, method=method).tolist() == [False]


# ----------------------------------------------------------------------------------------------
# Stable networks
# ----------------------------------------------------------------------------------------------


def test_ibp_equals_crown_ibp_when_all_relus_stable():
    """Every ReLU stable and every input reaching the output through one neuron per layer
    (monomial hidden weights): no cancellation, so IBP (with C folded) equals CROWN-IBP, and both
    equal the exact minimum, attained at a box corner."""
    torch.manual_seed(5)
    n = 6
    net = nn.Sequential(Normalize([0.5], [0.2]), nn.Flatten(), nn.Linear(n, n), nn.ReLU(), nn.Linear(n, n), nn.ReLU(), nn.Linear(n, 4)).to(DT)
    with torch.no_grad():
        for lin, perm in ((net[2], [2, 0, 1, 5, 3, 4]), (net[4], [1, 2, 3, 4, 5, 0])):
            W = torch.zeros(n, n, dtype=DT)
            W[torch.arange(n), torch.tensor(perm)] = torch.tensor([1.5, -0.7, 2.0, -1.2, 0.9, 1.1], dtype=DT)
            lin.weight.copy_(W)
        # Normalised inputs lie in [-2.5, 2.5], so first-layer |W x| <= 5 and a bias of +-6 fixes every
        # sign; second-layer inputs are at most 2 * 11, so +-25 does the same there.
        net[2].bias.copy_(torch.tensor([6.0, -6.0, 6.0, -6.0, 6.0, 6.0]))
        net[4].bias.copy_(torch.tensor([25.0, 25.0, -25.0, 25.0, -25.0, 25.0]))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 1, n, generator=gen, dtype=DT)
    y = torch.tensor([0, 1, 2, 3, 0])
    eps = 0.03
    assert unstable_count(net, x, eps) == 0
    lbs, _ = all_bounds(net, x, y, eps)
    torch.testing.assert_close(lbs["ibp"], lbs["crown_ibp"], rtol=0, atol=1e-12)
    torch.testing.assert_close(lbs["crown"], lbs["crown_ibp"], rtol=0, atol=1e-12)
    _assert_bound_attained_at_corner(net, x, y, eps, lbs["crown_ibp"])


def _assert_bound_attained_at_corner(net, x, y, eps, lb):
    """For a network that is affine on the box, the CROWN-IBP bound is the exact minimum, attained
    at the corner x = c - sign(A) r of each margin's linear function."""
    lo, hi = bounds.input_box(x, eps)
    K = bounds._num_outputs(bounds.network_layers(net))
    A, _ = bounds.linear_bounds(net, lo, hi, bounds.margin_spec(y, K, DT))
    c, r = (hi + lo) / 2, (hi - lo) / 2
    for j in range(K - 1):
        corner = c - torch.sign(A[:, j]) * r
        with torch.no_grad():
            m = _margins(net(corner), y)[:, j]
        torch.testing.assert_close(m, lb[:, j], rtol=0, atol=1e-10)


def test_stable_dense_network_crown_ibp_exact_and_not_looser_than_ibp():
    torch.manual_seed(6)
    net = mlp_model([5, 7, 7, 3], 6)
    x = torch.rand(3, 1, 1, 5, dtype=DT)
    y = torch.tensor([0, 1, 2])
    eps = 1e-4
    assert unstable_count(net, x, eps) == 0
    lbs, _ = all_bounds(net, x, y, eps)
    _assert_bound_attained_at_corner(net, x, y, eps, lbs["crown_ibp"])
    assert (lbs["ibp"] <= lbs["crown_ibp"] + 1e-12).all()
    assert (lbs["ibp"] < lbs["crown_ibp"] - 1e-9).any()  # dense weights: IBP loses to cancellation


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cin,cout,k,stride,pad,dil,groups,size",
    [
        (3, 4, 4, 2, 0, 1, 1, 15),
        (2, 6, 3, 2, 1, 1, 2, 10),
        (1, 3, 3, 3, 2, 2, 1, 11),
        (4, 4, (3, 2), (1, 2), (1, 0), 1, 1, 9),
        # few input channels: the matrix-product-and-fold path
        (1, 16, 4, 2, 0, 1, 1, 15),
        (1, 12, (3, 2), 2, 1, 2, 1, 11),
        (1, 9, 3, 1, 0, 1, 1, 12),  # stride 1: the transposed convolution
        (2, 18, 3, (2, 1), (0, 1), 1, 1, 10),
    ],
)
def test_conv_backward_is_the_adjoint(cin, cout, k, stride, pad, dil, groups, size):
    """The transposed convolution (with output_padding) equals the VJP of the conv, for odd sizes
    where the forward conv drops trailing pixels."""
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups).to(DT)
    x = torch.randn(2, cin, size, size + 1, dtype=DT, requires_grad=True)
    out = conv(x)
    A = torch.randn(2, 3, *out.shape[1:], dtype=DT)
    expected = torch.stack([torch.autograd.grad(out, x, A[:, m], retain_graph=True)[0] for m in range(3)], 1)
    got = bounds._conv_backward(conv, A, x.shape[1:])
    torch.testing.assert_close(got, expected)
    # A in channels-last layout, as the transposed convolution before hands it over
    A_cl = A.reshape(6, *A.shape[2:]).contiguous(memory_format=torch.channels_last).view(A.shape)
    torch.testing.assert_close(bounds._conv_backward(conv, A_cl, x.shape[1:]), expected)


def test_input_box_clips_and_takes_per_sample_eps():
    x = torch.tensor([[0.0, 0.5, 0.98]], dtype=DT).view(1, 1, 1, 3).repeat(2, 1, 1, 1)
    lo, hi = bounds.input_box(x, torch.tensor([0.1, 0.01], dtype=DT))
    assert lo.flatten().tolist() == pytest.approx([0.0, 0.4, 0.88, 0.0, 0.49, 0.97])
    assert hi.flatten().tolist() == pytest.approx([0.1, 0.6, 1.0, 0.01, 0.51, 0.99])
    lo, hi = bounds.input_box(x, 0.1, clip=False)
    assert lo.min().item() == pytest.approx(-0.1)
    with pytest.raises(ValueError):
        bounds.input_box(x, torch.tensor([0.1, 0.2, 0.3]))


def test_margin_spec_rows():
    C = bounds.margin_spec(torch.tensor([2, 0]), 4)
    assert C.shape == (2, 3, 4)
    assert C[0].tolist() == [[-1, 0, 1, 0], [0, -1, 1, 0], [0, 0, 1, -1]]
    assert C[1].tolist() == [[1, -1, 0, 0], [1, 0, -1, 0], [1, 0, 0, -1]]


def test_misclassified_points_are_never_verified():
    torch.manual_seed(7)
    model = with_norm(cert.mlp(1, 4, 5, hidden_sizes=(10,)), *MNIST_NORM)
    x = torch.rand(64, 1, 4, 4, dtype=DT)
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = (pred + 1) % 5
    for method in bounds.METHODS:
        assert not bounds.verified(model, x, wrong, 0.0, method=method).any()
        # At eps = 0 every bound is exact, so correctly classified points are verified.
        assert bounds.verified(model, x, pred, 0.0, method=method).all()


def test_verified_radii_matches_verified_per_radius():
    torch.manual_seed(12)
    model = with_norm(cert.mlp(1, 4, 3, hidden_sizes=(8,)), *MNIST_NORM)
    x = torch.rand(32, 1, 4, 4, dtype=DT)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 3  # a few misclassified points
    radii = [0.0, 0.005, 0.02, 0.08]
    for method in bounds.METHODS:
        grid = bounds.verified_radii(model, x, y, radii, method=method)
        assert grid.shape == (4, 32)
        for i, r in enumerate(radii):
            assert torch.equal(grid[i], bounds.verified(model, x, y, r, method=method))
        assert not grid[:, :4].any()
        if method == "ibp":  # interval arithmetic is inclusion-monotone (CROWN's adaptive slopes need not be)
            assert (grid[:-1] >= grid[1:]).all()
        assert grid[0, 4:].all() and not grid[-1].all()


def test_unsupported_layer_is_rejected():
    with pytest.raises(NotImplementedError):
        bounds.ibp(nn.Sequential(nn.Linear(2, 2), nn.GELU()), torch.zeros(1, 2), torch.ones(1, 2))
    with pytest.raises(NotImplementedError):  # softmax only as the last layer
        bounds.ibp(nn.Sequential(nn.Linear(2, 2), nn.Softmax(1), nn.Linear(2, 2)), torch.zeros(1, 2), torch.ones(1, 2))


# ----------------------------------------------------------------------------------------------
# Several radii in one pass
# ----------------------------------------------------------------------------------------------


def test_batched_radii_equal_separate_calls():
    torch.manual_seed(8)
    model = with_norm(cert.dm_small(3, 16, 10, width=0.25, linear_size=16), *CIFAR_NORM)
    x = torch.rand(3, 3, 16, 16, dtype=DT)
    y = torch.tensor([4, 5, 6])
    radii = [0.004, 0.008, 0.012, 0.016]
    for method, beta in (("ibp", 1.0), ("crown_ibp", 1.0), ("crown_ibp", 0.3), ("crown", 1.0)):
        with torch.no_grad():
            batched = bounds.margin_bounds_radii(model, x, y, radii, method=method, beta=beta)
            loop = torch.stack([bounds.margin_bounds(model, x, y, r, method=method, beta=beta) for r in radii])
        assert batched.shape == (4, 3, 9)
        torch.testing.assert_close(batched, loop, rtol=1e-10, atol=1e-10)
    # The beta mix is exactly the convex combination of the two bounds.
    with torch.no_grad():
        b_ibp = bounds.margin_bounds_radii(model, x, y, radii, method="ibp")
        b_ci = bounds.margin_bounds_radii(model, x, y, radii, method="crown_ibp", beta=1.0)
        b_mix = bounds.margin_bounds_radii(model, x, y, radii, method="crown_ibp", beta=0.3)
        b_zero = bounds.margin_bounds_radii(model, x, y, radii, method="crown_ibp", beta=0.0)
    torch.testing.assert_close(b_mix, 0.3 * b_ci + 0.7 * b_ibp)
    torch.testing.assert_close(b_zero, b_ibp, rtol=0, atol=0)


def test_shared_relaxation_is_sound_and_exact_at_the_largest_radius():
    torch.manual_seed(9)
    model = with_norm(cert.mlp(1, 5, 10, hidden_sizes=(16, 16)), *MNIST_NORM)
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(3, 1, 5, 5, generator=gen, dtype=DT)
    y = torch.tensor([1, 2, 3])
    radii = [0.02, 0.04, 0.06]
    with torch.no_grad():
        shared = bounds.margin_bounds_radii(model, x, y, radii, relaxation="shared")
        exact = bounds.margin_bounds_radii(model, x, y, radii, relaxation="per_radius")
    torch.testing.assert_close(shared[-1], exact[-1], rtol=1e-12, atol=1e-12)
    for i, r in enumerate(radii):
        pts = sample_box(x, r, 3000, gen).flatten(0, 1)
        with torch.no_grad():
            m = _margins(model(pts), y.repeat_interleave(3000)).view(3, 3000, 9).amin(1)
        assert (shared[i] <= m + 1e-9).all()


# ----------------------------------------------------------------------------------------------
# Differentiability
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", bounds.METHODS)
def test_gradients_reach_every_parameter(method):
    torch.manual_seed(10)
    model = with_norm(cert.dm_small(1, 12, 10, width=0.25, linear_size=8), *MNIST_NORM)
    x = torch.rand(2, 1, 12, 12, dtype=DT)
    y = torch.tensor([3, 4])
    assert unstable_count(model, x, 0.05) > 0
    lb = bounds.margin_bounds(model, x, y, 0.05, method=method)
    lb.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_crown_ibp_gradient_matches_finite_differences():
    torch.manual_seed(11)
    model = mlp_model([3, 6, 4], 11)
    x = torch.rand(2, 1, 1, 3, dtype=DT)
    y = torch.tensor([0, 3])
    W = model[2].weight
    assert unstable_count(model, x, 0.3) > 0

    def f(w):
        with torch.no_grad():
            W.copy_(w)
        return bounds.margin_bounds(model, x, y, 0.3, method="crown_ibp").sum()

    w0 = W.detach().clone()
    val = f(w0)
    (g,) = torch.autograd.grad(val, W)
    h = 1e-6
    for idx in [(0, 0), (2, 1), (5, 2)]:
        wp, wm = w0.clone(), w0.clone()
        wp[idx] += h
        wm[idx] -= h
        fd = (f(wp).item() - f(wm).item()) / (2 * h)
        assert fd == pytest.approx(g[idx].item(), rel=1e-5, abs=1e-7)


# ----------------------------------------------------------------------------------------------
# Golden values (generated once with this code; they guard against regressions)
# ----------------------------------------------------------------------------------------------

# Margin lower bounds of _golden_case() at eps = 0.03 (149 unstable neurons), rounded to 12 digits.
GOLDEN = {
    "ibp": [[0.427232474089, -0.235034942627, -1.68707655208], [0.826883971691, 0.399651497602, 0.164616554976]],
    "crown_ibp": [[0.396824482141, -0.278207614263, -1.31316027381], [0.471974159259, 0.0814662755811, -0.205709521513]],
    "crown": [[0.114133991055, -0.424565199184, -0.804951750115], [0.625734202461, 0.219315869394, -0.0452705831545]],
}


def _golden_case():
    torch.manual_seed(2024)
    model = with_norm(cert.dm_small(3, 12, 4, width=0.25, linear_size=10), *CIFAR_NORM)
    gen = torch.Generator().manual_seed(2024)
    x = torch.rand(2, 3, 12, 12, generator=gen).to(DT)
    y = torch.tensor([1, 3])
    return model, x, y


@pytest.mark.parametrize("method", bounds.METHODS)
def test_golden_values(method):
    model, x, y = _golden_case()
    with torch.no_grad():
        lb = bounds.margin_bounds(model, x, y, 0.03, method=method)
    expected = torch.tensor(GOLDEN[method], dtype=DT)
    torch.testing.assert_close(lb, expected, rtol=1e-7, atol=1e-9)
