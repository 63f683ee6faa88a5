"""Every relaxation choice of the bound engine against values computed by hand (not goldens the same
code produced): each ReLU case (active, inactive, unstable with u > -l, with u < -l, the tie, a point
interval) and CROWN's adaptive lower slope end to end; tanh and sigmoid (the activations TRDNN uses)
on intervals that reach one side or both sides of their inflection point."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robrepro import bounds

DT = torch.float64


def _relu_slopes(l, u):
    op = bounds.network_ops(nn.Sequential(nn.ReLU()))[0]
    a_l, b_l, a_u, b_u = op.relax(torch.tensor([l], dtype=DT), torch.tensor([u], dtype=DT))
    assert b_l is None  # the lower line always passes through the origin
    return a_l.item(), a_u.item(), b_u.item()


@pytest.mark.parametrize(
    "l,u,want",
    [
        # (lower slope, upper slope, upper intercept)
        (0.5, 2.0, (1.0, 1.0, 0.0)),  # active: exact, z itself
        (0.0, 2.0, (1.0, 1.0, 0.0)),  # active with l = 0
        (-2.0, -0.5, (0.0, 0.0, 0.0)),  # inactive: exact, 0
        (-1.0, 3.0, (1.0, 0.75, 0.75)),  # unstable, u > -l: lower alpha = 1; chord 3/4 (z + 1)
        (-3.0, 1.0, (0.0, 0.25, 0.75)),  # unstable, u < -l: lower alpha = 0; chord 1/4 (z + 3)
        (-1.0, 1.0, (0.0, 0.5, 0.5)),  # the tie u = -l: alpha = 0 (u > -l is strict, as in CROWN)
        (2.0, 2.0, (1.0, 0.0, 2.0)),  # a point interval, active: the upper line is the constant relu(u)
        (-2.0, -2.0, (0.0, 0.0, 0.0)),  # a point interval, inactive
    ],
)
def test_relu_relaxation_each_case(l, u, want):
    assert _relu_slopes(l, u) == pytest.approx(want, abs=1e-12)


def _one_relu(w, b):
    """y = relu(w x + b) on one input."""
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1)).to(DT)
    with torch.no_grad():
        net[0].weight.fill_(w)
        net[0].bias.fill_(b)
        net[2].weight.fill_(1.0)
        net[2].bias.zero_()
    return net


@pytest.mark.parametrize("method", ["crown", "crown_ibp"])
def test_crown_adaptive_slope_end_to_end(method):
    """x in [0, 1]. h = 4x - 3 in [-3, 1] (u < -l): the lower line is 0, so y >= 0; the upper chord
    1/4 (h + 3) = x gives y <= 1. h = 4x - 1 in [-1, 3] (u > -l): the lower line is h itself, so
    CROWN's bound is min h = -1 (looser than IBP's 0 here, but what the adaptive rule prescribes);
    the upper chord 3/4 (h + 1) = 3x gives y <= 3."""
    fn = bounds.crown if method == "crown" else bounds.crown_ibp
    lo, hi = torch.zeros(1, 1, dtype=DT), torch.ones(1, 1, dtype=DT)
    C = torch.tensor([[[1.0], [-1.0]]], dtype=DT)
    for (w, b), (lower, upper) in {(4.0, -3.0): (0.0, 1.0), (4.0, -1.0): (-1.0, 3.0)}.items():
        lb = fn(_one_relu(w, b), lo, hi, C)
        assert lb[0, 0].item() == pytest.approx(lower, abs=1e-12)
        assert -lb[0, 1].item() == pytest.approx(upper, abs=1e-12)


def _s_shaped_by_hand(phi, inv_dphi, l, u):
    """(slope, lower intercept, upper intercept): the chord's slope s; the intercepts are the min and
    max of phi(z) - s z over [l, u], at an end point or at -z0 / +z0 where phi'(z0) = s."""
    s = (phi(u) - phi(l)) / (u - l)
    z0 = inv_dphi(s)
    cand = [z for z in (l, u, z0, -z0) if l <= z <= u]
    g = [phi(z) - s * z for z in cand]
    return s, min(g), max(g)


def _tanh_inv_d(s):
    return math.atanh(math.sqrt(1 - s))


def _sigmoid(z):
    return 1 / (1 + math.exp(-z))


def _sigmoid_inv_d(s):
    # sigma' = p (1 - p) = s  ->  p = (1 + sqrt(1 - 4 s)) / 2 on the positive side.
    p = (1 + math.sqrt(1 - 4 * s)) / 2
    return math.log(p / (1 - p))


@pytest.mark.parametrize(
    "act,phi,inv_d",
    [(nn.Tanh(), math.tanh, _tanh_inv_d), (nn.Sigmoid(), _sigmoid, _sigmoid_inv_d)],
    ids=["tanh", "sigmoid"],
)
@pytest.mark.parametrize(
    "l,u",
    [
        (-3.0, -1.0),  # convex side only: upper line = chord, lower = parallel tangent at -z0
        (0.5, 2.5),  # concave side only: lower line = chord, upper = tangent at +z0
        (-2.0, 2.0),  # both sides, symmetric: tangents at +-z0
        (-1.0, 3.0),  # both sides, +z0 inside, -z0 outside (the lower line through l)
        (-0.2, 0.3),  # narrow, around the inflection point: the chord's slope near the largest one
    ],
)
def test_s_shaped_relaxation_by_hand(act, phi, inv_d, l, u):
    op = bounds.network_ops(nn.Sequential(act))[0]
    a_l, b_l, a_u, b_u = op.relax(torch.tensor([l], dtype=DT), torch.tensor([u], dtype=DT))
    s, lo, hi = _s_shaped_by_hand(phi, inv_d, l, u)
    assert a_l.item() == pytest.approx(s, rel=1e-12) and a_u.item() == pytest.approx(s, rel=1e-12)
    # The engine adds a few ulps of slack outwards; 1e-12 is far below any relaxation choice.
    assert b_l.item() == pytest.approx(lo, abs=1e-12)
    assert b_u.item() == pytest.approx(hi, abs=1e-12)


@pytest.mark.parametrize("act,phi", [(nn.Tanh(), math.tanh), (nn.Sigmoid(), _sigmoid), (nn.ReLU(), lambda z: max(z, 0.0))], ids=["tanh", "sigmoid", "relu"])
def test_interval_of_each_activation_is_its_values_at_the_ends(act, phi):
    lo, hi = bounds.ibp(nn.Sequential(act), torch.tensor([[-1.5, 0.2]], dtype=DT), torch.tensor([[-0.5, 2.0]], dtype=DT))
    assert lo.flatten().tolist() == pytest.approx([phi(-1.5), phi(0.2)], abs=1e-12)
    assert hi.flatten().tolist() == pytest.approx([phi(-0.5), phi(2.0)], abs=1e-12)
