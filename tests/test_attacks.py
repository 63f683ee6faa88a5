"""The attack suite: stays in the threat model and is at least as strong as torchattacks."""

import pytest
import torch
from torch import nn

from robrepro import models
from robrepro.attacks import attack_mode, fgsm, make_attack, pgd, robust_accuracy

torchattacks = pytest.importorskip("torchattacks")


def _trained_cnn(seed=0):
    """A small CNN trained for a few steps on a separable toy problem, so attacks have work to do."""
    torch.manual_seed(seed)
    m = nn.Sequential(models.Normalize([0.5], [0.25]), nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
    g = torch.Generator().manual_seed(seed)
    protos = 0.4 + 0.2 * torch.rand(10, 1, 14, 14, generator=g)  # close classes: small radii matter
    y = torch.randint(0, 10, (512,), generator=g)
    x = (protos[y] + 0.05 * torch.randn(512, 1, 14, 14, generator=g)).clamp(0, 1)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    m.eval()
    xt = (protos[y[:128]] + 0.05 * torch.randn(128, 1, 14, 14, generator=g)).clamp(0, 1)
    return m, xt, y[:128]


@pytest.fixture(scope="module")
def setup():
    return _trained_cnn()


def _acc(m, x, y):
    with torch.no_grad():
        return (m(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("eps", [0.01, 0.05, 0.2])
def test_attacks_stay_in_ball_and_box(setup, eps):
    m, x, y = setup
    g = torch.Generator().manual_seed(0)
    with attack_mode(m):
        for xa in (fgsm(m, x, y, eps), pgd(m, x, y, eps, g, steps=5, restarts=2)):
            assert (xa - x).abs().max() <= eps + 1e-6
            assert xa.min() >= 0 and xa.max() <= 1
            assert not torch.equal(xa, x)


def test_model_is_accurate_and_pgd_beats_fgsm(setup):
    m, x, y = setup
    assert _acc(m, x, y) > 0.9  # the fixture model really learned: otherwise the test proves nothing
    g = torch.Generator().manual_seed(0)
    with attack_mode(m):
        a_fgsm = _acc(m, fgsm(m, x, y, 0.05), y)
        a_pgd = _acc(m, pgd(m, x, y, 0.05, g, steps=20), y)
    assert a_pgd <= a_fgsm
    assert a_pgd < _acc(m, x, y)


@pytest.mark.parametrize("eps", [0.02, 0.05, 0.1])
def test_at_least_as_strong_as_torchattacks(setup, eps):
    m, x, y = setup
    torch.manual_seed(1)
    ref_fgsm = _acc(m, torchattacks.FGSM(m, eps=eps)(x, y), y)
    ref_pgd = _acc(m, torchattacks.PGD(m, eps=eps, alpha=eps / 4, steps=10, random_start=True)(x, y), y)
    res = robust_accuracy(m, (x * 255).round().to(torch.uint8), y, [eps], make_attack({"name": "fgsm"}), batch_size=64)
    ours_fgsm = res["per_eps"][0]["robust_acc"]
    res = robust_accuracy(m, (x * 255).round().to(torch.uint8), y, [eps], make_attack({"name": "pgd", "steps": 10, "alpha_rel": 0.25}), batch_size=64, seed=1)
    ours_pgd = res["per_eps"][0]["robust_acc"]
    # uint8 quantisation of the clean images can move a borderline point: allow one example.
    slack = 1 / len(y) + 1e-9
    assert ours_fgsm <= ref_fgsm + slack
    assert ours_pgd <= ref_pgd + slack


def test_each_radius_is_attacked_alone_and_cumulative_is_the_worst_case(setup):
    m, x, y = setup
    x8 = (x * 255).round().to(torch.uint8)
    grid = [0.0, 0.01, 0.03, 0.06, 0.1]
    # Deterministic PGD (no random start), so that the grid and the single-radius runs are comparable.
    atk = make_attack({"name": "pgd", "steps": 10, "random_start": False})
    res = robust_accuracy(m, x8, y, grid, atk, batch_size=50)
    assert res["mode"] == "independent"
    per = res["per_eps"]
    assert per[0]["robust_acc"] == pytest.approx(res["clean_acc"])
    # The paper's measurement: every radius attacked alone, from every clean-correct point.
    assert all(e["attacked"] == round(res["clean_acc"] * len(y)) for e in per[1:])
    for eps, e in zip(grid[1:], per[1:]):
        alone = robust_accuracy(m, x8, y, [eps], atk, batch_size=50)["per_eps"][0]["robust_acc"]
        assert e["robust_acc"] == pytest.approx(alone)
    # The cumulative column is the worst case up to eps: monotone, and never above the radius alone.
    cum = [e["robust_acc_cumulative"] for e in per]
    assert cum == sorted(cum, reverse=True)
    assert all(c <= e["robust_acc"] + 1e-12 for c, e in zip(cum, per))
    # The cheap sweep (only survivors re-attacked) measures exactly the same cumulative column.
    sweep = robust_accuracy(m, x8, y, grid, atk, batch_size=50, independent=False)
    assert [e["robust_acc_cumulative"] for e in sweep["per_eps"]] == pytest.approx(cum)
    assert all(e["robust_acc"] is None for e in sweep["per_eps"])
    assert sweep["per_eps"][-1]["attacked"] < sweep["per_eps"][1]["attacked"]


def test_attack_mode_restores_training_state(setup):
    m, x, y = setup
    m.train()
    with attack_mode(m):
        assert not m.training and not any(p.requires_grad for p in m.parameters())
    assert m.training and all(p.requires_grad for p in m.parameters())
    m.eval()


def test_early_stop_keeps_every_success(setup):
    m, x, y = setup
    with attack_mode(m):
        full = pgd(m, x, y, 0.035, torch.Generator().manual_seed(4), steps=10)
        early = pgd(m, x, y, 0.035, torch.Generator().manual_seed(4), steps=10, early_stop=True)
        fooled_full = m(full).argmax(1) != y
        fooled_early = m(early).argmax(1) != y
    assert 0 < fooled_full.sum() < len(y)  # a radius where the attack is neither hopeless nor total
    assert bool((fooled_early | ~fooled_full).all())  # every point the full run broke stays broken
    assert (early - x).abs().max() <= 0.035 + 1e-6
