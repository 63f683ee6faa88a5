"""The report's words: what a number, a count, a verdict or a tier means, said once for both pages."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import verdicts as V

if TYPE_CHECKING:
    from .collect import PaperReport, Report, TargetInfo

TIER_NOTE = {
    "smoke": "SMOKE TIER: tiny models, subsets and few steps, some datasets synthetic. The numbers check the pipeline end to end; "
    "no claim and no number is judged here (smoke: no verdict).",
    "lite": "LITE TIER: small stand-in models trained for minutes on real MNIST (and Iris) on a CPU, not the papers' models. "
    "A verdict here says only whether the effect shows at this scale, on the stand-ins named beside it; no claim of a paper is "
    "confirmed or contradicted by it. Published numbers are the papers' full-size results, so 'outside tolerance' is expected "
    "here; only the paper tier decides them.",
    "paper": "PAPER TIER: the papers' settings as far as they are known (see the unknown settings of each paper).",
}


def _fmt(v) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        # Below 1 four significant digits: radii on a 1/255 grid (0.0039, 0.0078...) stay apart.
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def compute_text(c: dict[str, Any]) -> str:
    if not c or not c.get("jobs"):
        return "no jobs"
    if not c["measured"]:
        return f"{c['jobs']} jobs, no benchmark files"
    txt = f"{_duration(c['wall_s'])} wall, {_duration(c['cpu_s'])} CPU over {c['measured']} jobs"
    if c["measured"] < c["jobs"]:
        txt += f" ({c['jobs'] - c['measured']} of {c['jobs']} without benchmark files)"
    if c["max_rss_mb"]:
        txt += f", peak memory {c['max_rss_mb']:.0f} MB"
    return txt


def numbers_text(n: dict[str, int], tier: str) -> str:
    if not n or not sum(n.values()):
        return "no published numbers"
    parts = [f"{n['within']} within tolerance", f"{n['outside']} outside"]
    parts += [
        f"{n[k]} {w}"
        for k, w in (
            ("not judged", "on synthetic data (not judged)"),
            ("no published value", "without a published value"),
            ("no reproduced value", "on real data without a reproduced value"),
        )
        if n.get(k)
    ]
    if tier == "smoke":
        return "smoke: no verdict (" + ", ".join(parts) + ")"
    return ", ".join(parts)


def claims_text(p: PaperReport, tier: str) -> str:
    """The paper's verdict counts, in the tier's words (below the paper tier: "effect shown at lite scale")."""
    if p.claims_error:
        return "claims file invalid"
    if p.verdicts is None:
        return "no claims file yet"
    c = V.counts(p.verdicts)
    if not p.verdicts:
        return "no claims"
    if c[V.NO_VERDICT] == len(p.verdicts):
        return f"{len(p.verdicts)} claims: {p.verdicts[0].evidence.split(' (')[0]}" if p.verdicts else ""
    shown = (V.SUPPORTED, V.REFUTED, V.NOT_DECIDABLE, V.INCONCLUSIVE)
    parts = [f"{c[s]} {V.status_label(s, tier)}" for s in shown if c[s] or s in (V.SUPPORTED, V.REFUTED)]
    if c[V.NO_VERDICT]:
        parts.append(f"{c[V.NO_VERDICT]} not judged at this tier")
    return ", ".join(parts)


def _audit_tables(p: PaperReport) -> list[TargetInfo]:
    return [t for t in p.targets if t.df is not None and "verdict" in t.df.columns]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", s).strip("-")


CELL_COLUMNS = {
    "left": "group",
    "right": "against",
    "left_value": "value",
    "right_value": "its value",
    "diff": "difference",
    "pm": "± noise (z se)",
    "p_hold": "p (claim holds)",
    "p_fail_holm": "p (claim fails), Holm",
}


def published_text(v: V.Verdict) -> str:
    """The claim's test on the paper's own published numbers, in words."""
    if v.on_published:
        return v.on_published
    if v.status == V.NO_VERDICT:
        return "not run at this tier"
    if "published" in v.claim.test:
        return "not run: no data"
    return "no published number in this test"


def quote_text(c: V.Claim) -> str:
    return " … ".join(f"“{q}”" for q in c.quote)


def claim_rows(p: PaperReport, tier: str) -> list[dict[str, str]]:
    """One row per claim with everything both renderings show: the claim, its source and quotation,
    its note, the verdict in the tier's words, the evidence, the models it was measured on and the
    check on the paper's own numbers."""
    out = []
    for v in p.verdicts or []:
        c = v.claim
        out.append(
            {
                "id": c.id,
                "claim": c.claim,
                "quote": quote_text(c),
                "where": c.where,
                "note": c.note,
                "table": c.table,
                "status": v.status,
                "verdict": V.status_label(v.status, tier),
                "evidence": v.evidence,
                "measured on": p.stand_ins.get(c.table, "") if v.cells is not None else "",  # only where something was measured
                "published": published_text(v),
            }
        )
    return out


def _short(value, n: int) -> str:
    s = json.dumps(value, default=str)
    return s if len(s) <= n else s[: n - 1] + "…"


def audit_counts(t: TargetInfo) -> str:
    counts = t.df["verdict"].astype(str).value_counts().to_dict()
    return f"{t.target.name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def audit_summary(p: PaperReport) -> str:
    return "; ".join(x for x in [certified_summary(p)] + [audit_counts(t) for t in _audit_tables(p)] if x) or "—"


def certified_summary(p: PaperReport) -> str:
    if not p.certified:
        return ""
    bad = sum(not r["ok"] for r in p.certified)
    per_point = sum(r.get("check", "errors only") != "errors only" for r in p.certified)
    return f"certified >= attack: {len(p.certified) - bad}/{len(p.certified)} hold ({per_point} checked per point)"


def reading_text(tier: str) -> list[str]:
    """How to read the report, in the words the tier's verdicts use."""

    def w(status):
        return V.status_label(status, tier)

    return [
        f"Claims: '{w(V.SUPPORTED)}' when every comparison of the claim's predicate clears its margin at the one-sided 2.5 % level "
        "(binomial errors from the n column; paired McNemar where the table carries per-point results; seed-to-seed variance where "
        f"it has several seeds); '{w(V.REFUTED)}' when a comparison misses it at that level after Holm's correction over all of the "
        f"claim's comparisons; '{w(V.NOT_DECIDABLE)}' when nothing misses and every comparison that does not clear it has all its "
        "values at the metric's floor or ceiling (within 1 % of its scale: 0 % against 0 % accuracy) or a test too weak to resolve "
        f"the margin or tolerance at this n (its power is in the evidence); '{w(V.INCONCLUSIVE)}' otherwise (within noise, missing "
        "data). 'no verdict' marks a claim at a tier that cannot decide it; the smoke tier decides none.",
        "Below the paper tier a verdict speaks for the small stand-in models named beside it (with their clean accuracy where their "
        "results give it), not for the paper's models: only the paper tier confirms or contradicts a claim of a paper.",
        "On the paper's own numbers: the same predicate run on the published values, which checks how the claim is encoded and shows "
        "where a paper's tables contradict its summary.",
        "Published numbers: within tolerance or outside it (tolerance per number, in published/<paper>.csv); rows on synthetic data are never judged.",
        "Compute: wall and CPU time of the jobs behind a table or figure, including the training of every model it evaluates "
        "(a model shared by several tables counts in each), from results/<tier>/benchmarks/; for a job run in a warm worker "
        "(local runs) the CPU time and peak memory are the job's own, from its result's provenance.",
    ]


# Columns that say which row is which, by name: they lead every shown table.
IDENTIFYING = ("dataset", "model", "method", "run", "block", "training", "paper_attack", "attack", "eps", "eps_eval", "eps_train")
IDENTIFYING += ("bound", "lambda_s", "experiment", "claim", "group", "against")
# Deciding columns by name where a table has one published column: the reproduced value, the gap, the verdict.
DECIDING = ("published", "paper_attack_acc", "worst_case_acc", "gap", "verdict", "within_tol", "ok")
KEY_WIDTH = 10  # columns a table shows before the rest is folded


def key_columns(cols: list) -> list:
    """The columns a wide table shows first: identifying ones, then the deciding ones (each published
    number, the reproduced value beside it, their difference and whether it is within tolerance, the
    verdict), then others up to ``KEY_WIDTH``; a table no wider than that keeps its order."""
    if len(cols) <= KEY_WIDTH:
        return list(cols)
    names = [str(c) for c in cols]
    key = [c for c in names if c in IDENTIFYING]
    for pub in (c for c in names if c.endswith("_published")):
        stem = pub[: -len("published")]
        # The reproduced value: the stem itself, or its variants (verified_err_ibp beside verified_err_published).
        reproduced = [c for c in names if c == stem[:-1] or (c.startswith(stem) and c[len(stem) :] not in ("published", "tolerance", "diff", "within_tol"))]
        key += [pub, *reproduced] + [stem + s for s in ("diff", "within_tol") if stem + s in names]
    key += [c for c in DECIDING if c in names]
    key = list(dict.fromkeys(key))
    key += [c for c in names if c not in key][: max(0, KEY_WIDTH - len(key))]
    order = {c: i for i, c in enumerate(names)}
    return [cols[order[c]] for c in key]


def claim_anchor(paper: str, claim_id: str) -> str:
    """The id of a claim's row in the paper's section: where the matrix links to its evidence."""
    return f"claim-{_slug(paper)}-{_slug(claim_id)}"


def matrix(rep: Report) -> list[dict[str, Any]]:
    """At a glance: every claim of every paper with its outcome in the tier's words, one entry per paper
    (a paper without claims, or with an invalid claims file, says so in ``state``)."""
    out = []
    for p in rep.papers:
        claims = [{**r, "anchor": claim_anchor(p.name, r["id"])} for r in p.claims]
        out.append({"paper": p.name, "title": p.title, "state": "" if claims else claims_text(p, rep.tier), "claims": claims})
    return out
