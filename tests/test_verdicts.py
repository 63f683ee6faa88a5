"""The statistics of a verdict: floors and ceilings, weak tests, family-wise error on both sides,
paired and seeded comparisons, each predicate at its edges, and the GM paper's own Table 3 judged
as if it were a reproduction. Cheap: numpy and hand-built tables, no model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from robrepro import verdicts as V


def judge(test, df, tier="paper"):
    return V.judge(V.Claim("toy", "c", "a claim", "Table 1", ("lite", "paper"), {"table": "t", **test}), {"t": df}, tier)


def table(cells, n=1000, by="model", value="acc"):
    """Rows (cell, group, value in %) measured on ``n`` points each."""
    return pd.DataFrame([{"cell": c, by: g, value: v, "n": n, "data": "real"} for c, g, v in cells])


MORE_ROBUST = {"predicate": "all_greater", "by": "model", "left": "ode", "right": "res", "value": "acc", "over": ["cell"], "margin": 1.0}
VERIFIED_BELOW = {"predicate": "all_less", "by": "method", "left": "gm", "right": ["crown", "ibp"], "value": "err", "over": ["cell"]}


# --- floors and ceilings, weak tests ------------------------------------------------------------------


def test_zero_against_zero_is_not_decidable():
    v = judge(MORE_ROBUST, table([(1, "ode", 0.0), (1, "res", 0.0)]))
    assert v.status == V.NOT_DECIDABLE and "at floor/ceiling" in v.evidence
    assert judge({**MORE_ROBUST, "margin": 0.0}, table([(1, "ode", 0.0), (1, "res", 0.0)])).status == V.NOT_DECIDABLE


def test_verified_errors_at_the_ceiling_are_not_decidable_at_any_n():
    cells = [(1, "gm", 99.2), (1, "crown", 100.0), (1, "ibp", 100.0)]
    v = judge(VERIFIED_BELOW, table(cells, n=100_000, by="method", value="err"))
    assert v.status == V.NOT_DECIDABLE and set(v.cells["verdict"]) == {V.SATURATED}
    # Off the ceiling the same 0.8-point gap on 100 000 points is decided.
    off = [(1, "gm", 89.2), (1, "crown", 90.0), (1, "ibp", 90.0)]
    assert judge(VERIFIED_BELOW, table(off, n=100_000, by="method", value="err")).status == V.SUPPORTED
    # One value off the bound is a measurement: 0 % against 50 % refutes "more robust".
    assert judge(MORE_ROBUST, table([(1, "ode", 0.0), (1, "res", 50.0)])).status == V.REFUTED


def test_a_model_at_zero_accuracy_never_makes_a_robustness_claim_supported():
    rng = np.random.default_rng(1)
    for _ in range(40):
        right, n, margin = float(rng.uniform(0, 100)), int(rng.choice([100, 1000, 10_000])), float(rng.choice([0.0, 0.5, 1.0]))
        v = judge({**MORE_ROBUST, "margin": margin}, table([(1, "ode", 0.0), (1, "res", right)], n=n))
        assert v.status != V.SUPPORTED, (right, n, margin, v.evidence)
        top = {"predicate": "argmax_is", "by": "model", "expect": "ode", "value": "acc", "margin": margin}
        assert judge(top, table([(1, "ode", 0.0), (1, "res", right), (1, "ssp", right / 2)], n=n)).status != V.SUPPORTED


def test_a_tolerance_narrower_than_the_noise_is_not_decidable_and_says_its_power():
    close = {"predicate": "all_close", "by": "model", "left": "ode", "right": "res", "value": "acc", "tolerance": 1.0}
    # 98 % and 99 % on 1000 points: se = 0.44 and 0.31 (Agresti-Caffo), sqrt(0.44^2 + 0.31^2) = 0.54;
    # power 2 Phi(1.0 / 0.54 - 1.96) - 1 = 0 (a band of 1.06 is wider than the tolerance).
    v = judge(close, table([(1, "ode", 98.0), (1, "res", 99.0)], n=1000))
    assert v.status == V.NOT_DECIDABLE and "power to resolve the tolerance 1.00 at this n: 0.00" in v.evidence
    # On 20 000 points each the same values are shown close.
    assert judge(close, table([(1, "ode", 98.7), (1, "res", 99.0)], n=20_000)).status == V.SUPPORTED


# --- the family-wise error, both sides -----------------------------------------------------------------


def simulate(gap: float, margin: float, reps: int = 400, cells: int = 8, n: int = 1000, seed: int = 0) -> dict[str, int]:
    """Claims "left above right by more than ``margin`` in every cell" on ``cells`` cells whose true
    accuracy difference is ``gap`` points, measured on ``n`` points per value: how often each outcome."""
    rng = np.random.default_rng(seed)
    out = dict.fromkeys(V.STATUSES, 0)
    for _ in range(reps):
        base = rng.uniform(0.3, 0.7, cells)
        left = 100 * rng.binomial(n, base + gap / 100) / n
        right = 100 * rng.binomial(n, base) / n
        pairs = [(V.Measure(a, V.binomial_se(a, n), n=n), V.Measure(b, V.binomial_se(b, n), n=n)) for a, b in zip(left, right)]
        out[V.overall([c["verdict"] for c in V.judge_pairs(pairs, "greater", margin)])] += 1
    return out


def test_a_true_small_advantage_over_many_cells_is_rarely_refuted():
    # A true 1.5-point advantage in 8 cells on 1000 points each: without a correction about 10 % of
    # such claims were refuted (one cell in eight falls below the margin by chance).
    for margin in (1.0, 0.0):
        out = simulate(gap=1.5, margin=margin)
        assert out[V.REFUTED] <= 0.025 * 400, (margin, out)


def test_a_null_effect_is_rarely_supported():
    # No advantage at all, and an advantage exactly at the margin (the hardest null): at most alpha.
    assert simulate(gap=0.0, margin=0.0)[V.SUPPORTED] <= 0.025 * 400
    assert simulate(gap=1.0, margin=1.0, cells=1, reps=2000, n=10_000)[V.SUPPORTED] <= 0.025 * 2000 * 1.2  # alpha within Monte-Carlo error
    # The test has power where the effect is real and large enough for n.
    assert simulate(gap=8.0, margin=1.0, n=10_000)[V.SUPPORTED] >= 0.9 * 400


def test_holm_adjusted_p_values_by_hand():
    # Sorted 0.01, 0.02, 0.04: 3 x 0.01 = 0.03, 2 x 0.02 = 0.04, 1 x 0.04 = 0.04 (monotone).
    assert V.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert V.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_one_clear_failure_still_refutes_among_many_cells():
    cells = [(c, "ode", 60.0) for c in range(8)] + [(c, "res", 40.0) for c in range(7)] + [(7, "res", 75.0)]
    v = judge(MORE_ROBUST, table(cells))
    assert v.status == V.REFUTED and (v.cells["verdict"] == V.FAIL).sum() == 1 and "Holm over 8 comparisons" in v.evidence


# --- each predicate at its edges -------------------------------------------------------------------------


def test_the_noise_band_by_hand():
    # 50 % and 40 % on 1000 points: Agresti-Caffo p = 501/1002 and 401/1002, se = 100 sqrt(p(1-p)/1002)
    # = 1.5795 and 1.5477; band 1.96 x sqrt(1.5795^2 + 1.5477^2) = 1.96 x 2.2114 = 4.334.
    v = judge({**MORE_ROBUST, "margin": 0.0}, table([(1, "ode", 50.0), (1, "res", 40.0)]))
    assert v.cells["pm"].iloc[0] == pytest.approx(4.334, abs=1e-3) and v.status == V.SUPPORTED
    # Near a bound the +1/+2 matters: 10 % and 2 %: p = 101/1002 and 21/1002, se = 0.95109 and 0.45252,
    # band 1.96 x 1.05326 = 2.0643 (the plain p(1-p)/n would give 2.0519).
    v = judge({**MORE_ROBUST, "margin": 0.0}, table([(1, "ode", 10.0), (1, "res", 2.0)]))
    assert v.cells["pm"].iloc[0] == pytest.approx(2.0643, abs=1e-3)


def test_a_difference_exactly_at_the_band_edge():
    # A standard-error column of 1 per value: se of the difference sqrt(2); the band 1.96 sqrt(2) = 2.7719.
    test = {"predicate": "all_greater", "by": "model", "left": "ode", "right": "res", "value": "acc", "noise": "se:se"}
    edge = 1.959964 * math.sqrt(2)

    def at(d):
        return judge(test, pd.DataFrame({"model": ["ode", "res"], "acc": [50.0 + d, 50.0], "se": 1.0, "data": "real"})).status

    assert at(edge + 1e-3) == V.SUPPORTED and at(edge - 1e-3) == V.INCONCLUSIVE
    assert at(-edge - 1e-3) == V.REFUTED and at(-edge + 1e-3) == V.INCONCLUSIVE


def test_ties():
    exact = {"predicate": "all_greater", "by": "model", "left": "ode", "right": "res", "value": "acc", "noise": "none", "noise_reason": "exact"}
    tie = pd.DataFrame({"model": ["ode", "res"], "acc": [30.0, 30.0], "data": "real"})
    assert judge(exact, tie).status == V.REFUTED  # exact values: a tie is not "above"
    assert judge({**MORE_ROBUST, "margin": 0.0}, table([(1, "ode", 50.0), (1, "res", 50.0)])).status == V.INCONCLUSIVE  # a sampled tie: noise
    close = {**exact, "predicate": "all_close", "tolerance": 0.0}
    assert judge(close, tie).status == V.SUPPORTED


def test_a_close_race_is_judged_against_the_runner_up_that_is_hardest_to_beat():
    top = {"predicate": "argmax_is", "by": "model", "expect": "a", "value": "acc", "noise": "se:se"}
    # b is second by value but measured precisely; c is third but so noisy that a cannot be shown above it.
    df = pd.DataFrame({"model": ["a", "b", "c"], "acc": [10.0, 8.0, 9.0], "se": [0.1, 0.1, 2.0], "data": "real"})
    v = judge(top, df)
    assert v.status == V.INCONCLUSIVE and "closest runner-up: all rows: a 10.00 vs c 9.00" in v.evidence
    assert list(v.cells["verdict"]) == [V.HOLD, V.NOISE]
    # argmin: the smallest value, against every other group.
    low = {**top, "predicate": "argmin_is", "expect": "b"}
    assert judge(low, df.assign(se=0.1)).status == V.SUPPORTED
    assert judge({**low, "expect": "c"}, df.assign(se=0.1)).status == V.REFUTED


def test_correlation_and_all_true_keep_their_outcomes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    corr = {"predicate": "correlation_positive", "x": "x", "y": "y", "resamples": 100}
    assert judge(corr, pd.DataFrame({"x": x, "y": x})).status == V.SUPPORTED
    assert judge({"predicate": "all_true", "column": "ok"}, pd.DataFrame({"ok": [True, False]})).status == V.REFUTED


# --- paired and seeded comparisons ---------------------------------------------------------------------------


def points(n_both: int, only_left: int, only_right: int, n: int) -> tuple[str, str]:
    """Per-point results of two models on the same ``n`` points."""
    left = "1" * n_both + "1" * only_left + "0" * only_right
    right = "1" * n_both + "0" * only_left + "1" * only_right
    return left.ljust(n, "0"), right.ljust(n, "0")


def test_paired_results_use_mcnemar():
    # 500 points right by both, 30 only by ode, 10 only by res, of 1000: 53 % against 51 %. Unpaired
    # that is within noise; paired, P(Bin(40, 1/2) >= 30) = sum_{k>=30} C(40, k) / 2^40 = 0.0011107 < 0.025: it holds.
    lp, rp = points(500, 30, 10, 1000)
    df = table([(1, "ode", 53.0), (1, "res", 51.0)]).assign(points=[lp, rp])
    test = {**MORE_ROBUST, "margin": 0.0}
    v = judge(test, df)
    assert v.status == V.SUPPORTED and "McNemar" in v.evidence
    assert v.cells["p_hold"].iloc[0] == pytest.approx(0.0011107, rel=1e-4)
    unpaired = judge(test, df.drop(columns="points"))
    assert unpaired.status == V.INCONCLUSIVE and "unpaired binomial" in unpaired.evidence
    # The same counts the other way round refute.
    assert judge(test, df.assign(points=[rp, lp], acc=[51.0, 53.0])).status == V.REFUTED


def test_seed_to_seed_variance_decides_when_there_are_several_seeds():
    one = table([(1, "ode", 61.0), (1, "res", 54.0)])
    assert judge({**MORE_ROBUST, "margin": 0.0}, one).status == V.SUPPORTED
    # The same means over three seeds each, but res varies by 8 points from seed to seed.
    seeds = pd.DataFrame(
        [
            {"cell": 1, "model": m, "acc": a, "seed": s, "n": 1000, "data": "real"}
            for m, accs in (("ode", (60, 61, 62)), ("res", (46, 54, 62)))
            for s, a in enumerate(accs)
        ]
    )
    v = judge({**MORE_ROBUST, "margin": 0.0}, seeds)
    assert v.status == V.INCONCLUSIVE and "3 seeds per value" in v.evidence
    # se of res's mean: sd 8 / sqrt(3) = 4.619 (above its binomial error); ode's: sd 1 / sqrt(3) = 0.577,
    # below the binomial error of its shared 1000 test points, 1.541 (mean over its seeds), which it keeps.
    assert v.cells["se"].iloc[0] == pytest.approx(math.hypot(4.6188, 1.5408), rel=1e-3)
    assert v.cells["left_value"].iloc[0] == 61.0 and v.cells["right_value"].iloc[0] == 54.0


def test_seeds_that_repeat_one_evaluation_add_no_evidence():
    """Seeds are evaluated on the same test points: three copies of one evaluation are as uncertain as
    one (the test sample's error does not shrink with the number of seeds)."""
    one = table([(1, "ode", 54.0), (1, "res", 50.0)]).assign(seed=0)
    three = pd.concat([one.assign(seed=s) for s in (0, 1, 2)], ignore_index=True)
    test = {**MORE_ROBUST, "margin": 0.0}
    v1, v3 = judge(test, one), judge(test, three)
    assert v1.status == v3.status == V.INCONCLUSIVE
    assert v3.cells["se"].iloc[0] >= v1.cells["se"].iloc[0] - 1e-9


# --- the GM paper's own Table 3 as the reproduction -----------------------------------------------------


def gm_table3_as_reproduction(n: int = 10_000) -> pd.DataFrame:
    from robrepro import tables_figures as R

    pub = R.published("gm")
    rows: dict[tuple, dict] = {}
    for key, metric, value in zip(pub["key"], pub["metric"], pub["value"]):
        if metric in ("verified_err", "std_err") and "eps_eval" in key:
            rows.setdefault(tuple(sorted(key.items())), dict(key))[metric] = value
    df = pd.DataFrame(list(rows.values()))
    return df.assign(verified_err_ibp=df["verified_err"], verified_err_published=df["verified_err"], n=n, data="real")


def test_the_gm_papers_own_table3_supports_verified_below_on_mnist():
    claim = next(c for c in V.load_claims("gm") if c.id == "verified-below")
    df = gm_table3_as_reproduction()
    mnist = V.judge(claim, {"gm_table3": df[df["dataset"] == "mnist"]}, "paper")
    assert mnist.status == V.SUPPORTED, mnist.evidence
    # On CIFAR-10 the paper's own gaps (0.24 to 0.6 points at 79-74 % error) are within the noise of
    # 10 000 test points (band 1.1 points, unpaired): the full table is inconclusive, never refuted,
    # and holds on the exact published numbers.
    full = V.judge(claim, {"gm_table3": df}, "paper")
    assert full.status == V.INCONCLUSIVE and full.on_published == "holds"
    noisy = full.cells[full.cells["verdict"] != V.HOLD]
    assert len(noisy) == 3 and noisy["cell"].str.contains("cifar10").all() and (noisy["diff"].abs() < 1.0).all()


# --- wording by tier and the claims format ---------------------------------------------------------------


def test_only_the_paper_tier_says_supported_or_refuted():
    assert V.status_label(V.SUPPORTED, "paper") == "supported"
    words = [V.status_label(s, "lite") for s in V.STATUSES]
    assert words[:4] == ["effect shown at lite scale", "effect not shown at lite scale", "inconclusive at lite scale", "not decidable at lite scale"]
    assert not any("supported" in w or "refuted" in w for w in words)


GOOD = {"id": "a", "claim": "x", "where": "y", "tiers": ["lite"], "test": {"predicate": "all_true", "table": "t", "column": "ok"}}


def test_quotes_and_unclaimed_targets_are_accepted_and_checked():
    doc = {"paper": "toy", "claims": [{**GOOD, "quote": "the words"}], "unclaimed": [{"target": "t2", "reason": "no claim there"}]}
    assert V.parse_claims(doc, "toy")[0].quote == ("the words",)
    assert V.parse_claims({**doc, "claims": [{**GOOD, "quote": ["a", "b"]}]}, "toy")[0].quote == ("a", "b")
    for bad in (
        {**doc, "claims": [{**GOOD, "quote": ""}]},
        {**doc, "claims": [{**GOOD, "quotes": "x"}]},  # unknown key
        {**doc, "unclaimed": [{"target": "t2"}]},  # no reason
        {**doc, "extra": 1},
    ):
        with pytest.raises(V.ClaimsError):
            V.parse_claims(bad, "toy")


def test_noise_none_needs_a_reason():
    test = {"predicate": "all_greater", "table": "t", "by": "m", "left": "a", "right": "b", "value": "v", "noise": "none"}
    with pytest.raises(V.ClaimsError, match="noise_reason"):
        V.parse_claims({"paper": "toy", "claims": [{**GOOD, "test": test}]}, "toy")
    assert V.parse_claims({"paper": "toy", "claims": [{**GOOD, "test": {**test, "noise_reason": "counted, not sampled"}}]}, "toy")
    with pytest.raises(V.ClaimsError, match="noise"):
        V.parse_claims({"paper": "toy", "claims": [{**GOOD, "test": {**test, "noise": "gaussian"}}]}, "toy")
