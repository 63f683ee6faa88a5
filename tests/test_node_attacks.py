"""NODE paper attacks: DI2-FGSM, Square, SPSA, AutoAttack, solver-twin transfer, Boundary (l2-min)."""

import pytest
import torch
from torch import nn

from robrepro import models
from robrepro.attacks import ATTACKS, attack_mode, input_domain, make_attack, registry
from robrepro.attacks.di2fgsm import diverse_input
from robrepro.evaluations.min_norm import accuracy_at_thresholds, min_norm_distances
from robrepro.models.ode_twin import TwinBlock, count_nfe, nfe_per_call, solver_twin
from robrepro.models.odenet import ODEBlock

torchattacks = pytest.importorskip("torchattacks")


def _toy(seed=0, n=96, smooth=False):
    """A small CNN trained on close prototype classes, so small radii matter.

    ``smooth``: prototypes are upsampled 4x4 patterns, so a shift by a pixel or two (DI2-FGSM's
    input diversity) keeps an image's class; otherwise they are pixel noise, which such a shift destroys.
    """
    torch.manual_seed(seed)
    m = nn.Sequential(models.Normalize([0.5], [0.25]), nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
    g = torch.Generator().manual_seed(seed)
    protos = 0.4 + 0.2 * torch.rand(10, 1, 14, 14, generator=g)
    if smooth:
        protos = nn.functional.interpolate(0.3 + 0.4 * torch.rand(10, 1, 4, 4, generator=g), size=(14, 14), mode="bilinear")
    y = torch.randint(0, 10, (512,), generator=g)
    x = (protos[y] + 0.05 * torch.randn(512, 1, 14, 14, generator=g)).clamp(0, 1)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    m.eval()
    xt = (protos[y[:n]] + 0.05 * torch.randn(n, 1, 14, 14, generator=g)).clamp(0, 1)
    return m, xt, y[:n]


@pytest.fixture(scope="module")
def toy():
    return _toy()


def _acc(m, x, y):
    with torch.no_grad():
        return (m(x).argmax(1) == y).float().mean().item()


LINF = {
    # Bilinear: this toy's classes are pixel patterns that nearest-neighbour shifts destroy.
    "di2fgsm": {"steps": 10, "mode": "bilinear"},
    "square": {"n_queries": 150},
    "spsa": {"steps": 10, "n_samples": 32},
    "autoattack": {"apgd_steps": 3, "fab_steps": 3, "square_queries": 30},
    "transfer_twin": {"steps": 10},
}


def test_threat_models_are_declared():
    reg = registry()
    assert {n: reg[n].threat for n in LINF} == dict.fromkeys(LINF, "linf")
    assert reg["boundary"].threat == "l2-min" and reg["boundary"].access == "decision"
    assert reg["square"].access == reg["spsa"].access == "black-box"
    assert reg["transfer_twin"].access == "transfer"


@pytest.mark.parametrize("name", sorted(LINF))
def test_linf_attacks_stay_in_ball_and_box_and_do_work(toy, name):
    m, x, y = toy
    eps = 0.08
    atk = make_attack({"name": name, **LINF[name]})
    with attack_mode(m):
        xa = atk(m, x, y, eps, torch.Generator().manual_seed(0))
    assert (xa - x).abs().max() <= eps + 1e-6
    assert xa.min() >= 0 and xa.max() <= 1
    assert _acc(m, xa, y) < _acc(m, x, y) - 0.1  # the attack really attacks


def test_attacks_honour_a_narrower_input_box(toy):
    m, x, y = toy
    with attack_mode(m), input_domain(0.3, 0.7):
        xc = x.clamp(0.3, 0.7)
        for name in ("square", "autoattack", "di2fgsm"):
            xa = make_attack({"name": name, **LINF[name]})(m, xc, y, 0.2, torch.Generator().manual_seed(0))
            assert xa.min() >= 0.3 - 1e-6 and xa.max() <= 0.7 + 1e-6, name


def test_torchattacks_wrappers_leave_the_global_rng_alone(toy):
    m, x, y = toy
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with attack_mode(m):
        make_attack({"name": "square", "n_queries": 20})(m, x[:8], y[:8], 0.05, torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), expected)


@pytest.fixture(scope="module")
def smooth_toy():
    return _toy(smooth=True)


@pytest.mark.parametrize("eps", [0.04, 0.06])
def test_di2fgsm_matches_torchattacks_and_is_at_least_as_strong(smooth_toy, eps):
    """Given the same transforms, our update is torchattacks' DIFGSM update; early stop only adds."""
    m, x, y = smooth_toy
    params = {"steps": 10, "alpha": eps / 10, "diversity_prob": 0.5, "resize_rate": 0.9, "mode": "bilinear"}
    fooled_any = False
    for seed in range(3):
        ref = torchattacks.DIFGSM(m, eps=eps, alpha=eps / 10, steps=10, decay=0.0, resize_rate=0.9, diversity_prob=0.5)
        g_ref = torch.Generator().manual_seed(seed)
        ref.input_diversity = lambda z, g=g_ref: diverse_input(z, g, resize_rate=0.9, diversity_prob=0.5, mode="bilinear")
        x_ref = ref(x, y)
        with attack_mode(m):
            plain = ATTACKS["di2fgsm"].fn(m, x, y, eps, torch.Generator().manual_seed(seed), early_stop=False, **params)
            ours = ATTACKS["di2fgsm"].fn(m, x, y, eps, torch.Generator().manual_seed(seed), **params)
        assert torch.allclose(plain, x_ref, atol=1e-6)
        assert _acc(m, ours, y) <= _acc(m, x_ref, y)
        fooled_any |= _acc(m, x_ref, y) < 1.0
    assert fooled_any  # a radius where the comparison means something


def test_input_diversity_draws_sizes_offsets_and_probability_like_the_reference():
    """torchattacks' convention on small images: side r in [floor(0.9 s), s), zero-padded back to s
    at an offset in [0, s - r); applied with probability p."""
    g = torch.Generator().manual_seed(0)
    ones = torch.ones(1, 1, 14, 14)
    sizes, offsets, applied = set(), set(), 0
    for _ in range(400):
        out = diverse_input(ones, g, resize_rate=0.9, diversity_prob=0.5, mode="nearest")
        if out is ones:
            continue
        applied += 1
        rows = out[0, 0].sum(1).nonzero().squeeze(1)
        cols = out[0, 0].sum(0).nonzero().squeeze(1)
        r = rows.numel()
        assert cols.numel() == r and out.shape == ones.shape
        sizes.add(r)
        offsets.add((int(rows[0]), int(cols[0])))
        assert 0 <= rows[0] < 14 - r and 0 <= cols[0] < 14 - r
    assert sizes == {12, 13}
    assert {(0, 0), (1, 1), (0, 1)} <= offsets
    assert 160 < applied < 240


def test_di2fgsm_iterates_beat_its_own_first_step(toy):
    m, x, y = toy
    with attack_mode(m):
        one = _acc(m, make_attack({"name": "di2fgsm", "steps": 1, "alpha_rel": 1.0, "diversity_prob": 0.0})(m, x, y, 0.05), y)
        many = _acc(m, make_attack({"name": "di2fgsm", "steps": 10, "alpha_rel": 0.25, "diversity_prob": 0.0})(m, x, y, 0.05), y)
    assert many < one


# --- ODE nets: solver twins, NFE, transfer ------------------------------------------------------


@pytest.fixture(scope="module")
def odenet():
    torch.manual_seed(0)
    m = models.build("odenet", in_channels=1, image_size=14, num_classes=10, mean=[0.5], std=[0.25], channels=8, end_time=1.0, rtol=1e-3, atol=1e-3)
    return m.eval()


def test_solver_twin_shares_weights_and_leaves_the_original_alone(odenet):
    twin = solver_twin(odenet, method="rk4", n_steps=4)
    assert {p.data_ptr() for p in twin.parameters()} == {p.data_ptr() for p in odenet.parameters()}
    assert any(isinstance(mod, TwinBlock) for mod in twin.modules())
    blocks = [mod for mod in odenet if isinstance(mod, ODEBlock)]
    assert blocks and blocks[0].method == "dopri5"  # the original still integrates adaptively
    x = torch.rand(4, 1, 14, 14)
    with torch.no_grad():
        out, out_twin = odenet(x), twin(x)
        assert nfe_per_call(twin) == 4 * 4  # RK4: 4 evaluations per step, 4 steps
        with torch.no_grad():
            next(odenet[-1].parameters()).add_(1.0)  # a change of a weight is seen by the twin
        assert not torch.allclose(twin(x), out_twin)
        next(odenet[-1].parameters()).sub_(1.0)
    assert torch.allclose(out, out_twin, atol=1e-2)  # nearly the same function


def test_count_nfe_counts_every_evaluation_of_an_attack(odenet):
    x, y = torch.rand(4, 1, 14, 14), torch.randint(0, 10, (4,))
    with attack_mode(odenet), count_nfe(odenet) as c:
        make_attack({"name": "pgd", "steps": 2})(odenet, x, y, 0.1, torch.Generator().manual_seed(0))
    # Two PGD steps, one forward pass each (no final pass: no restart follows).
    assert c.forward_calls >= 2 and c.evaluations >= 6 * c.forward_calls  # dopri5: >= 6 evaluations a solve
    with attack_mode(odenet), count_nfe(odenet) as t:
        make_attack({"name": "transfer_twin", "steps": 2, "n_steps": 2})(odenet, x, y, 0.1, torch.Generator().manual_seed(0))
    assert t.evaluations > 0  # the twin's evaluations are the original's vector field


def test_transfer_from_the_twin_stays_in_ball(odenet):
    x, y = torch.rand(4, 1, 14, 14), torch.randint(0, 10, (4,))
    with attack_mode(odenet):
        xa = make_attack({"name": "transfer_twin", "steps": 2, "n_steps": 2})(odenet, x, y, 0.05, torch.Generator().manual_seed(0))
    assert (xa - x).abs().max() <= 0.05 + 1e-6 and not torch.equal(xa, x)


# --- Boundary attack (l2-min) -------------------------------------------------------------------


def test_boundary_reports_true_distances_and_improves_with_steps(toy):
    m, x, y = toy
    x, y = x[:12], y[:12]
    fn = ATTACKS["boundary"].fn
    with attack_mode(m):
        short = fn(m, x, y, torch.Generator().manual_seed(0), steps=1, init_steps=20, init_directions=50)
        long = fn(m, x, y, torch.Generator().manual_seed(0), steps=150, init_steps=20, init_directions=50)
        pred = m(long["x_adv"]).argmax(1)
    found = torch.isfinite(long["distance"])
    assert found.sum() >= 10
    # Every reported distance is that of a real adversarial point.
    assert bool((pred[found] != y[found]).all())
    assert torch.allclose(long["distance"][found], (long["x_adv"] - x).flatten(1).norm(dim=1)[found], atol=1e-5)
    assert long["distance"][found].median() < short["distance"][found].median()
    assert long["queries"][0] > short["queries"][0] > 0
    assert long["x_adv"].min() >= 0 and long["x_adv"].max() <= 1


def test_min_norm_evaluation_resumes_after_a_kill_with_identical_numbers(toy, tmp_path):
    m, x, y = toy
    x8, y = (x[:12] * 255).round().to(torch.uint8), y[:12]
    fn = ATTACKS["boundary"].fn

    def atk(model, xb, yb, g):
        return fn(model, xb, yb, g, steps=20, init_steps=20, init_directions=50)

    full = min_norm_distances(m, x8, y, atk, batch_size=4, seed=1, progress_bar=False)

    def kill(b):
        if b == 1:
            raise KeyboardInterrupt

    state = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        min_norm_distances(m, x8, y, atk, batch_size=4, seed=1, state_path=state, key="k", progress_bar=False, on_batch=kill)
    again = min_norm_distances(m, x8, y, atk, batch_size=4, seed=1, state_path=state, key="k", progress_bar=False)
    assert again["batches_resumed"] == 2
    assert torch.equal(again["distance"], full["distance"]) and torch.equal(again["queries"], full["queries"])
    other = min_norm_distances(m, x8, y, atk, batch_size=4, seed=1, state_path=state, key="other", progress_bar=False)
    assert other["batches_resumed"] == 0  # a state written for another evaluation is not resumed


def test_accuracy_at_thresholds():
    d = torch.tensor([0.0, 0.5, 1.0, float("inf")])
    assert accuracy_at_thresholds(d, [0.0, 0.5, 2.0]) == [0.75, 0.5, 0.25]


def test_spsa_eps_relative_rate_crosses_a_large_ball_an_absolute_rate_cannot(toy):
    """Adam moves a pixel by about lr per step: lr 0.01 for 3 steps stays near the centre of a 0.3-ball,
    lr_rel 0.5 reaches its surface (and breaks more points)."""
    m, x, y = toy
    eps, out = 0.3, {}
    for key, kw in {"abs": {"lr": 0.01}, "rel": {"lr_rel": 0.5}}.items():
        atk = make_attack({"name": "spsa", "steps": 3, "n_samples": 16, **kw})
        with attack_mode(m):
            out[key] = atk(m, x, y, eps, torch.Generator().manual_seed(0))
    assert (out["abs"] - x).abs().max() <= 0.035
    assert (out["rel"] - x).abs().max() >= 0.2
    assert _acc(m, out["rel"], y) <= _acc(m, out["abs"], y)


def test_twin_agreement_measures_how_often_the_surrogate_predicts_like_the_model():
    from robrepro.attacks import predict
    from robrepro.attacks.transfer import twin_agreement

    torch.manual_seed(0)
    m = models.build("odenet", in_channels=1, image_size=14, num_classes=10, mean=[0.5], std=[0.25], channels=8, end_time=1.0, rtol=1e-3, atol=1e-3)
    with torch.no_grad():  # strong dynamics and a sharp readout, so that a crude solver changes predictions
        m[10].bias.zero_()
        m[10].weight.mul_(100)
        for p in m[5].parameters():
            p.mul_(3)
    m.eval()
    x = (torch.rand(64, 1, 14, 14) * 255).round().to(torch.uint8)
    assert len(predict(m, x, 32, "cpu").unique()) > 1
    close = twin_agreement(m, x, {"method": "rk4", "n_steps": 32}, batch_size=32)
    crude = twin_agreement(m, x, {"method": "euler", "n_steps": 1}, batch_size=32)
    assert close >= 0.95 and crude < close  # one Euler step is a poor surrogate of dopri5


def test_the_suite_prints_its_progress(toy, capsys):
    from robrepro.evaluations.attack_suite import run_suite

    m, x, y = toy
    run_suite(m, (x * 255).round().to(torch.uint8), y, {"pgd": {"name": "pgd", "steps": 2}}, [0.05, 0.1], batch_size=32)
    err = capsys.readouterr().err
    assert "[suite] pgd eps=0.05 batch 1/" in err and "[suite] pgd eps=0.1 batch" in err
