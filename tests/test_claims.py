"""The claims files against the papers' texts and the plan (cheap: no training, no results).

Every quotation of a claim is a verbatim substring of its paper's text; every locator a claim cites
(Table 1, Fig. 3, Sec. 4.2.1, Appendix A, a named part such as "Major results") exists in that text;
every target of the paper-tier plan has a claim or a stated reason for none; every claim parses; and a
claim checked against the paper's own numbers holds on them (the paper's exceptions are encoded).

The texts are the ``docs/papers`` folder of the shared material beside the repository (the parent of
``ROBREPRO_TEST_DATA`` when that is set, else ``../shared`` beside the repository root), or
``ROBREPRO_PAPER_TEXTS``. Missing texts skip these tests, unless ``ROBREPRO_REQUIRE_DATA=1``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from robrepro import tables_figures as R
from robrepro import verdicts as V
from robrepro.config import load
from robrepro.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("gm", "node", "ssp", "trdnn")

# Parts of the texts a locator may name; each must then occur in that paper's text.
HEADINGS = ("Abstract", "Findings", "Motivation", "Main idea", "Method", "Major results", "Conclusions", "Introduction")

# Which published metric a claim's ``published`` column stands for, per target (see the builders).
PUBLISHED_METRIC = {
    ("gm_table3", "verified_err_published"): "verified_err",
    ("gm_table3", "std_err_published"): "std_err",
    ("node_table1", "published"): "robust_acc",
    ("node_clean", "published"): "clean_acc",
    ("node_table2", "published"): "robust_acc",
    ("ssp_fig_pgr", "published"): "pgr",
}


def _texts_dir() -> Path | None:
    cands = [os.environ.get("ROBREPRO_PAPER_TEXTS")]
    if os.environ.get("ROBREPRO_TEST_DATA"):
        cands.append(str(Path(os.environ["ROBREPRO_TEST_DATA"]).parent / "docs" / "papers"))
    cands.append(str(ROOT.parent / "shared" / "docs" / "papers"))
    for c in filter(None, cands):
        if all((Path(c) / f"{p}.txt").is_file() for p in PAPERS):
            return Path(c)
    return None


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    d = _texts_dir()
    if d is None:
        if os.environ.get("ROBREPRO_REQUIRE_DATA") == "1":
            pytest.fail("the papers' texts (docs/papers/*.txt of the shared material) were not found (ROBREPRO_REQUIRE_DATA=1)")
        pytest.skip("the papers' texts were not found; set ROBREPRO_PAPER_TEXTS")
    return {p: (d / f"{p}.txt").read_text(encoding="utf-8") for p in PAPERS}


def _doc(paper: str) -> dict:
    return yaml.safe_load(V.claims_file(paper).read_text())


def _quotes(c: dict) -> list[str]:
    q = c.get("quote")
    return [] if q is None else [q] if isinstance(q, str) else list(q)


def locators(where: str) -> list[tuple[str, list[str]]]:
    """The locator tokens of a ``where`` string, each with the spellings any of which the text must contain."""
    out = []
    for m in re.finditer(r"\bTables?\s+([A-Z]?\d+)", where):
        out.append((m.group(0), [f"Table {m.group(1)}"]))
    for m in re.finditer(r"\b(?:Fig\.|Figs\.|Figure)\s*(\d+)", where):
        out.append((m.group(0), [f"Fig. {m.group(1)}", f"Figure {m.group(1)}"]))
    for m in re.finditer(r"\bSec(?:\.|tion)\s*(\d+(?:\.\d+)*)", where):
        out.append((m.group(0), [f"\n{m.group(1)} "]))  # a section heading starts its line with its number
    for m in re.finditer(r"\bAppendix\s+([A-Z])\b", where):
        out.append((m.group(0), [f"Appendix {m.group(1)}"]))
    out += [(h, [h]) for h in HEADINGS if re.search(rf"\b{h}\b", where)]
    return out


def test_locator_tokens():
    toks = [t for t, _ in locators("Sec. 4.2.1, Table 1 (MNIST); Fig. 3 (a, c); Figure 2; Appendix A; Major results")]
    assert toks == ["Table 1", "Fig. 3", "Figure 2", "Sec. 4.2.1", "Appendix A", "Major results"]


@pytest.mark.parametrize("paper", PAPERS)
def test_claims_parse(paper):
    claims = V.load_claims(paper)
    assert claims, f"{paper}: no claims"
    doc = _doc(paper)
    assert set(doc) <= {"paper", "claims", "unclaimed"}, f"{paper}: unknown top-level keys {set(doc) - {'paper', 'claims', 'unclaimed'}}"
    for u in doc.get("unclaimed") or []:
        assert set(u) == {"target", "reason"} and str(u["reason"]).strip(), f"{paper}: unclaimed entry {u} needs a target and a reason"


@pytest.mark.parametrize("paper", PAPERS)
def test_quotes_are_verbatim(paper, texts):
    bad, unquoted = [], []
    for c in _doc(paper)["claims"]:
        qs = _quotes(c)
        # The audit's own claims read the paper's central claim against this workflow's audit.
        if not qs and c["test"]["table"] != "node_audit":
            unquoted.append(c["id"])
        bad += [f"{c['id']}: {q!r}" for q in qs if q not in texts[paper]]
    assert not unquoted, f"{paper}: claims without a quotation: {unquoted}"
    assert not bad, f"{paper}: quotations not in docs/papers/{paper}.txt:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("paper", PAPERS)
def test_locators_exist(paper, texts):
    text = "\n" + texts[paper]
    bad = [f"{c['id']}: {tok}" for c in _doc(paper)["claims"] for tok, spellings in locators(c["where"]) if not any(s in text for s in spellings)]
    assert not bad, f"{paper}: locators not in docs/papers/{paper}.txt: {bad}"


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan(load(ROOT / "config" / "config.yaml"))


@pytest.mark.parametrize("paper", PAPERS)
def test_every_target_claimed_or_excused(paper, plan):
    targets = {t.name for t in plan.paper_targets(paper)}
    doc = _doc(paper)
    claimed = {c["test"]["table"] for c in doc["claims"]}
    excused = [u["target"] for u in doc.get("unclaimed") or []]
    assert claimed <= targets, f"{paper}: claims judged on targets the plan does not build: {claimed - targets}"
    assert set(excused) <= targets, f"{paper}: unclaimed names targets the plan does not build: {set(excused) - targets}"
    assert not claimed & set(excused), f"{paper}: targets both claimed and unclaimed: {claimed & set(excused)}"
    assert targets <= claimed | set(excused), f"{paper}: targets with neither a claim nor a reason: {targets - claimed - set(excused)}"


def published_table(paper: str, target: str, value: str, published: str) -> pd.DataFrame:
    """The paper's own numbers as if they were the reproduced table: key columns, ``value`` and ``published`` both the paper's."""
    metric = PUBLISHED_METRIC[(target, published)]
    pub = R.published(paper)
    pub = pub[(pub["item"] == target.removeprefix(f"{paper}_")) & (pub["metric"] == metric)]
    rows = [{**r.key, value: float(r.value), published: float(r.value), "n": 10000, "data": "real"} for r in pub.itertuples()]
    assert rows, f"{paper}: no published {metric} for {target}"
    return pd.DataFrame(rows)


def _published_claims():
    for paper in PAPERS:
        for c in V.load_claims(paper):
            if "published" in c.test:
                yield pytest.param(c, id=f"{paper}-{c.id}")


@pytest.mark.parametrize("claim", list(_published_claims()))
def test_claim_holds_on_papers_numbers(claim):
    key = (claim.table, claim.test["published"])
    assert key in PUBLISHED_METRIC, f"{claim.id}: add {key} to PUBLISHED_METRIC"
    df = published_table(claim.paper, claim.table, claim.test["value"], claim.test["published"])
    tier = next(t for t in ("paper", "lite") if t in claim.tiers)
    v = V.judge(claim, {claim.table: df}, tier)
    assert v.on_published == "holds", f"{claim.id}: the claim as stored fails on the paper's own numbers ({v.on_published!r}): {v.evidence}"


# --- GM Fig. 3: the total-error panels the drawdown claims are judged on ----------------------------


def _verify_doc(method: str, errs: list[float], eps: list[float]) -> dict:
    """A certified-evaluation result of one GM Table 3 run (MNIST, eps_train 0.4), as the verify job writes it."""
    prov = {"data_source": "real", "git": {"commit": "0" * 12, "dirty": False}, "spec": {"tier": "lite"}}
    return {
        "run": f"mnist-{method}-e0.4",
        "experiment": "table3",
        "labels": {"dataset": "mnist", "method": method, "eps_train": "0.4", "variants": []},
        "per_eps": [{"eps": e, "attack_err": 0.0, "verified_err": {"ibp": v / 100}} for e, v in zip(eps, errs)],
        "eps_labels": [f"{e:g}" for e in eps],
        "std_err": 0.05,
        "n": 1000,
        "provenance": prov,
    }


def test_gm_fig3_total_error_panels(tmp_path, monkeypatch):
    from robrepro.papers import gm

    eps = [0.05 * k for k in range(1, 9)]  # lite's fine grid up to eps_train 0.4
    curves = {"gm_crown_ibp": [5, 6, 8, 10, 12, 15, 18, 20], "crown_ibp": [4, 6, 9, 14, 30, 60, 90, 100], "ibp": [10, 12, 15, 20, 35, 70, 95, 100]}
    docs = {m: _verify_doc(m, v, eps) for m, v in curves.items()}
    monkeypatch.setattr(gm.R, "load_result", lambda p, kind=None: docs[p])
    outputs = {ext: str(tmp_path / f"gm_fig3.{ext}") for ext in ("png", "pdf", "csv")}
    df = gm.fig3(list(docs), outputs, total_step={"mnist": 0.1})
    assert Path(outputs["png"]).stat().st_size > 0
    total = df[df.panel == "total"]
    # Total error at eps: the mean verified error over 0.1, 0.2, ... up to eps (the fine grid's every other radius).
    gm_total = total[total.method == "gm_crown_ibp"].sort_values("eps")
    assert gm_total.eps.round(10).tolist() == [0.1, 0.2, 0.3, 0.4]
    assert gm_total.total_err.tolist() == [6.0, 8.0, 10.33, 12.75]  # errors 6, 10, 15, 20 at 0.1 ... 0.4
    assert len(df[df.panel == "verified"]) == 3 * len(eps)
    # The drawdown claims find their rows: GM below both baselines at the large radii, on both panels.
    claims = {c.id: c for c in V.load_claims("gm")}
    for cid in ("drawdown", "drawdown-total"):
        v = V.judge(claims[cid], {"gm_fig3": pd.read_csv(outputs["csv"])}, "lite")
        assert v.status == V.SUPPORTED, f"{cid}: {v.evidence}"


def test_gm_total_error_needs_the_whole_coarse_grid():
    from robrepro.papers import gm

    rows = pd.DataFrame([{"dataset": "mnist", "eps_train": "0.4", "method": "ibp", "bound": "ibp", "eps": e, "verified_err": 10.0} for e in (0.1, 0.2, 0.4)])
    # 0.3 was not evaluated: a mean over a grid with a hole would be a different quantity.
    assert gm.total_errors(rows, {"mnist": 0.1}).empty


# --- claims whose groups or cell counts are read off the paper tier's configuration ------------------


def _groups(c: V.Claim) -> list:
    return [g for side in ("left", "right") for g in (c.test[side] if isinstance(c.test[side], list) else [c.test[side]])]


def test_config_read_claims_name_groups_the_paper_tier_builds():
    """A claim that names step sizes (NODE Fig. 1) or ablation variants (GM Fig. 4) names ones the paper tier trains."""
    cfg = load(ROOT / "config" / "config.yaml")
    f4 = cfg["gm"]["fig4"]
    known = {
        "node_fig1": set(cfg["node"]["fig1"]["step_sizes"]),
        "gm_fig4": {f"w={w}" for w in f4["weight_types"] + f4["decreasing_weights"]} | {f"N={n}" for n in f4["sizes"]},
    }
    checked = 0
    for paper in ("node", "gm"):
        for c in V.load_claims(paper):
            if c.table in known:
                assert set(_groups(c)) <= known[c.table], f"{c.id}: groups {set(_groups(c)) - known[c.table]} are not built at the paper tier"
                checked += 1
    assert checked >= 6


def test_node_fig3_cifar_claim_counts_the_thresholds_above_the_texts_33():
    """fig3-cifar10 keeps the `count` largest thresholds: exactly those above 33 (0-255 units) of the paper tier's grid."""
    f3 = load(ROOT / "config" / "config.yaml")["node"]["fig3"]
    hi, n = float(f3["max_threshold"]["cifar10"]), f3["n_thresholds"]
    above = sum(255 * hi * i / (n - 1) > f3["text_threshold"] for i in range(n))
    claim = next(c for c in V.load_claims("node") if c.id == "fig3-cifar10")
    assert claim.test["largest"]["count"] == above
