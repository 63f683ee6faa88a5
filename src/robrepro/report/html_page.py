"""The report as one self-contained HTML page, rendered from the collected :class:`~.collect.Report`."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import pandas as pd

from .. import verdicts as V
from .collect import PaperReport, Report, TargetInfo, _truth
from .words import (
    CELL_COLUMNS,
    TIER_NOTE,
    _audit_tables,
    _fmt,
    _short,
    _slug,
    audit_counts,
    audit_summary,
    claim_anchor,
    claims_text,
    compute_text,
    key_columns,
    matrix,
    numbers_text,
    reading_text,
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;line-height:1.45}
main{max-width:1340px;margin:0 auto;padding:0 1.5rem 4rem}
nav{position:sticky;top:0;background:#f4f6f9;border-bottom:1px solid #d8dde6;padding:.4rem 1.5rem;font-size:.9rem;z-index:2}
nav a{margin-right:1rem;color:#1f5fa8;text-decoration:none}
h1{margin-top:1.2rem}h2{border-bottom:2px solid #d8dde6;padding-bottom:.2rem;margin-top:2.5rem}h3{margin-top:2rem}
.banner{background:#fff5d6;border:1px solid #e8cf7a;padding:.6rem .8rem;border-radius:4px}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #d8dde6;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f6;cursor:pointer}th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.v-yes,.ok{background:#dff3e3}.v-no,.bad{background:#fadbd8}.v-open{background:#fff1c9}.v-nd{background:#eceff3}.v-none{background:#fff;border-style:dashed}
.badge{padding:.05rem .45rem;border-radius:3px;font-weight:600;white-space:nowrap}
.meta{color:#4b5565;font-size:.85rem}
details{margin:.4rem 0}summary{cursor:pointer;color:#1f5fa8}
img{max-width:100%;border:1px solid #d8dde6}
.scroll{overflow-x:auto}
table.matrix th{text-align:left;width:14rem;cursor:default;font-weight:600}table.matrix td{line-height:2}
.chip{display:inline-block;margin:.1rem .25rem .1rem 0;padding:0 .45rem;border-radius:3px;border:1px solid #c9d0db;color:#1d2430;text-decoration:none;font-size:.8rem;line-height:1.6}
.chip:hover{border-color:#1f5fa8}
figure{margin:.6rem 0}figcaption{color:#4b5565;font-size:.85rem;margin-top:.2rem}
code{background:#f1f3f6;padding:0 .2rem}
"""


JS = """
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){
var table=th.closest('table'),body=table.tBodies[0],i=th.cellIndex,asc=!th.classList.contains('sorted-asc');
table.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc')});
th.classList.add(asc?'sorted-asc':'sorted-desc');
function key(r){var v=(r.cells[i]?r.cells[i].textContent:'').trim(),n=parseFloat(v);return (/^[-+]?[0-9.]/.test(v)&&!isNaN(n))?[0,n]:[1,v.toLowerCase()]}
Array.from(body.rows).sort(function(a,b){var x=key(a),y=key(b);var c=x[0]-y[0]||(x[1]<y[1]?-1:x[1]>y[1]?1:0);return asc?c:-c})
.forEach(function(r){body.appendChild(r)})})});
"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _header(c) -> str:
    # Long column names break after their underscores rather than widening the table.
    return _e(c).replace("_", "_<wbr>")


def _rows_html(df: pd.DataFrame, cols: list, max_rows: int) -> str:
    body = []
    for row in df[cols].head(max_rows).itertuples(index=False):
        cells = []
        for c, v in zip(cols, row):
            cls = []
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                cls.append("num")
            t = _truth(v) if str(c).endswith("within_tol") or c in ("ok", "verdict_ok") else None
            if t is not None:
                cls.append("ok" if t else "bad")
            if c == "verdict":
                cls.append(_verdict_class(str(v)))
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{_e(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{_header(c)}</th>" for c in cols)
    return f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def html_table(df: pd.DataFrame, max_rows: int = 2000) -> str:
    """A sortable table; a wide one shows its identifying and deciding columns first (``words.key_columns``)
    and folds the full table below, so that the numbers a reader decides on never sit off-screen."""
    cols = list(df.columns)
    key = key_columns(cols)
    more = f'<p class="meta">{len(df) - max_rows} more rows in the CSV.</p>' if len(df) > max_rows else ""
    if len(key) == len(cols):
        return _rows_html(df, cols, max_rows) + more
    rest = [str(c) for c in cols if c not in key]
    folded = f"<details><summary>All {len(cols)} columns ({len(rest)} more: {_e(', '.join(rest))})</summary>{_rows_html(df, cols, max_rows)}</details>"
    return _rows_html(df, key, max_rows) + more + folded


STATUS_CLASS = {V.SUPPORTED: "v-yes", V.REFUTED: "v-no", V.INCONCLUSIVE: "v-open", V.NOT_DECIDABLE: "v-nd", V.NO_VERDICT: "v-none"}


def _verdict_class(v: str) -> str:
    """Colour of a verdict cell: ours, or an audit table's (whose words say whether a result holds)."""
    if v in STATUS_CLASS:
        return STATUS_CLASS[v]
    w = v.lower()
    if v in V.UNDECIDABLE or "not decidable" in w or "not testable" in w:
        return "v-nd"
    if v == V.HOLD or "holds" in w or "real" in w or "confirmed" in w:
        return "v-yes"
    if v == V.FAIL or any(x in w for x in ("masking", "fails", "refuted", "violat")):
        return "v-no"
    return "v-open"


def _badge(status: str, tier: str) -> str:
    return f'<span class="badge {STATUS_CLASS.get(status, "v-open")}">{_e(V.status_label(status, tier))}</span>'


def _png_data(root: Path, rel: str) -> str:
    return "data:image/png;base64," + base64.b64encode((root / rel).read_bytes()).decode("ascii")


def _claims_html(p: PaperReport, known_targets: set[str], tier: str) -> str:
    if p.claims_error:
        return f'<p class="banner">The claims file does not validate; no claim is judged.</p><pre>{_e(p.claims_error)}</pre>'
    if p.verdicts is None:
        return f"<p>No claims file yet (<code>published/{_e(p.name)}.claims.yaml</code>): no qualitative claim of this paper is judged.</p>"
    if not p.verdicts:
        return "<p>The claims file lists no claims.</p>" + _unclaimed_html(p)
    rows = []
    for r in p.claims:
        on = f"target-{_slug(r['table'])}"
        judged = f'<a href="#{on}">{_e(r["table"])}</a>' if r["table"] in known_targets else f"{_e(r['table'])} (not in this tier's plan)"
        quote = f"<br><i>{_e(r['quote'])}</i>" if r["quote"] else ""
        note = f'<br><span class="meta">Note: {_e(r["note"])}</span>' if r["note"] else ""
        models = f'<br><span class="meta">Measured on the stand-ins {_e(r["measured on"])}.</span>' if r["measured on"] else ""
        rows.append(
            f'<tr id="{claim_anchor(p.name, r["id"])}"><td>{_e(r["id"])}</td><td>{_e(r["claim"])}{quote}{note}</td><td>{_e(r["where"])}</td>'
            f"<td>{judged}</td><td>{_badge(r['status'], tier)}</td><td>{_e(r['evidence'])}{models}</td><td>{_e(r['published'])}</td></tr>"
        )
    table = (
        '<div class="scroll"><table class="sortable"><thead><tr><th>id</th><th>claim (the paper\'s words, note)</th><th>where</th><th>judged on</th>'
        f"<th>verdict</th><th>evidence</th><th>on the paper's own numbers</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    details = "".join(
        f"<details><summary>{_e(v.claim.id)}: every comparison</summary>{html_table(v.cells.rename(columns=CELL_COLUMNS))}</details>"
        for v in p.verdicts
        if v.cells is not None and len(v.cells)
    )
    return table + details + _unclaimed_html(p)


def _unclaimed_html(p: PaperReport) -> str:
    if not p.unclaimed:
        return ""
    items = "".join(f"<li><code>{_e(u['target'])}</code>: {_e(u['reason'])}</li>" for u in p.unclaimed)
    return f"<p>Tables and figures without a claim:</p><ul>{items}</ul>"


def _settings_html(t: TargetInfo) -> str:
    parts = []
    if t.target.params:
        parts.append(f"<p>Target parameters:</p><pre>{_e(json.dumps(t.target.params, indent=1, default=str))}</pre>")
    if t.runs:
        df = pd.DataFrame([{k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in r.items()} for r in t.runs])
        parts.append("<p>Trained models:</p>" + html_table(df))
    if t.job_params:
        df = pd.DataFrame([{k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in t.job_params])
        parts.append("<p>Evaluation jobs:</p>" + html_table(df.drop_duplicates()))
    return f"<details><summary>Settings used</summary>{''.join(parts) or '<p>none</p>'}</details>" if parts else ""


def _target_html(t: TargetInfo, root: Path, tier: str) -> str:
    tg = t.target
    out = [f'<h3 id="target-{_slug(tg.name)}">{_e(tg.title)} <span class="meta">({_e(tg.name)})</span></h3>']
    if not t.built:
        out.append(f"<p>Not built yet: <code>{_e(tg.outputs['csv'])}</code> is missing.</p>")
        return "".join(out)
    meta = [f"data: <b>{_e(t.data)}</b>", f"code: {_e(', '.join(t.commits) or 'unknown')}", f"compute: {_e(compute_text(t.compute))}"]
    if tg.kind == "table":
        meta.insert(0, f"published numbers: {_e(numbers_text(t.numbers, tier))}")
    out.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if t.png:
        caption = f"{tg.title}. {tier} tier; data: {t.data}."
        out.append(f'<figure><img alt="{_e(tg.title)}" src="{_png_data(root, t.png)}"><figcaption>{_e(caption)}</figcaption></figure>')
        if t.df is not None and len(t.df):
            out.append(f"<details><summary>Data behind the figure ({len(t.df)} rows)</summary>{html_table(t.df, max_rows=500)}</details>")
    elif t.df is not None:
        out.append(html_table(t.df))
    if t.notes:
        out.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in t.notes) + "</ul>")
    out.append(_settings_html(t))
    return "".join(out)


def _unknowns_html(p: PaperReport) -> str:
    if not p.unknowns:
        return "<p>No setting of this paper is marked [UNKNOWN] or [INF] in its schema.</p>"
    df = pd.DataFrame([{**u, "value": _short(u["value"], 300)} for u in p.unknowns])[["key", "marker", "value", "description"]]
    return html_table(df)


def _certified_html(p: PaperReport) -> str:
    if not p.certified:
        return ""
    df = pd.DataFrame(p.certified)
    bad = df[~df["ok"]]
    per_point = int((df["check"] != "errors only").sum()) if "check" in df else 0
    head = f"<p>Certified error &ge; attack error: {len(df) - len(bad)}/{len(df)} (model, radius, bound) checks hold"
    head += f" ({per_point} recomputed from per-point results: no certified point broken by the attack)."
    head += " A violation means an unsound bound or a broken evaluation.</p>" if len(bad) else "</p>"
    return head + f"<details><summary>Every check</summary>{html_table(df)}</details>" + (html_table(bad) if len(bad) else "")


def _audit_verdicts_html(p: PaperReport) -> str:
    out = []
    for t in _audit_tables(p):
        out.append(f'<p>Verdicts of <a href="#target-{_slug(t.target.name)}">{_e(t.target.name)}</a>: {_e(audit_counts(t).split(": ", 1)[1])}.</p>')
    return "".join(out)


def matrix_html(rep: Report) -> str:
    """The claim matrix: one row per paper, one chip per claim (colour and the tier's word), each linked to its row of evidence."""
    rows = []
    for m in matrix(rep):
        chips = "".join(
            f'<a class="chip {STATUS_CLASS.get(c["status"], "v-open")}" href="#{c["anchor"]}" title="{_e(c["claim"])}">'
            f'<b>{_e(c["id"])}</b> <span class="verdict">{_e(c["verdict"])}</span></a>'
            for c in m["claims"]
        )
        head = f'<a href="#paper-{_slug(m["paper"])}">{_e(m["title"])}</a>'
        rows.append(f"<tr><th>{head}</th><td>{chips or _e(m['state'])}</td></tr>")
    if not rows:
        return ""
    return f'<table id="claims-matrix" class="matrix"><tbody>{"".join(rows)}</tbody></table>'


def render_html(rep: Report, root: str | os.PathLike = ".") -> str:
    root = Path(root)
    known = {t.target.name for p in rep.papers for t in p.targets}
    nav = ['<a href="#glance">Claims</a>', '<a href="#summary">Summary</a>'] + [
        f'<a href="#paper-{_slug(p.name)}">{_e(p.name.upper())}</a>' for p in rep.papers
    ]
    nav += ['<a href="#audits">Audits</a>', '<a href="#reading">How to read</a>']
    summary_rows = []
    for p in rep.papers:
        audit = audit_summary(p)
        summary_rows.append(
            f'<tr><td><a href="#paper-{_slug(p.name)}">{_e(p.title)}</a></td><td>{_e(claims_text(p, rep.tier))}</td>'
            f"<td>{_e(numbers_text(p.numbers, rep.tier))}</td><td>{_e(audit)}</td><td>{_e(compute_text(p.compute))}</td></tr>"
        )
    body = [
        f"<h1>Reproduction report: {_e(rep.tier)} tier</h1>",
        f'<p class="banner">{_e(TIER_NOTE.get(rep.tier, ""))}</p>',
        '<h2 id="glance">At a glance: every claim and its outcome</h2>',
        matrix_html(rep) or "<p>No paper is active in this configuration.</p>",
        f'<p class="meta">Results under <code>{_e(rep.root)}</code>; report built {_e(rep.generated)} from code {_e(rep.code)}.</p>',
        '<h2 id="summary">Summary: which results hold up</h2>',
        '<div class="scroll"><table class="sortable"><thead><tr><th>paper</th><th>claims</th><th>published numbers</th><th>audits</th><th>compute</th></tr></thead>'
        f"<tbody>{''.join(summary_rows)}</tbody></table></div>",
    ]
    if not rep.papers:
        body.append("<p>No paper is active in this configuration.</p>")
    for p in rep.papers:
        toc = "".join(f'<li><a href="#target-{_slug(t.target.name)}">{_e(t.target.title)}</a></li>' for t in p.targets)
        body += [
            f'<h2 id="paper-{_slug(p.name)}">{_e(p.title)}</h2>',
            f"<p><b>Claims:</b> {_e(claims_text(p, rep.tier))}. <b>Published numbers:</b> {_e(numbers_text(p.numbers, rep.tier))}. "
            f"<b>Compute:</b> {_e(compute_text(p.compute))}.</p>",
            f"<ul>{toc}</ul>" if toc else "<p>No tables or figures of this paper at this tier.</p>",
            f'<h3 id="claims-{_slug(p.name)}">Claims</h3>',
            _claims_html(p, known, rep.tier),
        ]
        body += [_target_html(t, root, rep.tier) for t in p.targets]
        body += [f'<h3 id="unknowns-{_slug(p.name)}">Settings the paper does not give</h3>', _unknowns_html(p)]
    body.append('<h2 id="audits">Audits</h2>')
    for p in rep.papers:
        inner = _certified_html(p) + _audit_verdicts_html(p)
        body.append(f"<h3>{_e(p.title)}</h3>" + (inner or "<p>No certified results and no audit table at this tier.</p>"))
        body.append(f'<p>Settings marked [UNKNOWN]/[INF]: {len(p.unknowns)}, listed in <a href="#unknowns-{_slug(p.name)}">the paper\'s section</a>.</p>')
    body.append(reading_html(rep.tier))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Reproduction report ({_e(rep.tier)})</title><style>{CSS}</style></head><body>"
        f"<nav>{''.join(nav)}</nav><main>{''.join(body)}</main><script>{JS}</script></body></html>\n"
    )


def reading_html(tier: str) -> str:
    return '<h2 id="reading">How to read this report</h2><ul>' + "".join(f"<li>{_e(t)}</li>" for t in reading_text(tier)) + "</ul>"
