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


# --- figures: one house style for every paper ----------------------------------------------------

# Print-sized type and a light grid; applied by :func:`new_figure` so that no paper copies it.
STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.color": "0.88",
    "axes.spines.top": False,
    "axes.spines.right": False,
}
ACCURACY_LABEL = "accuracy (%)"
NOTHING_PUBLISHED = "nothing published to compare with"
# Published values are open black-edged diamonds with the tolerance as error bar, in every figure.
PUBLISHED_STYLE = {"marker": "D", "mfc": "none", "ms": 6, "mew": 1.3, "ls": "none", "capsize": 3, "elinewidth": 1}


def new_figure(nrows: int = 1, ncols: int = 1, panel: tuple[float, float] = (4.2, 3.2), **kw):
    """A figure of ``nrows`` x ``ncols`` panels (``axes`` always 2-D) in the house style.

    Constrained layout, so that :func:`legend_outside` can put the legend beside the panels and
    long tick labels push the panels apart instead of running into each other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False, layout="constrained", **kw)
    for ax in axes.flat:
        readable_ticks(ax)
    return fig, axes


def readable_ticks(ax, nbins: int = 5) -> None:
    """At most ``nbins`` ticks per axis, no offset text: labels that never touch at print size."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() != "linear":
            continue
        axis.set_major_locator(MaxNLocator(nbins=nbins))
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_powerlimits((-3, 4))
        axis.set_major_formatter(fmt)


def accuracy_axis(ax, label: str = ACCURACY_LABEL, full: bool = True) -> None:
    """Accuracy in % on the y axis, the unit of every table; ``full``: the whole 0-100 range (curves
    that fall from clean accuracy), else fitted to the data (a scatter whose trend would vanish)."""
    ax.set_ylabel(label)
    if full:
        ax.set_ylim(-2, 102)


def draw_published(ax, x, y, err=None, color: str = "black", label: str = "published") -> None:
    """The paper's values beside the reproduced ones, in the one published style (skipped when empty)."""
    if len(y):
        ax.errorbar(x, y, yerr=err, color=color, label=label, **PUBLISHED_STYLE)


def legend_outside(fig, title: str | None = None) -> None:
    """One legend for the whole figure, right of the panels (never over the data); the figure grows
    by the legend's width so that the panels keep theirs. Entries of the same label in several
    panels appear once."""
    entries: dict[str, Any] = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                entries.setdefault(lab, h)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not entries:
        return
    from matplotlib.lines import Line2D

    # Published markers take each curve's colour; their one legend entry is drawn in black.
    style = {k: v for k, v in PUBLISHED_STYLE.items() if k not in ("capsize", "elinewidth")}
    entries = {lab: Line2D([], [], color="black", **style) if lab.startswith("published") else h for lab, h in entries.items()}
    leg = fig.legend(list(entries.values()), list(entries), loc="outside right center", title=title, frameon=False)
    fig.canvas.draw()
    width = leg.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    fig.set_figwidth(fig.get_figwidth() + width)


def figure_notes(fig, lines: list[str]) -> None:
    """Settings and provenance printed under the panels, as the tables' notes."""
    fig.text(0.0, 0.0, "\n".join(lines), fontsize=6, va="top", ha="left", wrap=True)


def save_figure(fig, outputs: dict[str, str]) -> None:
    """Write ``fig`` as PNG and PDF, then release it (a builder draws one figure per call)."""
    import matplotlib.pyplot as plt

    for ext in ("png", "pdf"):
        with atomic_path(outputs[ext]) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
    plt.close(fig)


def provenance_notes(docs: list[dict[str, Any]]) -> list[str]:
    """Tier, code version and data source of the results a table or figure was made from."""

    def code(git: dict[str, Any]) -> str:
        # Code run outside a git checkout (an installed package, a copied tree) has no commit to name.
        if not git.get("commit"):
            return "unknown commit (not run from a git checkout)"
        return str(git["commit"])[:12] + ("+dirty" if git.get("dirty") else "")

    commits = sorted({code(d["provenance"]["git"]) for d in docs})
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


def figure_title(title: str, df: pd.DataFrame, docs: list[dict[str, Any]], published: bool | None = None) -> str:
    """A figure title that says when the data are synthetic or the tier is smoke, and, with
    ``published=False``, that the figure has no published value to compare with."""
    if published is False:
        title += f" ({NOTHING_PUBLISHED})"
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
