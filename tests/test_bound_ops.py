"""Tests of the bound operators added for TRDNN: tanh, sigmoid, softmax box, input domains, output boxes.

Soundness is checked by sampling (float64, so a violation is a bug, not rounding) and by hand-computed
cases; relaxations are checked on a dense grid of every interval type (convex side, concave side,
crossing zero, degenerate, saturated).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robrepro import bounds

DT = torch.float64


def _intervals():
    """(l, u) pairs covering every case of an S-shaped relaxation."""
    pts = [
        (-3.0, -1.0),
        (-0.5, -0.1),
        (0.1, 2.0),
        (1.0, 1.5),
        (-2.0, 3.0),
        (-0.2, 0.1),
        (-4.0, 0.5),
        (0.3, 0.3),
        (-1.0, -1.0),
        (0.0, 0.0),
        (-30.0, 25.0),
        (20.0, 21.0),
        (-1e-9, 1e-9),
    ]
    l = torch.tensor([a for a, _ in pts], dtype=DT)
    u = torch.tensor([b for _, b in pts], dtype=DT)
    return l, u


@pytest.mark.parametrize("act", [nn.Tanh(), nn.Sigmoid(), nn.ReLU()])
def test_relaxation_lines_enclose_the_activation(act):
    op = bounds.network_ops(nn.Sequential(act))[0]
    l, u = _intervals()
    a_l, b_l, a_u, b_u = op.relax(l, u)
    b_l = 0 if b_l is None else b_l  # None: no intercept
    t = torch.linspace(0, 1, 2001, dtype=DT).unsqueeze(1)
    z = l + t * (u - l)
    f = act(z)
    # 1e-12: rounding of the check itself (the chord through an end point is exact in real arithmetic)
    assert (a_l * z + b_l <= f + 1e-12).all(), (a_l * z + b_l - f).max()
    assert (f <= a_u * z + b_u + 1e-12).all(), (f - a_u * z - b_u).max()


@pytest.mark.parametrize("act", [nn.Tanh(), nn.Sigmoid()])
def test_s_shaped_relaxation_is_chord_and_tangent(act):
    """On a convex interval the upper line is the chord and the lower one touches the curve; mirrored on a concave one."""
    op = bounds.network_ops(nn.Sequential(act))[0]
    l = torch.tensor([-3.0, 0.5], dtype=DT)
    u = torch.tensor([-1.0, 2.5], dtype=DT)
    a_l, b_l, a_u, b_u = op.relax(l, u)
    chord = (act(u) - act(l)) / (u - l)
    torch.testing.assert_close(a_l, chord)
    torch.testing.assert_close(a_u, chord)
    # convex interval: upper line through both end points
    assert a_u[0] * l[0] + b_u[0] == pytest.approx(act(l[0]).item(), abs=1e-12)
    assert a_u[0] * u[0] + b_u[0] == pytest.approx(act(u[0]).item(), abs=1e-12)
    # concave interval: lower line through both end points
    assert a_l[1] * l[1] + b_l[1] == pytest.approx(act(l[1]).item(), abs=1e-12)
    # and the other line is tangent: it touches the curve somewhere inside
    t = torch.linspace(0, 1, 20001, dtype=DT).unsqueeze(1)
    z = l + t * (u - l)
    gap_low = (act(z) - (a_l * z + b_l)).amin(0)[0]
    gap_up = ((a_u * z + b_u) - act(z)).amin(0)[1]
    assert gap_low.item() == pytest.approx(0, abs=1e-7) and gap_up.item() == pytest.approx(0, abs=1e-7)


def test_tanh_hand_case():
    """tanh on [-1, 1]: chord slope tanh(1); the tangent of that slope touches at z0 = atanh(sqrt(1 - tanh(1)))."""
    op = bounds.TanhOp(nn.Tanh())
    a_l, b_l, a_u, b_u = op.relax(torch.tensor([-1.0], dtype=DT), torch.tensor([1.0], dtype=DT))
    s = math.tanh(1.0)
    z0 = math.atanh(math.sqrt(1 - s))
    assert a_u.item() == pytest.approx(s)
    assert b_u.item() == pytest.approx(math.tanh(z0) - s * z0, abs=1e-12)
    assert b_l.item() == pytest.approx(-(math.tanh(z0) - s * z0), abs=1e-12)
    lo, hi = bounds.ibp(nn.Sequential(nn.Tanh()), torch.tensor([[-1.0, 0.5]], dtype=DT), torch.tensor([[1.0, 2.0]], dtype=DT))
    torch.testing.assert_close(lo, torch.tensor([[-s, math.tanh(0.5)]], dtype=DT))
    torch.testing.assert_close(hi, torch.tensor([[s, math.tanh(2.0)]], dtype=DT))


def test_sigmoid_hand_case():
    lo, hi = bounds.ibp(nn.Sequential(nn.Sigmoid()), torch.tensor([[-2.0]], dtype=DT), torch.tensor([[0.0]], dtype=DT))
    assert lo.item() == pytest.approx(1 / (1 + math.e**2))
    assert hi.item() == pytest.approx(0.5)


def test_softmax_box_hand_case_and_corners():
    l = torch.tensor([[0.0, -1.0, 1.0]], dtype=DT)
    u = torch.tensor([[1.0, 0.0, 1.0]], dtype=DT)
    lo, hi = bounds.softmax_box(l, u)
    e = math.e
    # p_0 lowest at z = (0, 0, 1), highest at z = (1, -1, 1)
    assert lo[0, 0].item() == pytest.approx(1 / (1 + 1 + e))
    assert hi[0, 0].item() == pytest.approx(e / (e + 1 / e + e))
    # the bounds are attained at corners of the box: check them all
    corners = torch.tensor([[a, b, 1.0] for a in (0.0, 1.0) for b in (-1.0, 0.0)], dtype=DT)
    p = torch.softmax(corners, 1)
    torch.testing.assert_close(p.amin(0), lo[0])
    torch.testing.assert_close(p.amax(0), hi[0])


def test_softmax_box_is_stable_for_huge_logits():
    l = torch.tensor([[1000.0, -1000.0, 0.0]], dtype=torch.float32)
    lo, hi = bounds.softmax_box(l, l + 1)
    assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
    assert lo[0, 0] > 0.99 and hi[0, 1] < 1e-30


def _mlp(act, sizes, seed, softmax=False):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    layers = layers[:-1]
    if softmax:
        layers.append(nn.Softmax(dim=1))
    return nn.Sequential(*layers).to(DT)


@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid])
def test_boxes_contain_sampled_outputs(act):
    """IBP, CROWN-IBP and CROWN boxes (logits and probabilities) contain 2e4 sampled outputs per point; unbounded domain."""
    model = _mlp(act, [4, 8, 8, 3], 1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, generator=gen, dtype=DT) * 2
    eps, n = 0.4, 20000
    pts = x.unsqueeze(1) + eps * (2 * torch.rand(3, n, 4, generator=gen, dtype=DT) - 1)
    pts[:, : n // 4] = x.unsqueeze(1) + eps * torch.sign(pts[:, : n // 4] - x.unsqueeze(1))  # corners
    with torch.no_grad():
        z = model(pts.flatten(0, 1)).view(3, n, 3)
        p = torch.softmax(z, 2)
        widths = {}
        for method in bounds.METHODS:
            for space, out in (("logits", z), ("probs", p)):
                lo, hi = bounds.output_box(model, x, eps, space=space, method=method, domain=(None, None))
                assert (lo.unsqueeze(1) <= out + 1e-12).all() and (out <= hi.unsqueeze(1) + 1e-12).all(), (method, space)
                widths[method, space] = (hi - lo).sum().item()
    # Sampling reaches close to the box: the box is not absurdly loose either.
    assert (hi - lo).amax() <= 3 * (p.amax(1) - p.amin(1)).amax()
    assert widths["crown", "logits"] <= widths["crown_ibp", "logits"] + 1e-12 <= widths["ibp", "logits"] + 2e-12


def test_network_ending_in_softmax_gives_the_same_probability_box():
    model = _mlp(nn.Tanh, [4, 6, 3], 2)
    with_sm = nn.Sequential(*model, nn.Softmax(dim=1))
    x = torch.randn(5, 4, dtype=DT)
    a = bounds.output_box(model, x, 0.2, space="probs", domain=None)
    b = bounds.output_box(with_sm, x, 0.2, space="probs", domain=None)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        bounds.output_box(with_sm, x, 0.2, space="logits", domain=None)


def test_input_domain():
    x = torch.tensor([[0.05, 0.5, 0.97]], dtype=DT)
    lo, hi = bounds.input_box(x, 0.1)
    torch.testing.assert_close(lo, torch.tensor([[0.0, 0.4, 0.87]], dtype=DT))
    torch.testing.assert_close(hi, torch.tensor([[0.15, 0.6, 1.0]], dtype=DT))
    lo, hi = bounds.input_box(x, 0.1, domain=(None, None))
    torch.testing.assert_close(lo, x - 0.1)
    lo, hi = bounds.input_box(x, 0.1, domain=(None, 1.0))
    assert lo[0, 0].item() == pytest.approx(-0.05) and hi[0, 2].item() == 1.0


@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid])
def test_crown_ibp_margins_sound_and_differentiable_for_s_shaped(act):
    model = _mlp(act, [5, 10, 10, 4], 3)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 5, generator=gen, dtype=DT)
    y = torch.tensor([0, 1, 2, 3])
    eps = 0.2
    lb = bounds.margin_bounds(model, x, y, eps, method="crown_ibp")
    (lb * torch.arange(1, 4, dtype=DT)).sum().backward()  # weighted: a plain sum cancels the last bias
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in model.parameters())
    pts = bounds.input_box(x, eps)[0].unsqueeze(1) + torch.rand(4, 5000, 5, generator=gen, dtype=DT) * 2 * eps
    pts = pts.clamp(0, 1).minimum(x.unsqueeze(1) + eps)
    with torch.no_grad():
        z = model(pts.flatten(0, 1)).view(4, 5000, 4)
        m = z.gather(2, y.view(4, 1, 1).expand(4, 5000, 1)) - z
        idx = bounds.other_classes(y, 4)
        m = m.gather(2, idx.unsqueeze(1).expand(4, 5000, 3)).amin(1)
        for method in bounds.METHODS:
            assert (bounds.margin_bounds(model, x, y, eps, method=method) <= m + 1e-12).all(), method


def test_new_layer_type_in_one_place():
    """Registering one operator class is all a new monotone activation needs (IBP and CROWN)."""

    class Cube(nn.Module):
        def forward(self, z):
            return z**3

    @bounds.register_op(Cube)
    class CubeOp(bounds.MonotoneActivation):
        fn = staticmethod(lambda z: z**3)

        def relax(self, l, u):  # crude but sound: constant lines
            return torch.zeros_like(l), l**3, torch.zeros_like(u), u**3

    try:
        net = nn.Sequential(nn.Linear(2, 3), Cube(), nn.Linear(3, 2)).to(DT)
        lo, hi = torch.zeros(1, 2, dtype=DT), torch.ones(1, 2, dtype=DT)
        l_ibp, u_ibp = bounds.ibp(net, lo, hi)
        C = bounds.margin_spec(torch.tensor([0]), 2, DT)
        assert bounds.crown_ibp(net, lo, hi, C).shape == (1, 1)
        assert (l_ibp <= u_ibp).all()
    finally:
        del bounds._OPS[Cube]


def test_tabular_normalize_is_bounded_and_folded():
    """Tabular inputs (B, F) with a per-feature Normalize (Iris): IBP (with the fold) and CROWN agree with sampling."""
    from robrepro.models import build

    torch.manual_seed(5)
    model = build("act_mlp", in_channels=4, image_size=1, num_classes=3, mean=[0.5, -1.0, 2.0, 0.0], std=[2.0, 0.5, 1.0, 3.0], hidden_sizes=[6]).to(DT)
    x = torch.randn(3, 4, dtype=DT)
    y = torch.tensor([0, 1, 2])
    gen = torch.Generator().manual_seed(5)
    pts = x.unsqueeze(1) + 0.3 * (2 * torch.rand(3, 4000, 4, generator=gen, dtype=DT) - 1)
    with torch.no_grad():
        z = model(pts.flatten(0, 1)).view(3, 4000, 3)
        for method in bounds.METHODS:
            lo, hi = bounds.output_box(model, x, 0.3, method=method, domain=None)
            assert (lo.unsqueeze(1) <= z + 1e-12).all() and (z <= hi.unsqueeze(1) + 1e-12).all(), method
            assert bounds.margin_bounds(model, x, y, 0.3, method=method, domain=None).shape == (3, 2)
        # The folded interval pass equals the unfolded one (Normalize bounded as its own layer).
        ops = bounds.network_ops(model)
        lo_in, hi_in = bounds.input_box(x, 0.3, domain=None)
        c, r = (hi_in + lo_in) / 2, (hi_in - lo_in) / 2
        for op in ops:
            c, r = op.ibp(c, r)
        lo, hi = bounds.ibp(model, lo_in, hi_in)
        torch.testing.assert_close(lo, c - r)
        torch.testing.assert_close(hi, c + r)
