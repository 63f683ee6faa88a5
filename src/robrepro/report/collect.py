"""Collecting: every result the report shows, read once into one structure (:class:`Report`).

The plan says which papers, targets, jobs and trained models there are, which job wrote which result
file and which benchmark files measured it; nothing here re-derives a path.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import verdicts as V
from ..plan import Plan, PlannedTarget
from ..results import git_state, load_result, warm_usage

MARKERS = ("[UNKNOWN", "[INF")


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
    claims: list[dict[str, str]] = field(default_factory=list)  # one row per claim, as both pages show it (words.claim_rows)

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

    def __post_init__(self):
        # The claims' rows, in the tier's words, made once here for both pages.
        from .words import claim_rows

        for p in self.papers:
            p.claims = p.claims or claim_rows(p, self.tier)


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
    """Published numbers of a table: within tolerance, outside, not judged (synthetic data), no published
    value, no reproduced value (a real-data row whose number is missing).

    One count per number: the per-metric ``<prefix>within_tol`` columns when a table has them (a
    row-level ``within_tol`` beside them only summarises them), else the plain ``within_tol``.
    """
    out = {"within": 0, "outside": 0, "not judged": 0, "no published value": 0, "no reproduced value": 0}
    if df is None or not len(df):
        return out
    cols = [c for c in df.columns if c.endswith("within_tol")]
    cols = [c for c in cols if c != "within_tol"] or cols
    real = df["data"].eq("real") if "data" in df else pd.Series(False, index=df.index)
    for c in cols:
        pub = c[: -len("within_tol")] + "published"
        for w, p, r in zip(df[c], df[pub] if pub in df else [math.nan] * len(df), real):
            t = _truth(w)
            if t is True:
                out["within"] += 1
            elif t is False:
                out["outside"] += 1
            elif pd.isna(p):
                out["no published value"] += 1
            elif r:
                out["no reproduced value"] += 1
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


def compute(root: Path, files: dict[str, str], docs: _Docs | None = None) -> dict[str, Any]:
    """Wall and CPU seconds and peak memory summed over the benchmark files that exist (benchmark
    file -> the result file of its job). A job run in a warm worker (robrepro.warm) has a benchmark
    of its client: its wall time is the job's, its CPU time and memory come from its result's provenance."""
    wall = cpu = 0.0
    rss, found = 0.0, 0
    for f, result in files.items():
        df = _read_csv_tsv(root / f)
        if df is None or not len(df):
            continue
        found += 1
        wall += float(df["s"].iloc[-1])
        own = warm_usage(docs.get(result) if docs else None)
        if own:
            cpu += own["cpu_s"]
            rss = max(rss, own["max_rss_mb"])
            continue
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
    runs, params = {}, []
    for f in docs_inputs:
        what, key = plan.producer(f)
        run = key[1] if what else None
        if what == "job":
            entry = {"kind": key[2], "name": key[3], **plan.jobs[key]["params"]}
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
    from ..config import schema
    from ..schemawalk import walk

    sch = schema()
    out: list[dict[str, Any]] = []

    def visit(_, s, value, path) -> bool:
        desc = str(s.get("description", "")) if isinstance(s, dict) else ""
        if any(m in desc for m in MARKERS):
            marker = ", ".join(m.strip("[") for m in MARKERS if m in desc)
            out.append({"key": path, "marker": marker, "value": value, "description": desc})
        return True

    walk(sch, sch["properties"][paper], config.get(paper, {}), visit, paper)
    return out


def certified_audit(plan: Plan, paper: str, docs: _Docs) -> list[dict[str, Any]]:
    """Certified error >= attack error for every certified model and radius (a sound bound can never
    certify a point an attack breaks): one row per (model, radius, bound) of every result carrying both.

    Recomputed here from the stored per-point results (which points each bound certified, which
    survived the attack), not taken from the job: a row fails when a certified point was broken, or
    when the stored errors disagree with the per-point results. A result without per-point results
    (older) is checked on its errors alone (``check``: errors only)."""
    from ..evaluations.soundness import soundness

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
    found: dict[str, dict[str, Any]] = {}
    for f in target.inputs:
        what, key = plan.producer(f)
        if what != "job" or key[1] is None or (key[0], key[1]) not in plan.runs:
            continue
        entry = found.setdefault(key[1], {"model": _model_text(plan.runs[(key[0], key[1])]["model"]), "acc": None})
        if entry["acc"] is None:
            entry["acc"] = _clean_acc(docs.get(f) or {})
    items = [f"{run} = {e['model']}" + (f", clean accuracy {e['acc']:.1f} %" if e["acc"] is not None else "") for run, e in found.items()]
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def collect(config: dict[str, Any], root: str | os.PathLike = ".") -> Report:
    """Everything the report shows, read from the results under ``root`` (the workflow's working directory)."""
    from ..tables_figures import data_label

    plan = Plan(config)
    base = Path(root)
    docs = _Docs(base)
    tier = config["tier"]
    papers = []
    for name in plan.active_papers():
        targets = []
        paper_bench: dict[str, str] = {}
        for t in plan.paper_targets(name):
            info = TargetInfo(t)
            info.df = _read_csv(base / t.outputs["csv"])
            if t.kind == "table":
                info.notes = _notes(base / t.outputs["md"])
            elif (base / t.outputs.get("png", "")).is_file():
                info.png = t.outputs["png"]
            info.numbers = number_counts(info.df) if t.kind == "table" else {}
            bench = {b: r for f in t.inputs for b, r in plan.benchmarks(f).items()}
            paper_bench.update(bench)
            info.compute = compute(base, bench, docs)
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
        paper = PaperReport(
            name,
            plan.papers[name].title,
            targets,
            verdicts,
            err,
            unknown_settings(config, name),
            certified_audit(plan, name, docs),
            compute(base, paper_bench, docs),
            unclaimed,
            models,
        )
        papers.append(paper)
    g = git_state()
    code = (str(g["commit"])[:12] + ("+dirty" if g["dirty"] else "")) if g.get("commit") else "unknown"
    return Report(tier, papers, code, dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), plan.paths.root)
