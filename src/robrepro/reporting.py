"""The reporting layer: tables and figures of every paper, published numbers beside reproduced ones.

Published numbers are data (``published/<paper>.csv``, one record per number with its source and
a tolerance in the metric's units), never literals in code. A table row carries both values, their
difference, whether it lies within the tolerance, and the data source of the reproduction, so a
row computed on synthetic data can never pass for a reproduction of the paper. Tables are written
as CSV, Markdown and LaTeX; figures as PNG and PDF plus the CSV of the plotted data.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from importlib import resources
from typing import Any

import pandas as pd

from .results import atomic_path, load_result, write_text_atomic


def published(paper: str) -> pd.DataFrame:
    """The published numbers of ``paper`` in the long format: one row per number with the item
    (table or figure), the keys that identify its cell (``keys``: ``k=v;k=v``, also parsed into
    ``key``), the metric, value, unit, tolerance (in the metric's units) and source."""
    f = resources.files("robrepro").joinpath(f"published/{paper}.csv")
    if not f.is_file():
        return pd.DataFrame(columns=["paper", "item", "keys", "metric", "value", "unit", "tolerance", "source", "note", "key"])
    df = pd.read_csv(io.StringIO(f.read_text()), dtype=str, keep_default_na=False)
    for c in ("value", "tolerance"):
        df[c] = df[c].astype(float)
    df["key"] = [dict(kv.split("=", 1) for kv in k.split(";") if kv) for k in df["keys"]]
    return df


def same_value(a, b) -> bool:
    """Cell keys match as numbers when both read as numbers or fractions ("8/255" == 0.0313...), else as text."""
    from .eps import parse_eps

    try:
        return abs(parse_eps(str(a)) - parse_eps(str(b))) < 1e-9
    except (ValueError, ZeroDivisionError):
        return str(a) == str(b)


def join_published(df: pd.DataFrame, paper: str, item: str, metric: str, value_col: str, prefix: str = "") -> pd.DataFrame:
    """Put the published ``metric`` of ``item`` beside ``value_col`` of every row of ``df``.

    A published record matches a row when each of its keys equals the row's column of that name.
    Adds ``<prefix>published``, ``<prefix>tolerance``, ``<prefix>diff`` (reproduced - published) and
    ``<prefix>within_tol`` (None where the paper gives no number). A new paper brings rows of data,
    not lookup code.
    """
    pub = published(paper)
    pub = pub[(pub["item"] == item) & (pub["metric"] == metric)]
    values, tols = [], []
    for _, row in df.iterrows():
        hit = [r for r in pub.itertuples() if all(k in row.index and same_value(row[k], v) for k, v in r.key.items())]
        if len(hit) > 1:
            raise ValueError(f"published/{paper}.csv: {len(hit)} records of {item}/{metric} match one row ({dict(row)})")
        values.append(hit[0].value if hit else float("nan"))
        tols.append(hit[0].tolerance if hit else float("nan"))
    out = df.copy()
    out[f"{prefix}published"] = values
    out[f"{prefix}tolerance"] = tols
    return compare(out, value_col, prefix)


def data_label(sources: Iterable[str]) -> str:
    s = set(sources)
    return "synthetic" if s == {"synthetic"} else "real" if s == {"real"} else "mixed"


def compare(df: pd.DataFrame, value_col: str = "reproduced", prefix: str = "") -> pd.DataFrame:
    """Add the difference to the published value and whether it lies within the tolerance."""
    df = df.copy()
    diff = [None if pd.isna(p) or pd.isna(v) else round(float(v) - float(p), 2) for v, p in zip(df[value_col], df[f"{prefix}published"])]
    df[f"{prefix}diff"] = diff
    # A row computed on a synthetic stand-in is never judged against the paper: no verdict.
    real = df["data"].eq("real").tolist() if "data" in df else [True] * len(df)
    df[f"{prefix}within_tol"] = pd.Series(
        [None if d is None or not r else bool(abs(d) <= t + 1e-9) for d, t, r in zip(diff, df[f"{prefix}tolerance"], real)], index=df.index, dtype=object
    )
    return df


# --- writers ---------------------------------------------------------------------------------


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def to_markdown(df: pd.DataFrame, title: str, notes: list[str]) -> str:
    cols = list(df.columns)
    lines = [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    return s


def to_latex(df: pd.DataFrame, title: str, notes: list[str]) -> str:
    cols = list(df.columns)
    body = [" & ".join(_tex_escape(_fmt(v)) for v in row) + r" \\" for row in df.itertuples(index=False)]
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            f"\\caption{{{_tex_escape(title)}}}",
            r"\begin{tabular}{" + "l" * len(cols) + "}",
            r"\toprule",
            " & ".join(_tex_escape(c) for c in cols) + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            *[f"% {n}" for n in notes],
            r"\end{table}",
            "",
        ]
    )


def write_table(df: pd.DataFrame, outputs: dict[str, str], title: str, notes: list[str]) -> None:
    """Write ``df`` to the ``csv``, ``md`` and ``tex`` paths of ``outputs`` atomically."""
    with atomic_path(outputs["csv"]) as tmp:
        df.to_csv(tmp, index=False)
    write_text_atomic(outputs["md"], to_markdown(df, title, notes))
    write_text_atomic(outputs["tex"], to_latex(df, title, notes))


def save_figure(fig, outputs: dict[str, str]) -> None:
    for ext in ("png", "pdf"):
        with atomic_path(outputs[ext]) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")


def provenance_notes(docs: list[dict[str, Any]]) -> list[str]:
    """Tier, code version and data source of the results a table or figure was made from."""
    commits = sorted({str(d["provenance"]["git"].get("commit"))[:12] + ("+dirty" if d["provenance"]["git"].get("dirty") else "") for d in docs})
    tiers = sorted({str(d["provenance"]["spec"].get("tier")) for d in docs})
    src = data_label(d["provenance"]["data_source"] for d in docs)
    notes = [f"tier: {', '.join(tiers)}; code: {', '.join(commits)}; data: {src}"]
    if src != "real":
        notes.append(
            "SYNTHETIC DATA: rows marked 'synthetic' were computed on a generated stand-in, not on the real dataset; they do not reproduce the paper's numbers."
        )
    if "smoke" in tiers:
        notes.append("SMOKE TIER: tiny models, subsets and few steps; numbers check the pipeline, not the paper.")
    if "lite" in tiers:
        notes.append("LITE TIER: small models on real data on a CPU; numbers mean something, but not the paper's settings.")
    return notes


def figure_title(title: str, df: pd.DataFrame, docs: list[dict[str, Any]]) -> str:
    """A figure title that says when the data are synthetic or the tier is smoke."""
    if data_label(df["data"]) != "real":
        title += "\n[SYNTHETIC DATA: not the paper's dataset]"
    if any("SMOKE" in n for n in provenance_notes(docs)):
        title += " [smoke tier]"
    return title


def write_figure_data(df: pd.DataFrame, outputs: dict[str, str]) -> None:
    with atomic_path(outputs["csv"]) as tmp:
        df.to_csv(tmp, index=False)


def load_all(paths: list[str], kind: str | None = None) -> list[dict[str, Any]]:
    return [load_result(p, kind) for p in paths]
