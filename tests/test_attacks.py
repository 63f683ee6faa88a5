"""The attack suite: stays in the threat model and is at least as strong as torchattacks.

Strength is compared on a small MNIST model trained for the session, at radii where the reference
attack leaves neither all nor none of the points (asserted first), over several seeds. Deliberately
weakened variants (fewer steps, a smaller step, FGSM for PGD, no random start, half the radius)
run through the same comparison and must fail it: the comparison is shown able to fail.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torchattacks  # a test dependency: missing, it fails the suite instead of skipping it
from torch import nn

from robrepro.attacks import attack_mode, fgsm, make_attack, pgd, robust_accuracy


@pytest.fixture(scope="module")
def setup(mnist_model):
    """The session's MNIST model with its test images as floats in [0, 1]."""
    m, x8, y = mnist_model
    return m, x8.float() / 255, y


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


# --------------------------------------------------------------------- strength against torchattacks


@dataclass(frozen=True)
class Reference:
    """One attack of the suite (its config spec) and torchattacks' attack at the same settings."""

    ours: dict
    reference: Callable[[nn.Module, float], Callable]
    radii: tuple[float, ...]  # where the reference leaves neither 0 % nor 100 % on the session model
    tol: float = 0.01  # robust accuracy may exceed the reference's by this much (mean over seeds)


# One row per attack. A new attack of the suite adds a row (and its weakened variants below).
REFERENCES = {
    "fgsm": Reference({"name": "fgsm"}, lambda m, eps: torchattacks.FGSM(m, eps=eps), radii=(0.03, 0.06, 0.09)),
    "pgd": Reference(
        {"name": "pgd", "steps": 10, "alpha_rel": 0.25, "random_start": True},
        lambda m, eps: torchattacks.PGD(m, eps=eps, alpha=eps / 4, steps=10, random_start=True),
        radii=(0.03, 0.06, 0.09),
    ),
}
SEEDS = (0, 1, 2)


def _weaker(spec: dict, scale_eps: float = 1.0):
    inner = make_attack(spec)
    return lambda model, x, y, eps, generator=None: inner(model, x, y, eps * scale_eps, generator)


# (attack row, how it is weakened, the weakened attack): each must fail the comparison of its row.
WEAKENED = [
    ("fgsm", "half the step", _weaker({"name": "fgsm"}, 0.5)),
    ("pgd", "fewer steps", _weaker({"name": "pgd", "steps": 3, "alpha_rel": 0.25})),
    ("pgd", "smaller step", _weaker({"name": "pgd", "steps": 10, "alpha_rel": 0.05})),
    ("pgd", "fgsm instead", _weaker({"name": "fgsm"})),
    ("pgd", "no random start", _weaker({"name": "pgd", "steps": 10, "alpha_rel": 0.25, "random_start": False})),
    ("pgd", "half the radius", _weaker({"name": "pgd", "steps": 10, "alpha_rel": 0.25}, 0.5)),
]


def _ref_acc(model, atk, x, y, seed):
    torch.manual_seed(seed)  # torchattacks draws its random start from the global generator
    xa = atk(x, y)
    with torch.no_grad():
        return (model(xa).argmax(1) == y).float().mean().item()


def _randomised(run) -> bool:
    """Whether an attack's points depend on its seed (a random start), from two runs."""
    return not torch.equal(run(0), run(1))


_REF_CACHE: dict = {}


def _ref_mean(model, row: Reference, xf, y, eps) -> float:
    """The reference's robust accuracy at eps, mean over the seeds (computed once per session)."""
    key = (id(model), row.ours["name"], eps)
    if key not in _REF_CACHE:
        _REF_CACHE[key] = sum(_ref_acc(model, row.reference(model, eps), xf, y, s) for s in SEEDS) / len(SEEDS)
    return _REF_CACHE[key]


def compare(model, x8, y, attack, row: Reference) -> list[str]:
    """Reasons why ``attack`` is not at least as strong as the reference of ``row`` (empty: it is).

    At every radius of the row, robust accuracy (through ``robust_accuracy``, the evaluation path),
    averaged over seeds, must not exceed the reference's by more than ``row.tol``; and the attack
    must draw a random start exactly when the reference does.
    """
    xf = x8.float() / 255
    problems = []
    for eps in row.radii:
        ref = _ref_mean(model, row, xf, y, eps)
        ours = sum(robust_accuracy(model, x8, y, [eps], attack, batch_size=len(y), seed=s)["per_eps"][0]["robust_acc"] for s in SEEDS) / len(SEEDS)
        if ours > ref + row.tol:
            problems.append(f"eps={eps}: robust accuracy {ours:.3f} > reference {ref:.3f} + {row.tol}")
    eps = row.radii[len(row.radii) // 2]

    def ref_run(s):
        torch.manual_seed(s)
        return row.reference(model, eps)(xf, y)

    with attack_mode(model):
        ours_random = _randomised(lambda s: attack(model, xf, y, eps, torch.Generator().manual_seed(s)))
    if ours_random != _randomised(ref_run):
        problems.append(f"random start: ours {ours_random}, reference {not ours_random}")
    return problems


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_radii_are_informative(mnist_model, name):
    """The comparison means something only where the reference neither fails nor wins everywhere."""
    m, x8, y = mnist_model
    xf = x8.float() / 255
    with torch.no_grad():
        assert (m(xf).argmax(1) == y).float().mean() > 0.9  # the session model really learned
    row = REFERENCES[name]
    for eps in row.radii:
        acc = _ref_acc(m, row.reference(m, eps), xf, y, 0)
        assert 0.1 <= acc <= 0.9, f"{name} at eps={eps}: reference robust accuracy {acc:.3f}"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_at_least_as_strong_as_torchattacks(mnist_model, name):
    m, x8, y = mnist_model
    row = REFERENCES[name]
    assert compare(m, x8, y, make_attack(row.ours), row) == []


@pytest.mark.parametrize("name, how, attack", WEAKENED, ids=[f"{n}-{h.replace(' ', '-')}" for n, h, _ in WEAKENED])
def test_a_weakened_attack_fails_the_comparison(mnist_model, name, how, attack):
    m, x8, y = mnist_model
    problems = compare(m, x8, y, attack, REFERENCES[name])
    assert problems, f"{name} weakened ({how}) passed the comparison with torchattacks"


# Bounded attacks without a row above, and where they are checked instead. A new attack must get a
# reference row (and a weakened variant) or an entry here that says why it has none.
CHECKED_ELSEWHERE = {
    "di2fgsm": "tests/test_node_attacks.py: the same update as torchattacks' DIFGSM given the same transforms, and at least as strong",
    "square": "torchattacks' Square itself (the reference), projected onto the ball and box: tests/test_node_attacks.py",
    "autoattack": "torchattacks' AutoAttack itself (the reference): tests/test_node_attacks.py",
    "spsa": "gradient-free estimate with no torchattacks counterpart: tests/test_node_attacks.py (ball, box, does work)",
    "transfer_twin": "a transfer attack from an ODE net's fixed-step twin, no reference: tests/test_node_attacks.py",
    "fgsm_grid": "the paper's 1/255-grid FGSM: tests/test_ssp.py (grid, ball, box)",
    "pgd_grid": "the paper's 1/255-grid PGD: tests/test_ssp.py (grid, ball, box)",
}


def test_every_attack_of_the_suite_is_compared_and_weakened():
    """A new linf attack of the suite needs a reference row and at least one weakened variant."""
    from robrepro.attacks import registry

    linf = {n for n, a in registry().items() if a.threat == "linf"}
    missing = linf - set(REFERENCES) - set(CHECKED_ELSEWHERE)
    assert not missing, f"no torchattacks reference for {sorted(missing)}"
    assert set(CHECKED_ELSEWHERE) <= linf, "an entry of CHECKED_ELSEWHERE names no registered attack"
    assert set(REFERENCES) <= {n for n, _, _ in WEAKENED}


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
