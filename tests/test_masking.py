"""Gradient-masking audit: each rule on hand-made numbers, then a deliberately masked model is flagged
by real attacks while the honest model it wraps passes."""

import json

import pytest
import torch
from torch import nn

from robrepro import models
from robrepro.attacks import make_attack, robust_accuracy
from robrepro.evaluations.masking import HOLDS, MASKING, WEAK, AttackResult, Thresholds, audit

R = [0.1, 0.2]


def _r(label, access, accs, one_step=False):
    return AttackResult(label, access, dict(accs), one_step)


HONEST = [
    _r("fgsm", "white-box", {0.1: 0.50, 0.2: 0.30, 1.0: 0.20}, one_step=True),
    _r("pgd", "white-box", {0.1: 0.40, 0.2: 0.20, 1.0: 0.0}),
    _r("pgd-1000", "white-box", {0.1: 0.39, 0.2: 0.19, 1.0: 0.0}),
    _r("square", "black-box", {0.1: 0.45, 0.2: 0.25}),
]


def test_honest_numbers_hold():
    rows = audit(HONEST, "pgd", R, large_eps=1.0)
    assert [r.verdict for r in rows] == [HOLDS, HOLDS]
    assert rows[0].strongest_attack == "pgd-1000" and rows[0].strongest_acc == 0.39
    assert all(not r.failed for r in rows) and rows[0].rule.startswith("holds")


@pytest.mark.parametrize(
    "change, check",
    [
        (_r("square", "black-box", {0.1: 0.10, 0.2: 0.25}), "white-box>=black-box"),
        (_r("transfer", "transfer", {0.1: 0.10, 0.2: 0.25}), "white-box>=black-box"),
        (_r("fgsm", "white-box", {0.1: 0.30, 0.2: 0.15, 1.0: 0.2}, one_step=True), "iterative>=one-step"),
        (_r("pgd", "white-box", {0.1: 0.40, 0.2: 0.45, 1.0: 0.0}), "monotone-in-eps"),
        (_r("pgd", "white-box", {0.1: 0.40, 0.2: 0.20, 1.0: 0.30}), "near-0-at-large-eps"),
    ],
)
def test_each_sanity_check_fires_and_decides_masking(change, check):
    results = [r for r in HONEST if r.label != change.label] + [change]
    rows = audit(results, "pgd", R, large_eps=1.0)
    row = rows[0]
    assert row.verdict == MASKING and any(f.startswith(check) for f in row.failed)
    assert row.rule.startswith("sanity")


def test_a_stronger_attack_far_below_the_papers_number_is_masking():
    results = HONEST + [_r("pgd-1000x5", "white-box", {0.1: 0.20, 0.2: 0.19, 1.0: 0.0})]
    rows = audit(results, "pgd", R, large_eps=1.0)
    assert rows[0].verdict == MASKING and rows[0].rule.startswith("gap") and rows[0].strongest_attack == "pgd-1000x5"
    assert rows[1].verdict == HOLDS  # at 0.2 the new attack is within the gap
    assert audit(results, "pgd", R, large_eps=1.0, th=Thresholds(gap=0.25))[0].verdict == HOLDS
    # A one-step paper attack far above the strongest is a weak attack, not evidence of masking.
    row = audit(results, "fgsm", R, large_eps=1.0)[0]
    assert row.verdict == WEAK and row.rule.startswith("gap-one-step")


def test_tolerance_absorbs_noise():
    results = [*HONEST[:3], _r("square", "black-box", {0.1: 0.38, 0.2: 0.25})]
    assert audit(results, "pgd", R, large_eps=1.0)[0].verdict == HOLDS  # 0.38 vs 0.39: within tol
    assert audit(results, "pgd", R, large_eps=1.0, th=Thresholds(tol=0.0))[0].verdict == MASKING


# --- real attacks on a deliberately masked model ------------------------------------------------


class _ZeroGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g)


class _NoiseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return torch.randn_like(g)


class Masked(nn.Module):
    """The same function as ``model``, with an input gradient that is zero or noise."""

    def __init__(self, model, kind):
        super().__init__()
        self.model, self.fn = model, {"zero": _ZeroGrad, "noise": _NoiseGrad}[kind]

    def forward(self, x):
        return self.model(self.fn.apply(x))


@pytest.fixture(scope="module")
def vulnerable():
    torch.manual_seed(0)
    m = nn.Sequential(models.Normalize([0.5], [0.25]), nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
    g = torch.Generator().manual_seed(0)
    protos = 0.4 + 0.2 * torch.rand(10, 1, 14, 14, generator=g)
    y = torch.randint(0, 10, (512,), generator=g)
    x = (protos[y] + 0.05 * torch.randn(512, 1, 14, 14, generator=g)).clamp(0, 1)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    m.eval()
    xt = (protos[y[:64]] + 0.05 * torch.randn(64, 1, 14, 14, generator=g)).clamp(0, 1)
    return m, (xt * 255).round().to(torch.uint8), y[:64]


SUITE = {
    "fgsm": ({"name": "fgsm"}, "white-box", True),
    "pgd": ({"name": "pgd", "steps": 10}, "white-box", False),
    "square": ({"name": "square", "n_queries": 200}, "black-box", False),
}


def _measure(model, x8, y, radii):
    out = []
    for label, (spec, access, one_step) in SUITE.items():
        res = robust_accuracy(model, x8, y, radii, make_attack(spec), batch_size=64, seed=0)
        out.append(AttackResult(label, access, {e["eps"]: e["robust_acc"] for e in res["per_eps"]}, one_step))
    return out


@pytest.mark.parametrize("kind", ["zero", "noise"])
def test_the_audit_flags_a_masked_model_and_passes_the_honest_one(vulnerable, kind):
    m, x8, y = vulnerable
    radii, large = [0.06, 0.1], 1.0
    honest = audit(_measure(m, x8, y, radii + [large]), "pgd", radii, large_eps=large)
    assert [r.verdict for r in honest] == [HOLDS, HOLDS], [r.rule for r in honest]
    masked = audit(_measure(Masked(m, kind), x8, y, radii + [large]), "pgd", radii, large_eps=large)
    assert [r.verdict for r in masked] == [MASKING, MASKING]
    # The paper's attack overstates robustness on the masked model: the audit says which attack did better.
    assert masked[-1].paper_acc > masked[-1].strongest_acc + 0.3 and masked[-1].strongest_attack == "square"


def test_attack_suite_resumes_after_each_attack_and_feeds_the_audit(vulnerable, tmp_path):
    from robrepro.evaluations.attack_suite import as_attack_results, run_suite

    m, x8, y = vulnerable
    state = tmp_path / "suite.json"
    suite = {"fgsm": {"name": "fgsm"}, "pgd": {"name": "pgd", "steps": 5}}
    first = run_suite(m, x8, y, {"fgsm": suite["fgsm"]}, [0.06], batch_size=64, state_path=state, key="k")
    both = run_suite(m, x8, y, suite, [0.06], batch_size=64, state_path=state, key="k", extra_radii={"pgd": [1.0]})
    assert both["fgsm"] == first["fgsm"]  # taken from the saved state, not re-run
    assert [e["eps"] for e in both["pgd"]["per_eps"]] == [0.06, 1.0]
    assert both["fgsm"]["one_step"] and not both["pgd"]["one_step"] and both["pgd"]["model_calls"] > both["fgsm"]["model_calls"]
    results = as_attack_results(both)
    assert audit(results, "pgd", [0.06], large_eps=1.0)[0].paper_acc == both["pgd"]["per_eps"][0]["robust_acc"]
    fresh = run_suite(m, x8, y, {"fgsm": suite["fgsm"]}, [0.06], batch_size=64, state_path=state, key="other")
    assert json.loads(state.read_text())["key"] == "other"  # another evaluation's state is not reused
    assert [e["robust_acc"] for e in fresh["fgsm"]["per_eps"]] == [e["robust_acc"] for e in first["fgsm"]["per_eps"]]
