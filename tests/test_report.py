"""The reproduction report: predicates decide claims as they should (each one can refute), the smoke
tier judges none, and the page built from the smoke results is self-contained (every image inline,
every link an anchor of the page) with a section per paper even when claims or outputs are missing."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from robrepro import verdicts as V
from robrepro.report import number_counts


def claim(test, tiers=("lite", "paper")):
    return V.Claim("toy", "c", "a claim", "Table 1", tuple(tiers), {"table": "t", **test})


def judge(test, df, tier="lite", tiers=("lite", "paper")):
    return V.judge(claim(test, tiers), {"t": df}, tier)


def acc_table(cells, n=1000):
    """Rows (cell, model, value in %) with a sample size."""
    return pd.DataFrame([{"column": c, "model": m, "acc": v, "n": n, "data": "real"} for c, m, v in cells])


GREATER = {"predicate": "all_greater", "by": "model", "left": "ode", "right": "res", "value": "acc", "over": ["column"], "margin": 1.0}


def test_all_greater_supported_refuted_and_within_noise():
    assert judge(GREATER, acc_table([(1, "ode", 90), (1, "res", 10), (2, "ode", 80), (2, "res", 0)])).status == V.SUPPORTED
    # One cell reversed refutes, however good the others are.
    assert judge(GREATER, acc_table([(1, "ode", 90), (1, "res", 10), (2, "ode", 10), (2, "res", 40)])).status == V.REFUTED
    # 52 % against 50 % on 200 points each: within noise; too few points to resolve a 1-point margin at all.
    v = judge({**GREATER, "margin": 0.0}, acc_table([(1, "ode", 52), (1, "res", 50)], n=200))
    assert v.status == V.INCONCLUSIVE and "n = 200" in v.evidence
    v = judge(GREATER, acc_table([(1, "ode", 52), (1, "res", 50)], n=200))
    assert v.status == V.NOT_DECIDABLE and "power to resolve the margin 1" in v.evidence
    # The same difference on 100 000 points each is decided.
    assert judge(GREATER, acc_table([(1, "ode", 52), (1, "res", 50)], n=100_000)).status == V.SUPPORTED


def test_a_tie_at_zero_is_not_decidable_with_or_without_a_margin():
    tie = acc_table([(1, "ode", 0.0), (1, "res", 0.0)])
    assert judge(GREATER, tie).status == V.NOT_DECIDABLE
    assert judge({**GREATER, "margin": 0.0}, tie).status == V.NOT_DECIDABLE


def test_missing_group_or_few_samples_is_inconclusive():
    assert judge(GREATER, acc_table([(1, "ode", 90), (1, "res", 10), (2, "ode", 90)])).status == V.INCONCLUSIVE
    assert judge({**GREATER, "min_n": 5000}, acc_table([(1, "ode", 90), (1, "res", 10)])).status == V.INCONCLUSIVE


def test_all_less_with_several_rights_and_noise_none():
    df = pd.DataFrame({"method": ["gm", "a", "b"], "err": [10.0, 11.0, 30.0], "data": "real"})
    test = {"predicate": "all_less", "by": "method", "left": "gm", "right": ["a", "b"], "value": "err", "noise": "none", "noise_reason": "exact"}
    assert judge(test, df).status == V.SUPPORTED
    df.loc[1, "err"] = 9.0
    v = judge(test, df)
    assert v.status == V.REFUTED and (v.cells["verdict"] == V.FAIL).sum() == 1


def test_a_list_of_left_groups_compares_each_with_each_right():
    test = {"predicate": "all_greater", "by": "model", "left": ["ssp2", "ssp3"], "right": "res", "value": "acc", "noise": "none", "noise_reason": "exact"}
    df = pd.DataFrame({"model": ["ssp2", "ssp3", "res"], "acc": [50.0, 40.0, 30.0], "data": "real"})
    v = judge(test, df)
    assert v.status == V.SUPPORTED and len(v.cells) == 2 and set(v.cells["left"]) == {"ssp2", "ssp3"}
    df.loc[1, "acc"] = 20.0  # one of the two left groups below the right one refutes
    v = judge(test, df)
    assert v.status == V.REFUTED and list(v.cells["verdict"]) == [V.HOLD, V.FAIL]


def test_all_close():
    test = {"predicate": "all_close", "by": "model", "left": "ode", "right": "res", "value": "acc", "tolerance": 1.0}
    assert judge(test, acc_table([(1, "ode", 99.0), (1, "res", 99.3)], n=100_000)).status == V.SUPPORTED
    assert judge(test, acc_table([(1, "ode", 70.0), (1, "res", 90.0)])).status == V.REFUTED
    # On 500 points the noise band is wider than the tolerance: even equal values could not be shown close.
    v = judge(test, acc_table([(1, "ode", 98.0), (1, "res", 99.0)], n=500))
    assert v.status == V.NOT_DECIDABLE and "power to resolve the tolerance 1" in v.evidence


def test_argmax_and_argmin():
    df = pd.DataFrame({"group": [3, 3, 3, 2, 2, 2], "block": ["resnet", "ssp2", "ssp3"] * 2, "ratio": [5.0, 2.0, 1.5, 4.0, 2.0, 1.0], "data": "real"})
    top = {"predicate": "argmax_is", "by": "block", "expect": "resnet", "value": "ratio", "over": ["group"], "noise": "none"}
    assert judge(top, df).status == V.SUPPORTED
    assert judge({**top, "filter": {"group": 3}}, df).status == V.SUPPORTED
    assert judge({**top, "expect": "ssp3"}, df).status == V.REFUTED
    assert judge({**top, "predicate": "argmin_is", "expect": "ssp3"}, df).status == V.SUPPORTED
    assert judge({**top, "predicate": "argmin_is"}, df).status == V.REFUTED
    # A standard-error column makes a close race inconclusive.
    close = df.assign(se=1.0, ratio=[5.0, 4.5, 1.0, 4.0, 2.0, 1.0])
    assert judge({**top, "noise": "se:se"}, close).status == V.INCONCLUSIVE


def test_correlation_positive():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    test = {"predicate": "correlation_positive", "x": "energy", "y": "sens", "resamples": 300}
    pos = judge(test, pd.DataFrame({"energy": x, "sens": x + 0.3 * rng.normal(size=60)}))
    assert pos.status == V.SUPPORTED and pos.details["interval"][0] > 0 and "n = 60" in pos.evidence
    assert judge(test, pd.DataFrame({"energy": x, "sens": -x + 0.3 * rng.normal(size=60)})).status == V.REFUTED
    assert judge(test, pd.DataFrame({"energy": x[:12], "sens": rng.normal(size=12)})).status == V.INCONCLUSIVE
    assert judge(test, pd.DataFrame({"energy": x[:3], "sens": x[:3]})).status == V.INCONCLUSIVE  # too few


def test_all_true_and_equals():
    test = {"predicate": "all_true", "column": "ok"}
    assert judge(test, pd.DataFrame({"ok": [True, True]})).status == V.SUPPORTED
    assert judge(test, pd.DataFrame({"ok": [True, False]})).status == V.REFUTED
    assert judge(test, pd.DataFrame({"ok": [True, None]})).status == V.INCONCLUSIVE
    verdict = {"predicate": "all_true", "column": "verdict", "equals": "robustness holds"}
    assert judge(verdict, pd.DataFrame({"verdict": ["robustness holds"] * 2})).status == V.SUPPORTED
    assert judge(verdict, pd.DataFrame({"verdict": ["robustness holds", "gradient masking"]})).status == V.REFUTED


def test_filter_largest_and_synthetic_rows():
    df = pd.DataFrame(
        [{"eps": e, "method": m, "err": v, "n": 10_000, "data": "real"} for e in (0.1, 0.2, 0.3, 0.4) for m, v in (("gm", 20 + 100 * e), ("ibp", 30 + 50 * e))]
    )
    test = {"predicate": "all_less", "by": "method", "left": "gm", "right": "ibp", "value": "err", "over": ["eps"]}
    assert judge(test, df).status == V.REFUTED  # gm is worse at 0.3 and 0.4
    assert judge({**test, "largest": {"column": "eps", "count": 2}}, df).status == V.REFUTED
    assert judge({**test, "filter": {"eps": [0.1, "1/10"]}}, df).status == V.SUPPORTED
    v = judge(test, df.assign(data="synthetic"))
    assert v.status == V.INCONCLUSIVE and "synthetic" in v.evidence


def test_the_paper_numbers_are_judged_too():
    df = acc_table([(1, "ode", 90), (1, "res", 10)]).assign(published=[5.0, 10.0])
    v = judge({**GREATER, "published": "published"}, df)
    assert v.status == V.SUPPORTED and v.on_published == "fails"


def test_smoke_never_judges_and_a_tier_not_listed_gets_no_verdict():
    df = acc_table([(1, "ode", 90), (1, "res", 10)])
    v = judge(GREATER, df, tier="smoke", tiers=("smoke", "lite"))
    assert v.status == V.NO_VERDICT and v.evidence.startswith("smoke: no verdict")
    assert judge(GREATER, df, tier="lite", tiers=("paper",)).status == V.NO_VERDICT
    not_planned, not_built = V.judge(claim(GREATER), {}, "lite"), V.judge(claim(GREATER), {"t": None}, "lite")
    assert not_planned.status == not_built.status == V.INCONCLUSIVE
    assert "not part of this tier's plan" in not_planned.evidence and "not built yet" in not_built.evidence


def test_malformed_claims_files_are_rejected():
    good = {"id": "a", "claim": "x", "where": "y", "tiers": ["lite"], "test": {"predicate": "all_true", "table": "t", "column": "ok"}}
    assert V.parse_claims({"paper": "toy", "claims": [good]}, "toy")[0].table == "t"
    for bad in (
        {**good, "test": {"predicate": "nosuch", "table": "t"}},
        {**good, "test": {"predicate": "all_true", "table": "t"}},  # column missing
        {**good, "test": {**good["test"], "colour": 1}},
        {**good, "tiers": ["huge"]},
        {k: v for k, v in good.items() if k != "where"},
    ):
        with pytest.raises(V.ClaimsError):
            V.parse_claims({"paper": "toy", "claims": [bad]}, "toy")
    with pytest.raises(V.ClaimsError, match="twice"):
        V.parse_claims({"paper": "toy", "claims": [good, good]}, "toy")


def test_number_counts_one_per_published_number():
    df = pd.DataFrame(
        {
            "a_published": [1.0, 2.0, None, 4.0],
            "a_within_tol": [True, False, None, None],
            "b_published": [1.0, None, None, None],
            "b_within_tol": ["True", None, None, None],
            "within_tol": [True, False, None, None],
        }
    )
    assert number_counts(df) == {"within": 2, "outside": 1, "not judged": 1, "no published value": 4, "no reproduced value": 0}
    # A real-data row with a published number and no reproduced one is missing, not synthetic.
    mixed = pd.DataFrame({"published": [40.0, 40.0], "within_tol": [None, None], "data": ["real", "synthetic"]})
    assert number_counts(mixed) == {"within": 0, "outside": 0, "not judged": 1, "no published value": 0, "no reproduced value": 1}
    assert number_counts(pd.DataFrame({"published": [1.0], "within_tol": [False]}))["outside"] == 1


# --- the claims files of the papers ------------------------------------------------------------


def test_every_claims_file_parses_and_names_targets_of_the_paper_tier(repo_root):
    from robrepro import papers
    from robrepro.config import load
    from robrepro.plan import Plan

    plan = Plan(load(repo_root / "config" / "config.yaml"))
    n = 0
    for name in papers.registry():
        for c in V.load_claims(name) or []:
            n += 1
            assert c.table in plan.targets, f"{name}:{c.id} is judged on {c.table}, not a target at the paper tier"
            assert "smoke" not in c.tiers and c.claim.endswith(".")
    assert n >= 5


# --- the page built from the smoke results -----------------------------------------------------


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.hrefs, self.imgs = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))


def broken_links(page: str) -> list[str]:
    """Every <img> that is not an inline PNG and every href that is not an anchor of the page."""
    p = Links()
    p.feed(page)
    bad = [h for h in p.hrefs if not (h.startswith("#") and h[1:] in p.ids)]
    for src in p.imgs:
        m = re.fullmatch(r"data:image/png;base64,(.+)", src, flags=re.S)
        if not m or not base64.b64decode(m.group(1)).startswith(b"\x89PNG"):
            bad.append(src[:60])
    return bad


def test_the_link_check_can_fail():
    assert broken_links('<a href="#x">x</a><p id="x"></p><img src="data:image/png;base64,' + base64.b64encode(b"\x89PNG...").decode() + '">') == []
    assert broken_links('<a href="#y">y</a>') == ["#y"]
    assert broken_links('<a href="https://example.org">e</a>') == ["https://example.org"]
    assert broken_links('<img src="fig.png">') == ["fig.png"]


@pytest.fixture(scope="module")
def smoke_copy(workdir, smoke_run, tmp_path_factory):
    """A copy of the session's smoke run (conftest.py), taken before any test changes it."""
    src = workdir / "results" / "smoke"
    dst = tmp_path_factory.mktemp("smoke") / "results" / "smoke"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.pt", "report", "logs"))
    return dst.parents[1]


@pytest.fixture(scope="module")
def smoke_config(repo_root):
    from robrepro.config import load

    return load(repo_root / "config" / "config.yaml", repo_root / "config" / "smoke.yaml")


@pytest.mark.slow
def test_report_from_the_smoke_results(smoke_copy, smoke_config):
    from robrepro.plan import Plan
    from robrepro.report import build, outputs

    plan = Plan(smoke_config)
    out = outputs(plan.paths.root)
    rep = build(smoke_config, out["html"], out["md"], root=smoke_copy)
    page = (smoke_copy / out["html"]).read_text()
    md = (smoke_copy / out["md"]).read_text()
    assert broken_links(page) == []
    assert "http://" not in page and "https://" not in page  # self-contained
    for name in plan.active_papers():
        assert f'id="paper-{name}"' in page and plan.papers[name].title in md
    verdicts = [v for p in rep.papers for v in p.verdicts or []]
    assert verdicts and all(v.status == V.NO_VERDICT for v in verdicts)
    assert "smoke: no verdict" in page and "smoke: no verdict" in md
    figures = [t for p in rep.papers for t in p.targets if t.target.kind == "figure" and t.built]
    assert figures and page.count("<img ") == len(figures)
    # The Markdown's figures are paths relative to it that resolve.
    md_dir = (smoke_copy / out["md"]).parent
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (md_dir / rel).is_file(), rel
    # Compute comes from the benchmark files; unknown settings carry the value in force.
    assert all(t.compute["measured"] > 0 for p in rep.papers for t in p.targets if t.built)
    for p in rep.papers:
        for u in p.unknowns:
            node = smoke_config
            for k in u["key"].split("."):
                node = node[k]
            assert node == u["value"]


@pytest.mark.slow
def test_report_survives_missing_claims_missing_outputs_and_flags_unsound_certificates(smoke_copy, smoke_config, monkeypatch):
    from robrepro import report as RP
    from robrepro.plan import Plan

    plan = Plan(smoke_config)
    active = plan.active_papers()
    no_claims = active[0]
    real_load = V.load_claims
    monkeypatch.setattr(V, "load_claims", lambda p: None if p == no_claims else real_load(p))
    target = next(t for t in plan.targets.values())
    root = smoke_copy
    (root / target.outputs["csv"]).unlink()
    # A certificate below the attack error: the audit must flag it.
    tampered = None
    for key in plan.jobs:
        f = root / plan.job_file(*key)
        doc = json.loads(f.read_text()) if f.is_file() else {}
        e = (doc.get("per_eps") or [None])[0]
        if isinstance(e, dict) and isinstance(e.get("verified_err"), dict):
            # The first bound certifies 40 % error where an attack breaks 50 %; the others stay sound.
            e["attack_err"] = 0.5
            e["verified_err"] = {b: 0.4 if i == 0 else 0.6 for i, b in enumerate(e["verified_err"])}
            f.write_text(json.dumps(doc))
            tampered = key[0]
            break
    out = RP.outputs(plan.paths.root)
    rep = RP.build(smoke_config, out["html"], out["md"], root=root)
    page = (root / out["html"]).read_text()
    assert broken_links(page) == []
    assert f"No claims file yet (<code>published/{no_claims}.claims.yaml</code>)" in page
    assert f"Not built yet: <code>{target.outputs['csv']}</code> is missing." in page
    for name in active:
        assert f'id="paper-{name}"' in page
    if tampered:
        p = next(p for p in rep.papers if p.name == tampered)
        # Only the first bound's row when the result has no per-point results; with them, every
        # tampered number disagrees with the points behind it and is flagged (the check is recomputed).
        flagged = [r for r in p.certified if not r["ok"]]
        per_point = any(r.get("check") != "errors only" for r in p.certified)
        assert len(flagged) >= 1 if per_point else len(flagged) == 1
        assert "A violation means an unsound bound" in page


@pytest.mark.slow
def test_every_claim_decides_on_the_columns_of_the_table_it_names(smoke_copy, smoke_config):
    """Judged as if at the lite tier on the smoke tables: no claim names a column or filter value its table lacks."""
    from robrepro.plan import Plan

    plan = Plan(smoke_config)
    tables = {t.name: pd.read_csv(smoke_copy / t.outputs["csv"]) for t in plan.targets.values() if (smoke_copy / t.outputs["csv"]).is_file()}
    judged = 0
    for name in plan.active_papers():
        for c in V.load_claims(name) or []:
            if "lite" not in c.tiers or c.table not in tables:
                continue
            v = V.judge(c, tables, "lite")
            assert v.status in (V.SUPPORTED, V.REFUTED, V.INCONCLUSIVE, V.NOT_DECIDABLE)
            missing = v.cells is not None and "verdict" in v.cells and bool((v.cells["verdict"] == "missing").any())
            assert "no rows match" not in v.evidence and "cannot judge" not in v.evidence and not missing, (c.id, v.evidence)
            judged += 1
    assert judged >= 3


def test_an_audit_table_is_summarised_and_coloured():
    from robrepro.plan import PlannedTarget
    from robrepro.report import PaperReport, TargetInfo, _verdict_class, audit_summary

    t = PlannedTarget("toy", "toy_audit", "table", "Audit", "m:f", [], {}, {})
    info = TargetInfo(t, df=pd.DataFrame({"eps": [0.1, 0.2, 0.3], "verdict": ["robustness holds", "gradient masking", "gradient masking"]}))
    p = PaperReport("toy", "Toy", [info], None)
    assert audit_summary(p) == "toy_audit: 2 gradient masking, 1 robustness holds"
    assert [_verdict_class(v) for v in ("robustness holds", "gradient masking", "weak attack", V.SUPPORTED, V.NOT_DECIDABLE, "not testable")] == [
        "v-yes",
        "v-no",
        "v-open",
        "v-yes",
        "v-nd",
        "v-nd",
    ]


def lite_report(tier):
    """A report of one paper whose claims got each outcome, rendered without a plan or results."""
    from robrepro.report import PaperReport, Report

    def claim_(cid, **kw):
        return V.Claim("toy", cid, f"Claim {cid}.", f"Table {cid}", ("lite", "paper"), {"table": "toy_t"}, **kw)

    vs = [
        V.Verdict(claim_("a", note="Read beside the audit.", quote=("ODE nets are robust",)), V.SUPPORTED, "holds in 2/2", pd.DataFrame(), "holds"),
        V.Verdict(claim_("b"), V.REFUTED, "fails in 1"),
        V.Verdict(claim_("c"), V.NOT_DECIDABLE, "at floor/ceiling in 1"),
        V.Verdict(claim_("d"), V.INCONCLUSIVE, "within noise in 1"),
    ]
    p = PaperReport("toy", "Toy paper", [], vs, unclaimed=[{"target": "toy_fig", "reason": "a picture of the setup"}])
    p.stand_ins = {"toy_t": "t1-res = resnet(width=8), clean accuracy 97.5 %"}
    return Report(tier, [p], "abc", "now", "results/" + tier)


def test_the_lite_report_never_says_supported_or_refuted_and_shows_every_claims_source(tmp_path):
    from robrepro.report import render_html, render_md

    rep = lite_report("lite")
    page, md = render_html(rep, tmp_path), render_md(rep, tmp_path / "REPORT.md")
    for text in (page, md):
        low = text.lower()
        assert "supported" not in low and "refuted" not in low
        for words in ("effect shown at lite scale", "effect not shown at lite scale", "not decidable at lite scale", "inconclusive at lite scale"):
            assert words in text
        assert "1 effect shown at lite scale, 1 effect not shown at lite scale, 1 not decidable at lite scale, 1 inconclusive" in text
        for shown in (
            "Table a",
            "Read beside the audit.",
            "ODE nets are robust",
            "resnet(width=8), clean accuracy 97.5 %",
            "toy_fig",
            "a picture of the setup",
        ):
            assert shown in text, shown
        assert "no published number in this test" in text and "holds" in text
        assert text.count("clean accuracy 97.5 %") == 1  # only beside the claim that was measured
    # The paper tier says it plainly.
    paper = render_md(lite_report("paper"), tmp_path / "REPORT.md")
    assert "1 supported, 1 refuted, 1 not decidable, 1 inconclusive" in paper


# Where a paper's own tables contradict the summary a claim encodes: none left, each claim now leaves the
# paper's own exception out by a filter (GM's standard error at MNIST eps_train 0.6; see its note).
PAPER_EXCEPTIONS: set[tuple[str, str]] = set()


def test_claims_hold_on_the_papers_own_numbers():
    """Each claim with a published column, run on a table made of the published numbers alone, holds,
    except where the paper's tables contradict its own summary: a check that left and right, filters
    and margins are encoded as the paper means them."""
    from robrepro import papers
    from robrepro import tables_figures as R

    checked = 0
    for name in papers.registry():
        pub = R.published(name)
        for c in V.load_claims(name) or []:
            col = c.test.get("published")
            item = c.table.removeprefix(f"{name}_")
            rows = pub[pub["item"] == item]
            if not col or not len(rows):
                continue
            # The unprefixed published column is the item's robust accuracy where it has one (NODE Table 2 has clean and robust).
            metric = col.removesuffix("_published") if col != "published" else next(m for m in ("robust_acc", *rows["metric"]) if m in set(rows["metric"]))
            rows = rows[rows["metric"] == metric]
            df = pd.DataFrame([{**k, col: v, c.test["value"]: v, "n": 100_000, "data": "real"} for k, v in zip(rows["key"], rows["value"])])
            v = V.judge(c, {c.table: df}, "paper")
            want = "fails" if (name, c.id) in PAPER_EXCEPTIONS else "holds"
            assert v.on_published == want, (name, c.id, v.evidence)
            checked += 1
    assert checked >= 5


def test_stand_ins_name_each_model_behind_a_target_with_its_clean_accuracy(repo_root, tmp_path):
    from robrepro.config import load
    from robrepro.plan import Plan
    from robrepro.report import _Docs, stand_ins

    plan = Plan(load(repo_root / "config" / "config.yaml", repo_root / "config" / "lite.yaml"))
    run_of = {plan.job_file(*k): k[1] for k in plan.jobs if k[1]}
    target = next(t for t in plan.targets.values() if any(f in run_of for f in t.inputs))
    runs = sorted({run_of[f] for f in target.inputs if f in run_of})
    first = next(f for f in target.inputs if run_of.get(f) == runs[0])
    (tmp_path / first).parent.mkdir(parents=True)
    # A complete result, as the job writes it: the report reads results through the checked reader.
    (tmp_path / first).write_text(json.dumps({"attacks": {"pgd": {"clean_acc": 0.975}}, "provenance": {}, "complete": True}))
    text = stand_ins(plan, target, _Docs(tmp_path), limit=100)
    model = plan.runs[(target.paper, runs[0])]["model"]
    assert f"{runs[0]} = {model.get('name', 'model')}(" in text and "clean accuracy 97.5 %" in text
    assert all(r in text for r in runs) and text.count("clean accuracy") == 1


def test_the_report_opens_with_every_claim_linked_to_its_evidence(tmp_path):
    import re

    from robrepro import verdicts as V
    from robrepro.report import render_html, render_md

    rep = lite_report("lite")
    page = render_html(rep, tmp_path)
    matrix = page[page.index('id="claims-matrix"') : page.index("</table>", page.index('id="claims-matrix"'))]
    assert page.index('id="claims-matrix"') < page.index('id="summary"')  # first thing after the tier's banner
    chips = re.findall(r'<a class="chip ([^"]+)" href="#([^"]+)"[^>]*><b>([^<]+)</b> <span class="verdict">([^<]+)</span>', matrix)
    p = rep.papers[0]
    assert [c[2] for c in chips] == [v.claim.id for v in p.verdicts]
    for (cls, anchor, _, words), v in zip(chips, p.verdicts):
        assert f'id="{anchor}"' in page  # the link lands on the claim's row of evidence
        assert words == V.status_label(v.status, "lite") and cls.startswith("v-")
    assert len({c[0] for c in chips}) == 4  # each outcome its own colour
    md = render_md(rep, tmp_path / "REPORT.md")
    assert md.index("At a glance") < md.index("## Summary")
    assert all(f"| {v.claim.id} | {V.status_label(v.status, 'lite')} |" in md for v in p.verdicts)


def test_a_wide_table_shows_who_and_what_decides_first_and_folds_the_rest():
    import pandas as pd

    from robrepro.report.html_page import html_table
    from robrepro.report.words import KEY_WIDTH, key_columns

    gm = "dataset,eps_eval,eps_train,method,std_err,verified_err_crown_ibp,verified_err_ibp,pgd_err,n,data,std_err_published,"
    gm += "std_err_tolerance,std_err_diff,std_err_within_tol,verified_err_published,verified_err_tolerance,verified_err_diff,verified_err_within_tol,within_tol"
    key = key_columns(gm.split(","))
    assert key[:4] == ["dataset", "eps_eval", "eps_train", "method"]
    assert key[4:8] == ["std_err_published", "std_err", "std_err_diff", "std_err_within_tol"]
    assert key[8:11] == ["verified_err_published", "verified_err_crown_ibp", "verified_err_ibp"]
    assert "verified_err_tolerance" not in key and "pgd_err" not in key
    audit = [f"c{i}" for i in range(11)] + ["verdict"] + [f"d{i}" for i in range(11)]
    assert "verdict" in key_columns(audit)[:KEY_WIDTH]
    narrow = ["b", "verdict", "a"]
    assert key_columns(narrow) == narrow  # a table that fits keeps its order
    df = pd.DataFrame([range(len(audit))], columns=audit)
    shown, folded = html_table(df).split("<details>")
    assert "<th>verdict</th>" in shown and "<th>d10</th>" not in shown
    assert "All 23 columns" in folded and "<th>d10</th>" in folded


def test_the_schema_walk_follows_refs_with_their_siblings_and_reports_marked_settings(repo_root):
    from robrepro.config import load
    from robrepro.report import unknown_settings
    from robrepro.schemawalk import walk

    root = {
        "$defs": {"r": {"type": "object", "properties": {"x": {"description": "[UNKNOWN] x"}}}},
        "properties": {"a": {"$ref": "#/$defs/r", "description": "[INF] a"}, "l": {"items": {"$ref": "#/$defs/r"}}},
    }
    seen = []
    walk(root, root, {"a": {"x": 1}, "l": [{"x": 2}], "other": 3}, lambda _, s, v, path: seen.append((path, s.get("description"), v)) or True)
    assert ("a", "[INF] a", {"x": 1}) in seen and ("a.x", "[UNKNOWN] x", 1) in seen and ("l.0.x", "[UNKNOWN] x", 2) in seen
    assert not any(p == "other" for p, *_ in seen)  # not in the schema: not walked
    config = load(repo_root / "config" / "config.yaml", repo_root / "config" / "lite.yaml")
    marked = {u["key"]: u["marker"] for u in unknown_settings(config, "gm")}
    assert "UNKNOWN" in marked["gm.recipes"]
