"""Gradient-masking audit: each rule on hand-made numbers, then a deliberately masked model is flagged
by real attacks while the honest model it wraps passes."""

import io
import json

import pandas as pd
import pytest
import torch
from torch import nn

from robrepro import models
from robrepro.attacks import make_attack, robust_accuracy
from robrepro.evaluations.masking import (
    CONFIRMED,
    INCONCLUSIVE,
    MASKING,
    NOT_TESTABLE,
    WEAK,
    AttackResult,
    Thresholds,
    audit,
    transfer_gate,
    weak_legs,
    wilson,
)

R = [0.1, 0.2]
N = 10_000  # hand-made accuracies on many points: sampling error well below the tolerances


def _r(label, access, accs, one_step=False, robust=None):
    return AttackResult(label, access, dict(accs), one_step, robust or {})


HONEST = [
    _r("fgsm", "white-box", {0.1: 0.50, 0.2: 0.30, 1.0: 0.20}, one_step=True),
    _r("pgd", "white-box", {0.1: 0.40, 0.2: 0.20, 1.0: 0.0}),
    _r("pgd-1000", "white-box", {0.1: 0.39, 0.2: 0.19, 1.0: 0.0}),
    _r("square", "black-box", {0.1: 0.45, 0.2: 0.25}),
]


def test_honest_numbers_are_confirmed():
    rows = audit(HONEST, "pgd", R, large_eps=1.0, n=N)
    assert [r.verdict for r in rows] == [CONFIRMED, CONFIRMED]
    assert rows[0].strongest_attack == "pgd-1000" and rows[0].strongest_acc == 0.39
    assert all(not r.failed for r in rows) and rows[0].rule.startswith("confirmed by square")


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
    rows = audit(results, "pgd", R, large_eps=1.0, n=N)
    row = rows[0]
    assert row.verdict == MASKING and any(f.startswith(check) for f in row.failed)
    assert row.rule.startswith("sanity")


def test_a_stronger_attack_far_below_the_papers_number_is_masking():
    results = HONEST + [_r("pgd-1000x5", "white-box", {0.1: 0.20, 0.2: 0.19, 1.0: 0.0})]
    rows = audit(results, "pgd", R, large_eps=1.0, n=N)
    assert rows[0].verdict == MASKING and rows[0].rule.startswith("gap") and rows[0].strongest_attack == "pgd-1000x5"
    assert rows[1].verdict == CONFIRMED  # at 0.2 the new attack is within the gap
    assert audit(results, "pgd", R, large_eps=1.0, n=N, th=Thresholds(gap=0.25))[0].verdict == CONFIRMED
    # A one-step paper attack far above the strongest is a weak attack, not evidence of masking.
    row = audit(results, "fgsm", R, large_eps=1.0, n=N)[0]
    assert row.verdict == WEAK and row.rule.startswith("gap-one-step")


def test_gaps_are_judged_against_their_sampling_error():
    # The same 9-point gap: real at n = 10 000, within noise at n = 100 (Wilson interval about +-6 points).
    results = [*HONEST[:3], _r("square", "black-box", {0.1: 0.31, 0.2: 0.25})]
    assert audit(results, "pgd", R, large_eps=1.0, n=N)[0].verdict == MASKING
    row = audit(results, "pgd", R, large_eps=1.0, n=100)[0]
    assert row.verdict == INCONCLUSIVE and row.gap_low < 0.05 < row.gap_high
    assert not row.failed  # 0.31 vs 0.39 on 100 points: within the sanity checks' sampling slack too
    assert audit(results, "pgd", R, large_eps=1.0, n=N)[0].failed  # but not on 10 000
    lo, hi = wilson(0, 100, 1.96)
    assert lo == 0 and 0.03 < hi < 0.04  # no gap seen on 100 points still allows 3.7 points


def test_tolerance_absorbs_noise():
    results = [*HONEST[:3], _r("square", "black-box", {0.1: 0.38, 0.2: 0.25})]
    assert audit(results, "pgd", R, large_eps=1.0, n=N)[0].verdict == CONFIRMED  # 0.38 vs 0.39: within tol
    assert audit(results, "pgd", R, large_eps=1.0, n=N, th=Thresholds(tol=0.0, z=0.0))[0].verdict == MASKING


def _mask(n, robust):
    return tuple(i in robust for i in range(n))


def test_disjoint_successes_reveal_masking_that_no_single_attack_shows():
    # 1 000 points. PGD leaves 0-599. Square breaks 0-99 (and fails on 600-699, which PGD broke);
    # the transfer breaks 100-199 (and also fails on 600-699): each leaves 60 %, as PGD does, but
    # together they leave only 200-599: 40 %.
    n, eps = 1000, 0.1
    pgd = _mask(n, range(600))
    square = _mask(n, range(100, 700))
    transfer = _mask(n, [*range(100), *range(200, 700)])
    results = [
        _r("pgd", "white-box", {eps: 0.6}, robust={eps: pgd}),
        _r("square", "black-box", {eps: 0.6}, robust={eps: square}),
        _r("transfer", "transfer", {eps: 0.6}, robust={eps: transfer}),
    ]
    (row,) = audit(results, "pgd", [eps], large_eps=None, n=n)
    assert row.strongest_acc == 0.6 and not row.failed  # no single attack shows anything
    assert row.worst_acc == pytest.approx(0.4) and row.gap == pytest.approx(0.2)
    assert row.verdict == MASKING and row.rule.startswith("gap")


def test_a_suite_that_breaks_every_remaining_point_confirms_nothing():
    # PGD leaves 30 of 1 000 points (3 %); Square and APGD break disjoint halves of them, so no sanity
    # check fires and the gap (3 points) is within the 5-point tolerance: still no "confirmed" 3 %.
    n, eps = 1000, 0.1
    results = [
        _r("pgd", "white-box", {eps: 0.03}, robust={eps: _mask(n, range(30))}),
        _r("apgd", "white-box", {eps: 0.015}, robust={eps: _mask(n, range(15))}),
        _r("square", "black-box", {eps: 0.015}, robust={eps: _mask(n, range(15, 30))}),
    ]
    (row,) = audit(results, "pgd", [eps], large_eps=None, n=n)
    assert row.worst_acc == 0 and row.gap_high <= 0.05 and not row.failed
    assert row.verdict == NOT_TESTABLE and row.rule.startswith("worst-floor")


def test_zero_accuracy_is_never_a_robustness_label():
    at_zero = [_r("pgd", "white-box", {0.1: 0.0}), _r("square", "black-box", {0.1: 0.0})]
    (row,) = audit(at_zero, "pgd", [0.1], large_eps=None, n=N)
    assert row.verdict == NOT_TESTABLE and row.rule.startswith("floor")


def _audit_table(ode_pgd, res_pgd, ode_fgsm=90.0):
    rows = []
    for model, pgd, fgsm in (("odenet", ode_pgd, ode_fgsm), ("resnet50", res_pgd, 5.0)):
        for eps in (0.1, 0.3):
            base = {"dataset": "mnist", "model": model, "training": "none", "eps": eps, "n": 1000, "data": "real"}
            rows.append({**base, "paper_attack": "fgsm", "paper_attack_one_step": True, "worst_case_acc": fgsm})
            rows.append({**base, "paper_attack": "pgd", "paper_attack_one_step": False, "worst_case_acc": pgd})
    # Through a CSV, as the report reads it.
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    buf.seek(0)
    return pd.read_csv(buf)


def test_robustness_real_is_decided_on_the_worst_case_without_one_step_rows():
    from robrepro import verdicts as V

    claim = next(c for c in V.load_claims("node") if c.id == "robustness-real-mnist")
    judge = lambda df: V.judge(claim, {"node_audit": df}, "lite").status  # noqa: E731
    assert judge(_audit_table(40.0, 2.0)) == V.SUPPORTED
    assert judge(_audit_table(40.0, 2.0, ode_fgsm=0.0)) == V.SUPPORTED  # one-step rows do not enter
    # 0 % against 0 %: FGSM rows far apart do not make it robust, and nothing is supported.
    assert judge(_audit_table(0.0, 0.0)) != V.SUPPORTED
    assert judge(_audit_table(0.0, 0.0, ode_fgsm=99.0)) != V.SUPPORTED


def test_a_gradient_free_leg_that_fails_on_the_undefended_reference_is_weak():
    # The lite tier's old budgets: Square leaves 48 %, SPSA 89 %, where PGD leaves 6 % on the plain ResNet.
    ref = [
        _r("pgd", "white-box", {0.1: 0.06}),
        _r("square", "black-box", {0.1: 0.48}),
        _r("spsa", "black-box", {0.1: 0.89}),
        _r("square_long", "black-box", {0.1: 0.08}),
    ]
    weak = weak_legs(ref, [0.1])
    assert set(weak) == {"square", "spsa"} and "undefended reference" in weak["square"]
    ode = [_r("pgd", "white-box", {0.1: 0.60}), _r("square", "black-box", {0.1: 0.61}), _r("spsa", "black-box", {0.1: 0.9})]
    (row,) = audit(ode, "pgd", [0.1], large_eps=None, n=N, unusable=weak)
    assert row.verdict == NOT_TESTABLE and row.rule.startswith("no-usable-leg") and len(row.unusable) == 2
    assert audit(ode, "pgd", [0.1], large_eps=None, n=N)[0].verdict == CONFIRMED  # the same numbers, legs unchecked


def test_a_transfer_leg_below_the_agreement_gate_is_unusable():
    from robrepro.evaluations.masking import as_attack_results

    def suite(agreement):
        leg = {"access": "transfer", "one_step": False, "per_eps": [{"eps": 0.1, "robust_acc": 0.6}], "twin_agreement": agreement}
        return {"pgd": {"access": "white-box", "one_step": False, "per_eps": [{"eps": 0.1, "robust_acc": 0.6}]}, "transfer": leg}

    assert transfer_gate(0.94) and not transfer_gate(0.95) and "not measured" in transfer_gate(None)
    unmeasured = as_attack_results(suite(None))
    assert unmeasured[0].unusable == "" and "not measured" in unmeasured[1].unusable
    low, high = as_attack_results(suite(0.80)), as_attack_results(suite(0.99))
    assert "80.0 %" in low[1].unusable and high[1].unusable == ""
    assert audit(low, "pgd", [0.1], large_eps=None, n=N)[0].verdict == NOT_TESTABLE
    assert audit(high, "pgd", [0.1], large_eps=None, n=N)[0].verdict == CONFIRMED


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
        res = robust_accuracy(model, x8, y, radii, make_attack(spec), batch_size=64, seed=0, return_masks=True)
        masks = {e: tuple(m.tolist()) for e, m in res["masks_alone"].items()}
        out.append(AttackResult(label, access, {e["eps"]: e["robust_acc"] for e in res["per_eps"]}, one_step, masks))
    return out


# 64 test points: a gap of 0 still allows 5.7 points, so the material gap is 15 points here.
SMALL = Thresholds(gap=0.15, tol=0.05)


@pytest.mark.parametrize("kind", ["zero", "noise"])
def test_the_audit_flags_a_masked_model_and_confirms_the_honest_one(vulnerable, kind):
    m, x8, y = vulnerable
    radii, large = [0.06, 0.1], 1.0
    # The honest model keeps 92 % under PGD at 0.03, confirmed; at 0.06 PGD leaves nothing: not testable.
    honest = audit(_measure(m, x8, y, [0.03, 0.06, large]), "pgd", [0.03, 0.06], large_eps=large, n=len(y), th=SMALL)
    assert [r.verdict for r in honest] == [CONFIRMED, NOT_TESTABLE], [r.rule for r in honest]
    masked = audit(_measure(Masked(m, kind), x8, y, radii + [large]), "pgd", radii, large_eps=large, n=len(y), th=SMALL)
    assert [r.verdict for r in masked] == [MASKING, MASKING]
    # The paper's attack overstates robustness on the masked model: the audit says which attack did better.
    assert masked[-1].paper_acc > masked[-1].strongest_acc + 0.3 and masked[-1].strongest_attack == "square"
    assert masked[-1].worst_acc <= masked[-1].strongest_acc


def test_attack_suite_resumes_after_each_attack_and_feeds_the_audit(vulnerable, tmp_path):
    from robrepro.evaluations.attack_suite import run_suite
    from robrepro.evaluations.masking import as_attack_results

    m, x8, y = vulnerable
    state = tmp_path / "suite.json"
    suite = {"fgsm": {"name": "fgsm"}, "pgd": {"name": "pgd", "steps": 5}}
    first = run_suite(m, x8, y, {"fgsm": suite["fgsm"]}, [0.06], batch_size=64, state_path=state, key="k")
    both = run_suite(m, x8, y, suite, [0.06], batch_size=64, state_path=state, key="k", extra_radii={"pgd": [1.0]})
    assert both["fgsm"] == first["fgsm"]  # taken from the saved state, not re-run
    assert [e["eps"] for e in both["pgd"]["per_eps"]] == [0.06, 1.0]
    assert both["fgsm"]["one_step"] and not both["pgd"]["one_step"] and both["pgd"]["model_calls"] > both["fgsm"]["model_calls"]
    results = as_attack_results(both)
    (row,) = audit(results, "pgd", [0.06], large_eps=1.0, n=len(y))
    assert row.paper_acc == both["pgd"]["per_eps"][0]["robust_acc"]
    # The survivors are stored per point: the worst case is their intersection, never above either attack.
    pgd, fgsm = (results[i].robust[0.06] for i in (1, 0))
    assert len(pgd) == len(y) and sum(pgd) / len(y) == row.paper_acc
    assert row.worst_acc == sum(a and b for a, b in zip(pgd, fgsm)) / len(y) <= min(row.paper_acc, both["fgsm"]["per_eps"][0]["robust_acc"])
    fresh = run_suite(m, x8, y, {"fgsm": suite["fgsm"]}, [0.06], batch_size=64, state_path=state, key="other")
    assert json.loads(state.read_text())["key"] == "other"  # another evaluation's state is not reused
    assert [e["robust_acc"] for e in fresh["fgsm"]["per_eps"]] == [e["robust_acc"] for e in first["fgsm"]["per_eps"]]


def _payload(model, suite, n):
    """An audit job's result as the table builder reads it (hand-built, one radius)."""
    from robrepro.evaluations.masking import encode_mask

    eps, th = 0.1, {"tol": 0.02, "gap": 0.05, "near_zero": 0.05, "z": 1.96, "min_agreement": 0.95}
    legs = {}
    for label, (access, robust, extra) in suite.items():
        mask = [i in robust for i in range(n)]
        legs[label] = {
            "access": access,
            "one_step": label == "fgsm",
            "per_eps": [{"eps": eps, "robust_acc": sum(mask) / n, "robust": encode_mask(mask), "seconds": 1.0}],
            "seconds": 1.0,
            "nfe": 0,
            "attack": {"name": label},
            **extra,
        }
    rows = [{"paper_attack": a, "eps": eps, "eps_label": "0.1"} for a in ("fgsm", "pgd")]
    prov = {"git": {"commit": "abc", "dirty": False}, "spec": {"tier": "lite"}, "data_source": "real"}
    return {
        "complete": True,
        "kind": "audit",
        "provenance": prov,
        "labels": {"dataset": "mnist", "model": model},
        "n": n,
        "suite": legs,
        "skipped": [],
        "rows": rows,
        "thresholds": th,
        "large_eps": 1.0,
    }


def test_the_audit_table_marks_legs_weak_on_the_reference_and_gates_the_transfer(tmp_path):
    from robrepro.papers import node

    n = 200
    # The plain ResNet: PGD leaves 10 points, Square 100 (a weak budget), SPSA 12.
    resnet = _payload(
        "resnet50",
        {
            "fgsm": ("white-box", range(50), {}),
            "pgd": ("white-box", range(10), {}),
            "square": ("black-box", range(100), {}),
            "spsa": ("black-box", range(12), {}),
        },
        n,
    )
    # The ODE-Net: PGD leaves 150; SPSA (usable) agrees; the transfer's surrogate disagrees with the model.
    ode = _payload(
        "odenet",
        {
            "fgsm": ("white-box", range(160), {}),
            "pgd": ("white-box", range(150), {}),
            "square": ("black-box", range(150), {}),
            "spsa": ("black-box", range(150), {}),
            "transfer": ("transfer", range(150), {"twin_agreement": 0.5}),
        },
        n,
    )
    paths = []
    for i, d in enumerate((resnet, ode)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(d))
    out = {k: str(tmp_path / f"audit.{k}") for k in ("csv", "md", "tex")}
    df = node.audit([str(p) for p in paths], out, {"mnist": [0.1]})
    row = df[(df["model"] == "odenet") & (df["paper_attack"] == "pgd")].iloc[0]
    assert "square: weak attack on the undefended reference" in row["unusable_legs"] and "transfer: surrogate agrees" in row["unusable_legs"]
    assert "spsa" not in row["unusable_legs"] and row["verdict"] == CONFIRMED and "spsa" in row["rule"]
    assert row["worst_case_acc"] == 75.0 and bool(row["paper_attack_one_step"]) is False
    md = (tmp_path / "audit.md").read_text()
    assert "mnist/odenet/none transfer 50.0 %" in md and 'fgsm {"name": "fgsm"}' in md
