"""The reproduction report: which results of the papers hold up, on one self-contained page.

For the tier in force it writes ``results/<tier>/report/index.html`` (figures inline as PNG data,
sortable tables, a short navigation, no external resource: it opens from disk and inside
``snakemake --report``) and ``REPORT.md`` beside it. One section per active paper of the plan,
each led by its verdict summary: the claims of ``published/<paper>.claims.yaml`` judged by
:mod:`robrepro.verdicts` (smoke: no verdict) and the counts of published numbers reproduced within
tolerance, outside it, or without a published value. Each claim is shown with where the paper makes
it, its quotation and note, its verdict in the tier's words (below the paper tier "effect shown at
lite scale" and the like, naming the stand-in models and their clean accuracy: "supported" and
"refuted" are the paper tier's), the evidence, and the same test on the paper's own numbers. Then every table and figure with its notes
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
    unclaimed: list[dict[str, str]] = field(default_factory=list)
    stand_ins: dict[str, str] = field(default_factory=dict)  # target -> the models its claims were measured on (below the paper tier)

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


def _clean_acc(doc: dict[str, Any], depth: int = 2) -> float | None:
    """The clean accuracy (%) a result document states, at its top level or in a result it nests."""
    if "clean_acc" in doc and isinstance(doc["clean_acc"], (int, float)):
        return 100 * float(doc["clean_acc"])
    if "std_err" in doc and isinstance(doc["std_err"], (int, float)):
        return 100 * (1 - float(doc["std_err"]))
    for v in doc.values() if depth else ():
        if isinstance(v, dict) and (acc := _clean_acc(v, depth - 1)) is not None:
            return acc
    return None


def _model_text(model: dict[str, Any], limit: int = 120) -> str:
    args = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in model.items() if k != "name")
    text = f"{model.get('name', 'model')}({args})"
    return text if len(text) <= limit else text[: limit - 1] + "…)"


def stand_ins(plan: Plan, target: PlannedTarget, docs: _Docs, limit: int = 8) -> str:
    """The trained models behind ``target``, each with its clean accuracy where its results state one:
    below the paper tier these small models stand in for the paper's, and a verdict speaks for them."""
    job_of = {plan.job_file(*k): k for k in plan.jobs}
    found: dict[str, dict[str, Any]] = {}
    for f in target.inputs:
        key = job_of.get(f)
        if key is None or key[1] is None or (key[0], key[1]) not in plan.runs:
            continue
        entry = found.setdefault(key[1], {"model": _model_text(plan.runs[(key[0], key[1])]["model"]), "acc": None})
        if entry["acc"] is None:
            entry["acc"] = _clean_acc(docs.get(f) or {})
    items = [f"{run} = {e['model']}" + (f", clean accuracy {e['acc']:.1f} %" if e["acc"] is not None else "") for run, e in found.items()]
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


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
        unclaimed = V.load_unclaimed(name) if claims is not None else []
        judged_on = {v.claim.table for v in verdicts or []} if tier != "paper" else set()
        models = {t: stand_ins(plan, plan.targets[t], docs) for t in sorted(judged_on) if t in plan.targets}
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
                unclaimed,
                models,
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


TIER_NOTE = {
    "smoke": "SMOKE TIER: tiny models, subsets and few steps, some datasets synthetic. The numbers check the pipeline end to end; "
    "no claim and no number is judged here (smoke: no verdict).",
    "lite": "LITE TIER: small stand-in models trained for minutes on real MNIST (and Iris) on a CPU, not the papers' models. "
    "A verdict here says only whether the effect shows at this scale, on the stand-ins named beside it; no claim of a paper is "
    "confirmed or contradicted by it. Published numbers are the papers' full-size results, so 'outside tolerance' is expected "
    "here; only the paper tier decides them.",
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
.v-yes,.ok{background:#dff3e3}.v-no,.bad{background:#fadbd8}.v-open{background:#fff1c9}.v-nd,.v-none{background:#eceff3}
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


def _claims_html(p: PaperReport, known_targets: set[str], tier: str) -> str:
    if p.claims_error:
        return f'<p class="banner">The claims file does not validate; no claim is judged.</p><pre>{_e(p.claims_error)}</pre>'
    if p.verdicts is None:
        return f"<p>No claims file yet (<code>published/{_e(p.name)}.claims.yaml</code>): no qualitative claim of this paper is judged.</p>"
    if not p.verdicts:
        return "<p>The claims file lists no claims.</p>" + _unclaimed_html(p)
    rows = []
    for r in claim_rows(p, tier):
        on = f"target-{_slug(r['table'])}"
        judged = f'<a href="#{on}">{_e(r["table"])}</a>' if r["table"] in known_targets else f"{_e(r['table'])} (not in this tier's plan)"
        quote = f"<br><i>{_e(r['quote'])}</i>" if r["quote"] else ""
        note = f'<br><span class="meta">Note: {_e(r["note"])}</span>' if r["note"] else ""
        models = f'<br><span class="meta">Measured on the stand-ins {_e(r["measured on"])}.</span>' if r["measured on"] else ""
        rows.append(
            f'<tr id="claim-{_slug(p.name)}-{_slug(r["id"])}"><td>{_e(r["id"])}</td><td>{_e(r["claim"])}{quote}{note}</td><td>{_e(r["where"])}</td>'
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
            f'<tr><td><a href="#paper-{_slug(p.name)}">{_e(p.title)}</a></td><td>{_e(claims_text(p, rep.tier))}</td>'
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
        "(a model shared by several tables counts in each), from results/<tier>/benchmarks/.",
    ]


def reading_html(tier: str) -> str:
    return '<h2 id="reading">How to read this report</h2><ul>' + "".join(f"<li>{_e(t)}</li>" for t in reading_text(tier)) + "</ul>"


# --- Markdown ----------------------------------------------------------------------------------------


def md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]

    def cell(v):
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _claims_md(p: PaperReport, tier: str) -> list[str]:
    rows = claim_rows(p, tier)
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
