"""The reproduction report: which results of the papers hold up, on one self-contained page.

For the tier in force it writes ``results/<tier>/report/index.html`` (figures inline as PNG data,
sortable tables, a short navigation, no external resource: it opens from disk and inside
``snakemake --report``) and ``REPORT.md`` beside it. One section per active paper of the plan,
each led by its verdict summary: the claims of ``published/<paper>.claims.yaml`` judged by
:mod:`robrepro.verdicts` (smoke: no verdict) and the counts of published numbers reproduced within
tolerance, outside it, or without a published value. Then every table and figure with its notes
(the bullet lines of its Markdown), the settings it used, its data provenance (real or synthetic),
the code version of its results and the compute its jobs took (the rules' benchmark files).
Audits are added without being asked for: certified error >= attack error for every certified
model and radius; the verdict column of any audit table (a target whose CSV has a ``verdict``
column); and every setting whose schema description is marked [UNKNOWN] or [INF], with the value in
force. Tables come from the targets' CSV files, never from the Markdown.

Everything is read from the plan (:class:`robrepro.plan.Plan`): no paper is named here, and a
paper without claims, or whose outputs are not built yet, gets a line saying so while the rest
builds.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import verdicts as V
from .plan import Plan, PlannedTarget
from .results import git_state, load_result, write_text_atomic

MARKERS = ("[UNKNOWN", "[INF")


def outputs(root: str) -> dict[str, str]:
    """The report's files under a tier's results root (``Paths.root``)."""
    return {"html": f"{root}/report/index.html", "md": f"{root}/report/REPORT.md"}


# --- collecting -----------------------------------------------------------------------------------


@dataclass
class TargetInfo:
    target: PlannedTarget
    df: pd.DataFrame | None = None  # the table, or the data behind the figure
    notes: list[str] = field(default_factory=list)
    png: str | None = None  # path of the figure's PNG
    numbers: dict[str, int] = field(default_factory=dict)
    compute: dict[str, Any] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    data: str = "unknown"
    runs: list[dict[str, Any]] = field(default_factory=list)
    job_params: list[dict[str, Any]] = field(default_factory=list)

    @property
    def built(self) -> bool:
        return self.df is not None


@dataclass
class PaperReport:
    name: str
    title: str
    targets: list[TargetInfo]
    verdicts: list[V.Verdict] | None  # None: no claims file
    claims_error: str = ""
    unknowns: list[dict[str, Any]] = field(default_factory=list)
    certified: list[dict[str, Any]] = field(default_factory=list)
    compute: dict[str, Any] = field(default_factory=dict)

    @property
    def numbers(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.targets:
            for k, v in t.numbers.items():
                out[k] = out.get(k, 0) + v
        return out


@dataclass
class Report:
    tier: str
    papers: list[PaperReport]
    code: str
    generated: str
    root: str


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _notes(md: Path) -> list[str]:
    if not md.is_file():
        return []
    return [line[2:].strip() for line in md.read_text().splitlines() if line.startswith("- ")]


def _truth(v) -> bool | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    return True if s == "true" else False if s == "false" else None


def number_counts(df: pd.DataFrame | None) -> dict[str, int]:
    """Published numbers of a table: within tolerance, outside, not judged (synthetic data), no published value.

    One count per number: the per-metric ``<prefix>within_tol`` columns when a table has them (a
    row-level ``within_tol`` beside them only summarises them), else the plain ``within_tol``.
    """
    out = {"within": 0, "outside": 0, "not judged": 0, "no published value": 0}
    if df is None or not len(df):
        return out
    cols = [c for c in df.columns if c.endswith("within_tol")]
    cols = [c for c in cols if c != "within_tol"] or cols
    for c in cols:
        pub = c[: -len("within_tol")] + "published"
        for w, p in zip(df[c], df[pub] if pub in df else [math.nan] * len(df)):
            t = _truth(w)
            if t is True:
                out["within"] += 1
            elif t is False:
                out["outside"] += 1
            elif pd.isna(p):
                out["no published value"] += 1
            else:
                out["not judged"] += 1
    return out


class _Docs:
    """Result documents, loaded once each."""

    def __init__(self, root: Path):
        self.root, self.cache = root, {}

    def get(self, rel: str) -> dict[str, Any] | None:
        if rel not in self.cache:
            p = self.root / rel
            # A missing result (not built yet) shows as missing; a present one is read as every
            # aggregation reads it, so a stale or out-of-range result stops the report naming it.
            self.cache[rel] = load_result(p) if p.is_file() else None
        return self.cache[rel]


def _bench_files(plan: Plan, inputs: list[str]) -> list[str]:
    """Benchmark files of the jobs that made ``inputs``: each job, and the training of the model it evaluates."""
    p = plan.paths
    job_of = {plan.job_file(*k): k for k in plan.jobs}
    train_of = {p.train_result(pp, r): (pp, r) for pp, r in plan.runs}
    out = []
    for f in inputs:
        if f in job_of:
            paper, run, kind, name = job_of[f]
            if plan.kinds[kind].needs_model:
                out += [p.benchmark(paper, "eval", run, kind, name), p.benchmark(paper, "train", run)]
            else:
                out.append(p.benchmark(paper, "jobs", kind, name))
        elif f in train_of:
            out.append(p.benchmark(*train_of[f][:1], "train", train_of[f][1]))
    return sorted(set(out))


def compute(root: Path, files: list[str]) -> dict[str, Any]:
    """Wall and CPU seconds and peak memory summed over the benchmark files that exist."""
    wall = cpu = 0.0
    rss, found = 0.0, 0
    for f in files:
        df = _read_csv_tsv(root / f)
        if df is None or not len(df):
            continue
        found += 1
        wall += float(df["s"].iloc[-1])
        cpu += float(df["cpu_time"].iloc[-1]) if "cpu_time" in df and not pd.isna(df["cpu_time"].iloc[-1]) else 0.0
        rss = max(rss, float(df["max_rss"].iloc[-1]) if "max_rss" in df and not pd.isna(df["max_rss"].iloc[-1]) else 0.0)
    return {"jobs": len(files), "measured": found, "wall_s": wall, "cpu_s": cpu, "max_rss_mb": rss}


def _read_csv_tsv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, sep="\t", na_values=["-", "NA"])
    except (pd.errors.EmptyDataError, ValueError):
        return None


def _commit(doc: dict[str, Any]) -> str:
    g = doc.get("provenance", {}).get("git", {}) or {}
    return str(g.get("commit"))[:12] + ("+dirty" if g.get("dirty") else "") if g.get("commit") else "unknown"


def _run_settings(plan: Plan, paper: str, docs_inputs: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The trained models (run, dataset, model, training recipe) and the distinct job parameters behind a target's inputs."""
    job_of = {plan.job_file(*k): k for k in plan.jobs}
    train_of = {plan.paths.train_result(pp, r): r for pp, r in plan.runs if pp == paper}
    runs, params = {}, []
    for f in docs_inputs:
        run = job_of[f][1] if f in job_of else train_of.get(f)
        if f in job_of:
            ps = plan.jobs[job_of[f]]["params"]
            entry = {"kind": job_of[f][2], "name": job_of[f][3], **ps}
            if entry not in params:
                params.append(entry)
        if run and run not in runs and (paper, run) in plan.runs:
            s = plan.runs[(paper, run)]
            t = s["train"]
            runs[run] = {
                "run": run,
                "dataset": s["data"]["name"],
                "model": s["model"],
                "epochs": t.get("epochs"),
                "batch_size": t.get("batch_size"),
                "train_limit": s["data"].get("train_limit"),
                "objective": t.get("objective", {"name": "natural"}),
                "optimizer": t.get("optimizer"),
            }
    return list(runs.values()), params


def unknown_settings(config: dict[str, Any], paper: str) -> list[dict[str, Any]]:
    """Every key of ``paper``'s section whose schema description is marked [UNKNOWN] or [INF], with the value in force."""
    from .config import schema

    sch = schema()
    out: list[dict[str, Any]] = []

    def resolve(s):
        # A $ref's siblings (a description, a default) refine the definition it points to.
        while isinstance(s, dict) and "$ref" in s:
            local = {k: v for k, v in s.items() if k != "$ref"}
            s = {**sch["$defs"][s["$ref"].rsplit("/", 1)[1]], **local}
        return s

    def walk(s, value, path):
        s = resolve(s)
        if not isinstance(s, dict):
            return
        desc = str(s.get("description", ""))
        if any(m in desc for m in MARKERS):
            marker = ", ".join(m.strip("[") for m in MARKERS if m in desc)
            out.append({"key": path, "marker": marker, "value": value, "description": desc})
        if isinstance(value, dict):
            props, extra = s.get("properties", {}), s.get("additionalProperties")
            for k, v in value.items():
                sub = props.get(k, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    walk(sub, v, f"{path}.{k}")
        elif isinstance(value, list) and isinstance(s.get("items"), dict):
            for i, v in enumerate(value):
                walk(s["items"], v, f"{path}.{i}")

    walk(sch["properties"][paper], config.get(paper, {}), paper)
    return out


def certified_audit(plan: Plan, paper: str, docs: _Docs) -> list[dict[str, Any]]:
    """Certified error >= attack error for every certified model and radius (a sound bound can never
    certify a point an attack breaks): one row per (model, radius, bound) of every result carrying both.

    Recomputed here from the stored per-point results (which points each bound certified, which
    survived the attack), not taken from the job: a row fails when a certified point was broken, or
    when the stored errors disagree with the per-point results. A result without per-point results
    (older) is checked on its errors alone (``check``: errors only)."""
    from .evaluations.certified import soundness

    rows = []
    for key in sorted((k for k in plan.jobs if k[0] == paper), key=lambda k: tuple("" if x is None else str(x) for x in k)):
        doc = docs.get(plan.job_file(*key))
        for e in (doc or {}).get("per_eps", []) or []:
            if not isinstance(e, dict) or not isinstance(e.get("verified_err"), dict) or e.get("attack_err") is None:
                continue
            points = soundness(e)
            for bound, err in e["verified_err"].items():
                row = {
                    "run": key[1],
                    "eps": e.get("eps"),
                    "bound": bound,
                    "verified_err": 100 * float(err),
                    "attack_err": 100 * float(e["attack_err"]),
                    "data": doc.get("provenance", {}).get("data_source", "unknown"),
                }
                p = points.get(bound)
                if p is None:
                    row.update(check="errors only", violations=None, ok=float(err) >= float(e["attack_err"]) - 1e-9)
                else:
                    row.update(check="per point", violations=p["violations"], ok=p["violations"] == 0 and p["consistent"])
                    if not p["consistent"]:
                        row["check"] = "per point; stored errors disagree with the per-point results"
                rows.append(row)
    return rows


def collect(config: dict[str, Any], root: str | os.PathLike = ".") -> Report:
    """Everything the report shows, read from the results under ``root`` (the workflow's working directory)."""
    from .reporting import data_label

    plan = Plan(config)
    base = Path(root)
    docs = _Docs(base)
    tier = config["tier"]
    papers = []
    for name in plan.active_papers():
        targets = []
        paper_bench: set[str] = set()
        for t in plan.paper_targets(name):
            info = TargetInfo(t)
            info.df = _read_csv(base / t.outputs["csv"])
            if t.kind == "table":
                info.notes = _notes(base / t.outputs["md"])
            elif (base / t.outputs.get("png", "")).is_file():
                info.png = t.outputs["png"]
            info.numbers = number_counts(info.df) if t.kind == "table" else {}
            bench = _bench_files(plan, t.inputs)
            paper_bench.update(bench)
            info.compute = compute(base, bench)
            ds = [d for d in (docs.get(f) for f in t.inputs) if d]
            info.commits = sorted({_commit(d) for d in ds})
            srcs = [d.get("provenance", {}).get("data_source") for d in ds if d.get("provenance", {}).get("data_source")]
            info.data = data_label(srcs) if srcs else "unknown"
            info.runs, info.job_params = _run_settings(plan, name, t.inputs)
            targets.append(info)
        tables = {i.target.name: i.df for i in targets}
        verdicts, err = None, ""
        try:
            claims = V.load_claims(name)
        except V.ClaimsError as e:
            claims, err = None, str(e)
        if claims is not None:
            # A claim may be judged on another paper's target: every target of the plan is at hand.
            for t in plan.targets.values():
                if t.name not in tables:
                    tables[t.name] = _read_csv(base / t.outputs["csv"])
            verdicts = [V.judge(c, tables, tier) for c in claims]
        papers.append(
            PaperReport(
                name,
                plan.papers[name].title,
                targets,
                verdicts,
                err,
                unknown_settings(config, name),
                certified_audit(plan, name, docs),
                compute(base, sorted(paper_bench)),
            )
        )
    g = git_state()
    code = (str(g["commit"])[:12] + ("+dirty" if g["dirty"] else "")) if g.get("commit") else "unknown"
    return Report(tier, papers, code, dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), plan.paths.root)


# --- formatting helpers --------------------------------------------------------------------------


def _fmt(v) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g}"
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
    parts += [f"{n[k]} {w}" for k, w in (("not judged", "on synthetic data (not judged)"), ("no published value", "without a published value")) if n.get(k)]
    if tier == "smoke":
        return "smoke: no verdict (" + ", ".join(parts) + ")"
    return ", ".join(parts)


def claims_text(p: PaperReport) -> str:
    if p.claims_error:
        return "claims file invalid"
    if p.verdicts is None:
        return "no claims file yet"
    c = V.counts(p.verdicts)
    if not p.verdicts:
        return "no claims"
    if c[V.NO_VERDICT] == len(p.verdicts):
        return f"{len(p.verdicts)} claims: {p.verdicts[0].evidence.split(' (')[0]}" if p.verdicts else ""
    parts = [f"{c[s]} {s}" for s in (V.SUPPORTED, V.REFUTED, V.INCONCLUSIVE) if c[s] or s != V.INCONCLUSIVE]
    if c[V.NO_VERDICT]:
        parts.append(f"{c[V.NO_VERDICT]} not judged at this tier")
    return ", ".join(parts)


def _audit_tables(p: PaperReport) -> list[TargetInfo]:
    return [t for t in p.targets if t.df is not None and "verdict" in t.df.columns]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", s).strip("-")


TIER_NOTE = {
    "smoke": "SMOKE TIER: tiny models, subsets and few steps, some datasets synthetic. The numbers check the pipeline end to end; "
    "no claim and no number is judged here (smoke: no verdict).",
    "lite": "LITE TIER: small models trained for minutes on real MNIST (and Iris) on a CPU. The claims these data can decide are judged: "
    "a verdict says whether the effect shows at this scale. Published numbers are the papers' full-size results, so 'outside "
    "tolerance' is expected here; only the paper tier decides them.",
    "paper": "PAPER TIER: the papers' settings as far as they are known (see the unknown settings of each paper).",
}


# --- HTML ------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:0 1.5rem 4rem}
nav{position:sticky;top:0;background:#f4f6f9;border-bottom:1px solid #d8dde6;padding:.4rem 1.5rem;font-size:.9rem;z-index:2}
nav a{margin-right:1rem;color:#1f5fa8;text-decoration:none}
h1{margin-top:1.2rem}h2{border-bottom:2px solid #d8dde6;padding-bottom:.2rem;margin-top:2.5rem}h3{margin-top:2rem}
.banner{background:#fff5d6;border:1px solid #e8cf7a;padding:.6rem .8rem;border-radius:4px}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #d8dde6;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f6;cursor:pointer;white-space:nowrap}th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.supported,.ok{background:#dff3e3}.refuted,.bad{background:#fadbd8}.inconclusive{background:#fff1c9}.no-verdict{background:#eceff3}
.badge{padding:.05rem .45rem;border-radius:3px;font-weight:600;white-space:nowrap}
.meta{color:#4b5565;font-size:.85rem}
details{margin:.4rem 0}summary{cursor:pointer;color:#1f5fa8}
img{max-width:100%;border:1px solid #d8dde6}
.scroll{overflow-x:auto}
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


def html_table(df: pd.DataFrame, max_rows: int = 2000) -> str:
    cols = list(df.columns)
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for row in df.head(max_rows).itertuples(index=False):
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
    more = f'<p class="meta">{len(df) - max_rows} more rows in the CSV.</p>' if len(df) > max_rows else ""
    return f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'


def _verdict_class(v: str) -> str:
    """Colour of a verdict cell: ours, or an audit table's (whose words say whether a result holds)."""
    if v in V.STATUSES:
        return v.replace(" ", "-")
    w = v.lower()
    if v == V.HOLD or "holds" in w or "real" in w:
        return "supported"
    if v == V.FAIL or any(x in w for x in ("masking", "fails", "refuted", "violat")):
        return "refuted"
    return "inconclusive"


def _badge(status: str) -> str:
    return f'<span class="badge {status.replace(" ", "-")}">{_e(status)}</span>'


def _png_data(root: Path, rel: str) -> str:
    return "data:image/png;base64," + base64.b64encode((root / rel).read_bytes()).decode("ascii")


CELL_COLUMNS = {"left": "group", "right": "against", "left_value": "value", "right_value": "its value", "diff": "difference", "pm": "± noise (z se)"}


def _claims_html(p: PaperReport, known_targets: set[str]) -> str:
    if p.claims_error:
        return f'<p class="banner">The claims file does not validate; no claim is judged.</p><pre>{_e(p.claims_error)}</pre>'
    if p.verdicts is None:
        return f"<p>No claims file yet (<code>published/{_e(p.name)}.claims.yaml</code>): no qualitative claim of this paper is judged.</p>"
    if not p.verdicts:
        return "<p>The claims file lists no claims.</p>"
    rows = []
    for v in p.verdicts:
        c = v.claim
        on = f"target-{_slug(c.table)}"
        judged = f'<a href="#{on}">{_e(c.table)}</a>' if c.table in known_targets else f"{_e(c.table)} (not in this tier's plan)"
        pub = _e(v.on_published) if v.on_published else ""
        note = f'<br><span class="meta">{_e(c.note)}</span>' if c.note else ""
        rows.append(
            f'<tr id="claim-{_slug(p.name)}-{_slug(c.id)}"><td>{_e(c.id)}</td><td>{_e(c.claim)}{note}</td><td>{_e(c.where)}</td><td>{judged}</td>'
            f"<td>{_badge(v.status)}</td><td>{_e(v.evidence)}</td><td>{pub}</td></tr>"
        )
    table = (
        '<div class="scroll"><table class="sortable"><thead><tr><th>id</th><th>claim</th><th>where</th><th>judged on</th><th>verdict</th>'
        f"<th>evidence</th><th>on the paper's own numbers</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    details = "".join(
        f"<details><summary>{_e(v.claim.id)}: every comparison</summary>{html_table(v.cells.rename(columns=CELL_COLUMNS))}</details>"
        for v in p.verdicts
        if v.cells is not None and len(v.cells)
    )
    return table + details


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
        out.append(f'<img alt="{_e(tg.title)}" src="{_png_data(root, t.png)}">')
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


def _short(value, n: int) -> str:
    s = json.dumps(value, default=str)
    return s if len(s) <= n else s[: n - 1] + "…"


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


def render_html(rep: Report, root: str | os.PathLike = ".") -> str:
    root = Path(root)
    known = {t.target.name for p in rep.papers for t in p.targets}
    nav = ['<a href="#summary">Summary</a>'] + [f'<a href="#paper-{_slug(p.name)}">{_e(p.name.upper())}</a>' for p in rep.papers]
    nav += ['<a href="#audits">Audits</a>', '<a href="#reading">How to read</a>']
    summary_rows = []
    for p in rep.papers:
        audit = audit_summary(p)
        summary_rows.append(
            f'<tr><td><a href="#paper-{_slug(p.name)}">{_e(p.title)}</a></td><td>{_e(claims_text(p))}</td>'
            f"<td>{_e(numbers_text(p.numbers, rep.tier))}</td><td>{_e(audit)}</td><td>{_e(compute_text(p.compute))}</td></tr>"
        )
    body = [
        f"<h1>Reproduction report: {_e(rep.tier)} tier</h1>",
        f'<p class="banner">{_e(TIER_NOTE.get(rep.tier, ""))}</p>',
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
            f"<p><b>Claims:</b> {_e(claims_text(p))}. <b>Published numbers:</b> {_e(numbers_text(p.numbers, rep.tier))}. "
            f"<b>Compute:</b> {_e(compute_text(p.compute))}.</p>",
            f"<ul>{toc}</ul>" if toc else "<p>No tables or figures of this paper at this tier.</p>",
            f'<h3 id="claims-{_slug(p.name)}">Claims</h3>',
            _claims_html(p, known),
        ]
        body += [_target_html(t, root, rep.tier) for t in p.targets]
        body += [f'<h3 id="unknowns-{_slug(p.name)}">Settings the paper does not give</h3>', _unknowns_html(p)]
    body.append('<h2 id="audits">Audits</h2>')
    for p in rep.papers:
        inner = _certified_html(p) + _audit_verdicts_html(p)
        body.append(f"<h3>{_e(p.title)}</h3>" + (inner or "<p>No certified results and no audit table at this tier.</p>"))
        body.append(f'<p>Settings marked [UNKNOWN]/[INF]: {len(p.unknowns)}, listed in <a href="#unknowns-{_slug(p.name)}">the paper\'s section</a>.</p>')
    body.append(READING_HTML)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Reproduction report ({_e(rep.tier)})</title><style>{CSS}</style></head><body>"
        f"<nav>{''.join(nav)}</nav><main>{''.join(body)}</main><script>{JS}</script></body></html>\n"
    )


READING_TEXT = [
    "Claims: supported when every comparison of the claim's predicate clears its margin by 1.96 standard errors (binomial, from the "
    "n column), refuted when one comparison misses it by as much, inconclusive when a difference is within noise or data are missing. "
    "'no verdict' marks a claim at a tier that cannot decide it; the smoke tier decides none.",
    "On the paper's own numbers: the same predicate run on the published values, which checks how the claim is encoded and shows "
    "where a paper's tables contradict its summary.",
    "Published numbers: within tolerance or outside it (tolerance per number, in published/<paper>.csv); rows on synthetic data are never judged.",
    "Compute: wall and CPU time of the jobs behind a table or figure, including the training of every model it evaluates "
    "(a model shared by several tables counts in each), from results/<tier>/benchmarks/.",
]
READING_HTML = '<h2 id="reading">How to read this report</h2><ul>' + "".join(f"<li>{_e(t)}</li>" for t in READING_TEXT) + "</ul>"


# --- Markdown ----------------------------------------------------------------------------------------


def md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]

    def cell(v):
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_md(rep: Report, md_path: str | os.PathLike) -> str:
    out = [f"# Reproduction report: {rep.tier} tier", "", f"> {TIER_NOTE.get(rep.tier, '')}", ""]
    out += [f"Results under `{rep.root}`; report built {rep.generated} from code {rep.code}.", "", "## Summary", ""]
    rows = [
        {"paper": p.title, "claims": claims_text(p), "published numbers": numbers_text(p.numbers, rep.tier), "audits": audit_summary(p)} for p in rep.papers
    ]
    out += [md_table(pd.DataFrame(rows)) if rows else "No paper is active in this configuration.", ""]
    for p in rep.papers:
        out += [
            f"## {p.title}",
            "",
            f"**Claims:** {claims_text(p)}. **Published numbers:** {numbers_text(p.numbers, rep.tier)}. **Compute:** {compute_text(p.compute)}.",
            "",
        ]
        out += ["### Claims", ""]
        if p.claims_error:
            out += ["The claims file does not validate:", "", "```", p.claims_error, "```", ""]
        elif p.verdicts is None:
            out += [f"No claims file yet (`published/{p.name}.claims.yaml`).", ""]
        else:
            df = pd.DataFrame(
                [
                    {
                        "id": v.claim.id,
                        "claim": v.claim.claim,
                        "judged on": v.claim.table,
                        "verdict": v.status,
                        "evidence": v.evidence,
                        "on the paper's numbers": v.on_published,
                    }
                    for v in p.verdicts
                ]
            )
            out += [md_table(df) if len(df) else "No claims.", ""]
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
    out += ["", "## How to read this report", ""] + [f"- {t}" for t in READING_TEXT] + [""]
    return "\n".join(out)


def build(config: dict[str, Any], html_out: str, md_out: str, root: str | os.PathLike = ".") -> Report:
    """Collect and write the report of the tier in force; paths are relative to ``root``."""
    rep = collect(config, root)
    write_text_atomic(Path(root) / html_out, render_html(rep, root))
    write_text_atomic(Path(root) / md_out, render_md(rep, Path(root) / md_out))
    return rep


def main(argv: list[str] | None = None) -> None:
    """``python -m robrepro.report --configfile config/config.yaml config/smoke.yaml``: build the report outside Snakemake."""
    from .config import load

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--configfile", nargs="+", default=["config/config.yaml"])
    a = ap.parse_args(argv)
    cfg = load(*a.configfile)
    out = outputs(Plan(cfg).paths.root)
    build(cfg, out["html"], out["md"])
    print(out["html"])


if __name__ == "__main__":
    main()
