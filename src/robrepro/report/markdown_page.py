"""The report in Markdown (``REPORT.md``), rendered from the same collected :class:`~.collect.Report` as the HTML page."""

from __future__ import annotations

import os

import pandas as pd

from .collect import PaperReport, Report
from .words import (
    TIER_NOTE,
    _audit_tables,
    _fmt,
    _short,
    audit_counts,
    audit_summary,
    certified_summary,
    claims_text,
    compute_text,
    matrix,
    numbers_text,
    reading_text,
)


def md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]

    def cell(v):
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _claims_md(p: PaperReport, tier: str) -> list[str]:
    rows = p.claims
    if not rows:
        return ["No claims.", ""]
    cols = {
        "id": "id",
        "claim": "claim",
        "where": "where",
        "table": "judged on",
        "verdict": "verdict",
        "evidence": "evidence",
        "published": "on the paper's numbers",
    }
    out = [md_table(pd.DataFrame(rows)[list(cols)].rename(columns=cols)), ""]
    for r in rows:
        extra = [f"the paper: {r['quote']}" if r["quote"] else "", f"note: {r['note']}" if r["note"] else ""]
        extra.append(f"measured on the stand-ins {r['measured on']}" if r["measured on"] else "")
        if any(extra):
            out.append(f"- **{r['id']}**: " + "; ".join(x for x in extra if x))
    if p.unclaimed:
        out += ["", "Tables and figures without a claim:", ""] + [f"- `{u['target']}`: {u['reason']}" for u in p.unclaimed]
    return out + [""]


def render_md(rep: Report, md_path: str | os.PathLike) -> str:
    out = [f"# Reproduction report: {rep.tier} tier", "", f"> {TIER_NOTE.get(rep.tier, '')}", ""]
    out += ["## At a glance: every claim and its outcome", ""]
    glance = [{"paper": m["title"], "claim": c["id"], "outcome": c["verdict"]} for m in matrix(rep) for c in m["claims"]]
    glance += [{"paper": m["title"], "claim": "", "outcome": m["state"]} for m in matrix(rep) if not m["claims"]]
    out += [md_table(pd.DataFrame(glance)) if glance else "No paper is active in this configuration.", ""]
    out += [f"Results under `{rep.root}`; report built {rep.generated} from code {rep.code}.", "", "## Summary", ""]
    rows = [
        {"paper": p.title, "claims": claims_text(p, rep.tier), "published numbers": numbers_text(p.numbers, rep.tier), "audits": audit_summary(p)}
        for p in rep.papers
    ]
    out += [md_table(pd.DataFrame(rows)) if rows else "No paper is active in this configuration.", ""]
    for p in rep.papers:
        out += [
            f"## {p.title}",
            "",
            f"**Claims:** {claims_text(p, rep.tier)}. **Published numbers:** {numbers_text(p.numbers, rep.tier)}. **Compute:** {compute_text(p.compute)}.",
            "",
        ]
        out += ["### Claims", ""]
        if p.claims_error:
            out += ["The claims file does not validate:", "", "```", p.claims_error, "```", ""]
        elif p.verdicts is None:
            out += [f"No claims file yet (`published/{p.name}.claims.yaml`).", ""]
        else:
            out += _claims_md(p, rep.tier)
        for t in p.targets:
            tg = t.target
            out += [f"### {tg.title} ({tg.name})", ""]
            if not t.built:
                out += [f"Not built yet: `{tg.outputs['csv']}` is missing.", ""]
                continue
            meta = [f"data: {t.data}", f"code: {', '.join(t.commits) or 'unknown'}", f"compute: {compute_text(t.compute)}"]
            if tg.kind == "table":
                meta.insert(0, f"published numbers: {numbers_text(t.numbers, rep.tier)}")
            out += ["_" + " · ".join(meta) + "_", ""]
            if t.png:
                # Relative to the Markdown file, so that it resolves wherever the results folder is.
                rel = os.path.relpath(t.png, f"{rep.root}/report")
                out += [f"![{tg.title}]({rel})", ""]
            elif t.df is not None:
                out += [md_table(t.df), ""]
            out += [f"- {n}" for n in t.notes] + ([""] if t.notes else [])
        if p.unknowns:
            out += ["### Settings the paper does not give", ""]
            out += [md_table(pd.DataFrame([{**u, "value": _short(u["value"], 120)} for u in p.unknowns])[["key", "marker", "value"]]), ""]
    out += ["## Audits", ""]
    for p in rep.papers:
        if p.certified:
            bad = [r for r in p.certified if not r["ok"]]
            out += [f"- {p.title}: {certified_summary(p)}" + (f"; violations: {bad}" if bad else "")]
        out += [f"- {audit_counts(t)}" for t in _audit_tables(p)]
    out += ["", "## How to read this report", ""] + [f"- {t}" for t in reading_text(rep.tier)] + [""]
    return "\n".join(out)
