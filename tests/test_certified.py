"""Tests of the certified-training pieces: schedules, GM weights/radii, objectives, model family."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_certifiable_net
from torch import nn

from robrepro import bounds, schedules
from robrepro.models import certified as cert
from robrepro.models.layers import Normalize
from robrepro.objectives import _OBJECTIVES, Progress
from robrepro.objectives import certified as obj

CIFAR_NORM = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


def test_linear_schedule_endpoints_and_values():
    # 10 steps/epoch, start epoch 1, length 5 -> ramp from step 10 to step (1 + 5 - 1) * 10 = 50.
    assert schedules.ramp_steps(1, 5, 10) == (10, 50)
    e = lambda s: schedules.epsilon(s, 10, 0.3, 1, 5, "linear")
    assert [e(s) for s in (0, 9, 10)] == [0.0, 0.0, 0.0]
    assert e(30) == pytest.approx(0.15)
    assert e(50) == e(51) == e(10_000) == 0.3
    vals = [e(s) for s in range(70)]
    assert all(a <= b for a, b in zip(vals, vals[1:]))
    assert schedules.epsilon(20, 10, 0.3, 1, 5, "linear", eps_start=0.1) == pytest.approx(0.15)


def test_smoothed_schedule_matches_hand_values():
    # s0 = 10, s1 = 50, mid m = 10 + floor(0.25 * 40) = 20, exponent 4:
    # alpha = 1 / ((50 - 20) * 4 * 10^3 + 10^4) = 1 / 130000.
    e = lambda s: schedules.epsilon(s, 10, 1.0, 1, 5, "smoothed")
    assert e(10) == 0.0
    assert e(15) == pytest.approx(5**4 / 130000)
    assert e(20) == pytest.approx(10**4 / 130000)
    # Linear from 1/13 at step 20 to 1 at step 50: at 35 it is 1/13 + 0.5 * 12/13 = 7/13.
    assert e(35) == pytest.approx(7 / 13)
    assert e(50) == e(99) == 1.0


def test_smoothed_schedule_is_monotone_continuous_and_below_linear():
    spe, eps = 7, 0.4
    s0, s1 = schedules.ramp_steps(3, 20, spe)
    sm = [schedules.epsilon(s, spe, eps, 3, 20, "smoothed") for s in range(s1 + 20)]
    li = [schedules.epsilon(s, spe, eps, 3, 20, "linear") for s in range(s1 + 20)]
    assert sm[0] == 0.0 and sm[s0] == 0.0 and sm[s1] == pytest.approx(eps) and sm[-1] == eps
    assert all(a <= b + 1e-15 for a, b in zip(sm, sm[1:]))
    assert all(a <= b + 1e-12 for a, b in zip(sm, li))
    # Slope is continuous at the mid point (the power piece hands over to the line smoothly).
    m = s0 + int(0.25 * (s1 - s0))
    left = sm[m] - sm[m - 1]
    right = sm[m + 1] - sm[m]
    assert left == pytest.approx(right, rel=0.1)
    # Short ramps without a mid step fall back to linear.
    assert schedules.smoothed_ramp(2, 0, 3, 0.0, 1.0) == pytest.approx(2 / 3)


def test_kappa_beta_schedules():
    # Catalog: kappa = (eps_max - eps_t (1 - kappa_end)) / eps_max with kappa_start = 1.
    for eps_t in (0.0, 0.1, 0.25, 0.4):
        assert schedules.kappa(eps_t, 0.4, 1.0, 0.5) == pytest.approx((0.4 - eps_t * 0.5) / 0.4)
        assert schedules.beta(eps_t, 0.4, 1.0, 0.0) == pytest.approx((0.4 - eps_t) / 0.4)
    assert schedules.kappa(0.0, 0.0, 1.0, 0.5) == 1.0  # eps_max = 0 does not divide by zero
    assert schedules.beta(1.0, 0.4) == 0.0  # clipped beyond eps_max


def test_bad_schedule_arguments():
    with pytest.raises(ValueError):
        schedules.epsilon(0, 10, 0.3, 1, 5, "cosine")
    with pytest.raises(ValueError):
        schedules.ramp_steps(1, 0, 10)


# ----------------------------------------------------------------------------------------------
# GM weights and radii
# ----------------------------------------------------------------------------------------------

DECREASING = ("inverse", "inverse_square", "exp", "reverse_rank")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("kind", obj.GM_WEIGHTS)
def test_gm_weights_sum_to_one_and_have_the_right_order(kind, n):
    w = obj.gm_weights(n, kind)
    assert len(w) == n and math.isclose(sum(w), 1.0, rel_tol=1e-12)
    assert all(v > 0 for v in w)
    if n > 1:
        pairs = list(zip(w, w[1:]))
        if kind in DECREASING:
            assert all(a > b for a, b in pairs)
        elif kind == "linear":
            assert all(a < b for a, b in pairs)
        else:
            assert all(a == pytest.approx(b) for a, b in pairs)


def test_gm_inverse_weights_are_harmonic():
    # c_i = (1/r_i) / sum_j (1/r_j) = (1/i) / H_N, independent of eps.
    h5 = sum(1 / j for j in range(1, 6))
    assert obj.gm_weights(5, "inverse") == pytest.approx([1 / i / h5 for i in range(1, 6)])
    assert obj.gm_weights(3, "reverse_rank") == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert obj.gm_weights(4, "exp", "none") == pytest.approx([math.exp(-i / 4) for i in range(1, 5)])
    assert obj.gm_weights(1, "inverse") == [1.0]
    with pytest.raises(ValueError):
        obj.gm_weights(3, "inverse", "softmax")


def test_gm_radii():
    assert obj.gm_radii(4, 0.2, 0.4) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert obj.gm_radii(4, 0.2, 0.4, "final") == pytest.approx([0.1, 0.2, 0.2, 0.2])
    assert obj.gm_radii(4, 0.4, 0.4, "final") == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert obj.gm_radii(3, 0.0, 0.4) == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------------------------
# Objectives
# ----------------------------------------------------------------------------------------------


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(Normalize(*CIFAR_NORM), *cert.dm_small(3, 12, 10, width=0.25, linear_size=12))


def batch(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g)


def progress_at(step, spe=10, epochs=8):
    return Progress(epoch=step // spe, step=step, steps_per_epoch=spe, epochs=epochs)


COMMON = dict(eps_max=0.03, schedule="linear", start=1, length=5)


def test_objectives_are_registered():
    for name in ("ibp", "crown_ibp", "gm_crown_ibp"):
        assert name in _OBJECTIVES


def test_robust_logits_pad_zero_at_true_class():
    m = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    y = torch.tensor([1, 3])
    assert obj.robust_logits(m, y).tolist() == [[-1.0, 0.0, -2.0, -3.0], [-4.0, -5.0, -6.0, 0.0]]
    expected = F.cross_entropy(torch.tensor([[-1.0, 0.0, -2.0, -3.0], [-4.0, -5.0, -6.0, 0.0]]), y)
    assert obj.robust_ce(m, y).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("step", [0, 10, 25, 40, 79])
@pytest.mark.parametrize("kappa", [(0.0, 0.0), (1.0, 0.5)])
def test_gm_with_one_radius_is_exactly_crown_ibp(step, kappa):
    model = tiny_cnn()
    x, y = batch()
    kw = dict(COMMON, kappa_start=kappa[0], kappa_end=kappa[1], beta_start=1.0, beta_end=0.2)
    ci = obj.CrownIBPTraining(**kw)
    for weight in ("inverse", "uniform", "linear"):
        gm = obj.GMCrownIBPTraining(gm_n=1, gm_weight=weight, **kw)
        p = progress_at(step)
        l1, m1 = ci.loss(model, x, y, p)
        l2, m2 = gm.loss(model, x, y, p)
        assert torch.equal(l1, l2)
        for k in ("loss", "rob_loss", "nat_loss", "acc", "verified_acc", "eps", "kappa", "beta"):
            assert m1[k] == m2[k], k
        g1 = torch.autograd.grad(l1, list(model.parameters()))
        g2 = torch.autograd.grad(l2, list(model.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(g1, g2))


@pytest.mark.parametrize("relaxation", ["per_radius", "shared"])
def test_gm_loss_equals_loop_over_separate_bound_calls(relaxation):
    model = tiny_cnn(1).double()
    x, y = batch(1)
    x = x.double()
    gm = obj.GMCrownIBPTraining(gm_n=4, gm_weight="inverse", gm_relaxation=relaxation, **COMMON)
    p = progress_at(30)  # mid-ramp: eps = 0.03 * 20 / 40, beta = 0.5
    v = gm.values(p)
    assert v["eps"] == pytest.approx(0.015) and v["beta"] == pytest.approx(0.5)
    loss, metrics = gm.loss(model, x, y, p)
    radii = obj.gm_radii(4, v["eps"], 0.03)
    w = obj.gm_weights(4, "inverse")
    if relaxation == "per_radius":
        terms = [obj.robust_ce(bounds.margin_bounds(model, x, y, r, beta=v["beta"]), y) for r in radii]
    else:  # one CROWN relaxation on the largest box, concretised on each radius' box
        lo_big, hi_big = bounds.input_box(x, radii[-1])
        C = bounds.margin_spec(y, 10, torch.float64)
        A, d = bounds.linear_bounds(model, lo_big, hi_big, C)
        terms = []
        for r in radii:
            lo, hi = bounds.input_box(x, r)
            m = v["beta"] * bounds.concretize(A, d, lo, hi) + (1 - v["beta"]) * bounds.ibp(model, lo, hi, C)[0]
            terms.append(obj.robust_ce(m, y))
    expected = sum(c * t for c, t in zip(w, terms))  # kappa = 0 by default: pure robust loss
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    assert metrics["rob_loss"] == pytest.approx(expected.item())


def test_objective_metrics_and_gradients():
    model = tiny_cnn(2)
    x, y = batch(2)
    objectives = [
        obj.IBPTraining(**COMMON),
        obj.CrownIBPTraining(**COMMON, kappa_start=1.0, kappa_end=0.5),
        obj.GMCrownIBPTraining(**COMMON, gm_n=3, gm_weight="exp"),
        obj.GMCrownIBPTraining(**dict(COMMON, schedule="smoothed"), gm_n=3, gm_relaxation="shared", gm_r_relative_to="final"),
    ]
    for o in objectives:
        model.zero_grad()
        loss, m = o.loss(model, x, y, progress_at(33))
        loss.backward()
        for k in ("loss", "nat_loss", "rob_loss", "acc", "verified_acc", "eps", "kappa", "beta"):
            assert isinstance(m[k], float) and math.isfinite(m[k]), (o.name, k)
        assert 0 < m["eps"] < 0.03
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, (o.name, name)
    # IBP: kappa 1 -> 0.5 by default and no beta.
    v = obj.IBPTraining(**COMMON).values(progress_at(50))
    assert v == {"eps": 0.03, "kappa": 0.5, "beta": 0.0}


def test_objectives_are_pure_functions_of_progress():
    """Two fresh instances at the same step give identical losses: nothing is carried between calls."""
    model = tiny_cnn(3)
    x, y = batch(3)
    a = obj.GMCrownIBPTraining(**COMMON, gm_n=3)
    for s in (5, 17, 44):
        a.loss(model, x, y, progress_at(s))
    b = obj.GMCrownIBPTraining(**COMMON, gm_n=3)
    la, _ = a.loss(model, x, y, progress_at(21))
    lb, _ = b.loss(model, x, y, progress_at(21))
    assert torch.equal(la, lb)


def test_objective_parameter_validation():
    with pytest.raises(TypeError):
        obj.IBPTraining(**COMMON, beta_end=0.5)
    with pytest.raises(ValueError):
        obj.GMCrownIBPTraining(**COMMON, gm_weight="quadratic")
    with pytest.raises(ValueError):
        obj.GMCrownIBPTraining(**COMMON, gm_relaxation="lazy")
    with pytest.raises(ValueError):
        obj.CrownIBPTraining(**dict(COMMON, schedule="step"))
    with pytest.raises(ValueError):
        obj.CrownIBPTraining(**COMMON, kappa_end=1.5)
    assert obj.CrownIBPTraining(eps_max="8/255").eps_max == pytest.approx(8 / 255)


def test_gm_training_smoke_improves_verified_accuracy():
    """A few dozen GM steps on separable synthetic data with an eps ramp: the verified accuracy
    under the training bound ends well above its start (the loss is trainable end to end)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n, K = 256, 3
    y = torch.randint(0, K, (n,), generator=g)
    centers = torch.tensor([[0.2, 0.2, 0.8, 0.5], [0.8, 0.3, 0.2, 0.5], [0.5, 0.8, 0.5, 0.2]])
    x = (centers[y] + 0.05 * torch.randn(n, 4, generator=g)).clamp(0, 1).view(n, 1, 2, 2)
    model = nn.Sequential(Normalize([0.5], [0.25]), *cert.mlp(1, 2, K, hidden_sizes=(32, 32)))
    init = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    gm = obj.GMCrownIBPTraining(eps_max=0.08, start=1, length=3, gm_n=3, kappa_start=1.0, kappa_end=0.5)
    spe, epochs = 8, 6
    for step in range(spe * epochs):
        idx = torch.arange(step % spe * 32, step % spe * 32 + 32)
        loss, m = gm.loss(model, x[idx], y[idx], Progress(step // spe, step, spe, epochs))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        first = bounds.verified(init, x, y, 0.08, method="crown_ibp").float().mean()
        last = bounds.verified(model, x, y, 0.08, method="crown_ibp").float().mean()
    assert m["eps"] == 0.08
    assert last > 0.8 and last > first + 0.5


# ----------------------------------------------------------------------------------------------
# Model family
# ----------------------------------------------------------------------------------------------

MODELS = ["dm_small", "dm_medium", "dm_large", "crownibp_cnn_2layer", "crownibp_cnn_3layer", "crownibp_cnn_4layer", "mlp"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("geom", [(1, 28), (3, 32)])
def test_models_build_for_mnist_and_cifar(name, geom):
    c, s = geom
    kw = {"hidden_sizes": (16,)} if name == "mlp" else {"width": 0.125 if name.startswith("dm") else 1, "linear_size": 16}
    body = getattr(cert, name)(c, s, 10, **kw)
    assert isinstance(body, nn.Sequential)
    bounds.network_layers(body)  # only layers the bound engine supports
    assert body(torch.rand(2, c, s, s)).shape == (2, 10)


def test_model_sizes_match_the_reference_architectures():
    count = lambda m: sum(p.numel() for p in m.parameters())
    # DM-large on CIFAR: convs 1792 + 36928 + 73856 + 147584 + 147584, FC 16*16*128*512 + 512,
    # 512*10 + 10 = 17.2 M parameters.
    assert count(cert.dm_large(3, 32, 10)) == 407_744 + 16_777_728 + 5_130
    # DM-small on MNIST: conv 16 (4x4/2) -> 13x13, conv 32 (4x4/1) -> 10x10, FC 3200 -> 100 -> 10.
    assert count(cert.dm_small(1, 28, 10)) == (16 * 16 + 16) + (32 * 16 * 16 + 32) + (3200 * 100 + 100) + (100 * 10 + 10)
    # DM-medium on CIFAR: 32 -> 30 -> 14 -> 12 -> 5, so FC 64*5*5 = 1600 -> 512.
    assert cert.dm_medium(3, 32, 10)[-5].in_features == 1600
    # CROWN-IBP cnn_3layer_fixed, kernel 5 on MNIST: h = (28 - 4) // 4 = 6.
    assert cert.crownibp_cnn_3layer(1, 28, 10, width=2, kernel_size=5)[-3].in_features == 16 * 6 * 6
    assert cert.crownibp_cnn_4layer(3, 32, 10, width=4, linear_size=512)[-5].in_features == 32 * 8 * 8


def test_models_go_through_the_registry():
    from robrepro import models

    net = models.build("dm_small", in_channels=3, image_size=32, num_classes=10, mean=CIFAR_NORM[0], std=CIFAR_NORM[1], width=0.25)
    assert isinstance(net[0], Normalize)
    assert bounds.verified(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), 0.0).shape == (2,)


# ----------------------------------------------------------------------------------------------
# The certified >= attack audit: recomputed from per-point results, it fails on a broken bound
# ----------------------------------------------------------------------------------------------


class _Plan:
    """The two things the report's certified audit reads of a plan: job keys and their files."""

    def __init__(self, doc):
        self.jobs = {("gm", "run-a", "verify", "certified"): None}
        self.docs = {"run-a.json": doc}

    def job_file(self, *key):
        return f"{key[1]}.json"


def _certified_rows(doc):
    from robrepro.report import certified_audit

    plan = _Plan(doc)
    return certified_audit(plan, "gm", plan.docs)


def _evaluate(monkeypatch=None, broken=False):
    from robrepro.attacks import make_attack
    from robrepro.evaluations.certified import certified_errors

    m, x, y = tiny_certifiable_net(48)
    if broken:
        # A planted bug: the bound certifies every point, including those the attack breaks.
        monkeypatch.setattr(bounds, "verified_radii", lambda model, xb, yb, radii, method="ibp": torch.ones(len(radii), len(yb), dtype=torch.bool))
    return certified_errors(m, x, y, [0.05, 0.3], ["ibp"], make_attack({"name": "pgd", "steps": 10}), batch_size=16)


def test_a_sound_bound_passes_the_recomputed_audit():
    from robrepro.report import certified_summary

    doc = _evaluate()
    rows = _certified_rows(doc)
    assert len(rows) == 2 and all(r["ok"] and r["check"] == "per point" and r["violations"] == 0 for r in rows)
    assert certified_summary(type("P", (), {"certified": rows})()) == "certified >= attack: 2/2 hold (2 checked per point)"


def test_a_broken_bound_fails_the_certified_audit(monkeypatch):
    from robrepro.evaluations.soundness import soundness

    doc = _evaluate(monkeypatch, broken=True)  # the job itself no longer aborts: it stores the evidence
    at_large = doc["per_eps"][1]
    assert soundness(at_large)["ibp"]["violations"] > 0
    rows = _certified_rows(doc)
    assert not rows[1]["ok"] and rows[1]["violations"] > 0


def test_masks_of_other_lengths_never_pass_the_recomputed_audit():
    from robrepro.evaluations.soundness import soundness

    # Four attacked points, all broken; eight "certified" ones: zip would pair only the first four.
    entry = {"attack_robust": "0000", "attack_err": 1.0, "verified": {"ibp": "00001111"}, "verified_err": {"ibp": 0.0}}
    got = soundness(entry)["ibp"]
    assert got["violations"] == 0 and not got["consistent"]


def test_stored_errors_that_disagree_with_the_per_point_results_fail_the_audit():
    doc = _evaluate()
    e = doc["per_eps"][0]
    e["verified_err"]["ibp"] -= 0.1  # a summary number that no longer matches the points behind it
    rows = _certified_rows(doc)
    assert not rows[0]["ok"] and rows[0]["violations"] == 0 and "disagree" in rows[0]["check"] and rows[1]["ok"]
