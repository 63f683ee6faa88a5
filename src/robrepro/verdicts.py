"""Claims of the papers as data, judged on the reproduced tables.

Each paper may ship ``published/<paper>.claims.yaml`` beside its published numbers: the qualitative
statements of the paper that no single table states, each with the predicate that decides it on
the CSV of one of the paper's targets (a table, or the data behind a figure). This module reads
those files and turns each claim into a verdict: ``supported``, ``refuted`` or ``inconclusive``
(differences within noise, too few samples, missing data), or ``no verdict`` at a tier the claim
is not meaningful at. The smoke tier never judges a claim, whatever its file says.

Claims file::

    paper: <paper>
    claims:
      - id: short-id                      # unique in the file
        claim: One sentence of our own.
        where: Where the paper makes it (section, table, figure).
        tiers: [lite, paper]              # tiers whose results can decide it (smoke never does)
        note: Optional remark shown beside the verdict.
        test:
          predicate: all_greater          # one of PREDICATES below
          table: <target name>            # the CSV it is judged on
          ...                             # the predicate's parameters

Parameters shared by every predicate: ``filter`` ({column: value or [values]}; values match as
numbers when both read as numbers, "8/255" included), ``largest`` ({column, count, per}: keep the
rows whose ``column`` is among the ``count`` largest values within each ``per`` group), ``min_n``
(the least sample size, read from the ``n`` column, a cell needs to be judged). Rows whose ``data``
column is not ``real`` never enter a verdict.

Predicates (a "cell" is one combination of the ``over`` columns):

* ``all_greater`` / ``all_less``: ``by`` names the column whose values are the groups, ``left`` one
  group, ``right`` one or several; ``value`` the compared column. In every cell, left's value must
  exceed (be below) each right's by more than ``margin`` (default 0).
* ``all_close``: the same pairs, ``|left - right| <= tolerance`` in every cell.
* ``argmax_is`` / ``argmin_is``: in every cell, group ``expect`` of ``by`` has the largest
  (smallest) ``value``, by more than ``margin``.
* ``all_true``: every row's ``column`` is true (or equals ``equals``).
* ``correlation_positive``: the ``method`` (spearman, kendall) correlation of ``x`` and ``y`` is
  above ``margin`` (default 0) with its bootstrap interval (``level``, ``resamples``) excluding it.

Noise of the comparisons (``noise``): ``binomial`` (default) treats ``value`` as an accuracy or an
error rate in percent (``scale``: 100) measured on ``n`` test points and gives each value the
standard error of an Agresti-Caffo proportion, (k+1)/(n+2) (never 0, so 0 % against 0 % is a tie
within noise, not a sure equality); ``none`` takes values as exact; ``se:<column>`` reads a
standard error column. A comparison holds when its difference clears the margin by ``z`` (1.96)
standard errors, fails when it misses the margin by as much, and is within noise otherwise. A
claim is supported when every comparison holds, refuted when one fails, inconclusive otherwise.

A comparison predicate given ``published: <column>`` is also run on the paper's own numbers (no
noise): the verdict then says whether the claim, as encoded, holds on the published table, which
checks the encoding and shows where the paper contradicts its own summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

SUPPORTED, REFUTED, INCONCLUSIVE, NO_VERDICT = "supported", "refuted", "inconclusive", "no verdict"
STATUSES = (SUPPORTED, REFUTED, INCONCLUSIVE, NO_VERDICT)
TIERS = ("smoke", "lite", "paper")
HOLD, FAIL, NOISE = "holds", "fails", "within noise"

_COMMON = {"predicate", "table", "filter", "largest", "min_n"}


@dataclass(frozen=True)
class Claim:
    paper: str
    id: str
    claim: str
    where: str
    tiers: tuple[str, ...]
    test: dict[str, Any]
    note: str = ""

    @property
    def table(self) -> str:
        return self.test["table"]


@dataclass
class Verdict:
    claim: Claim
    status: str
    evidence: str
    cells: pd.DataFrame | None = None  # one row per comparison, for the report
    on_published: str = ""  # the predicate on the paper's own numbers: holds / fails / ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Predicate:
    fn: Callable[..., Verdict]
    params: frozenset[str]
    required: frozenset[str]


PREDICATES: dict[str, Predicate] = {}


def predicate(name: str, params: set[str], required: set[str]):
    def deco(fn):
        PREDICATES[name] = Predicate(fn, frozenset(params | _COMMON), frozenset(required | {"table"}))
        return fn

    return deco


# --- claims files ------------------------------------------------------------------------------


class ClaimsError(ValueError):
    """A claims file that does not follow the format; the message names every problem."""


def claims_file(paper: str):
    return resources.files("robrepro").joinpath(f"published/{paper}.claims.yaml")


def load_claims(paper: str) -> list[Claim] | None:
    """The claims of ``paper``, or None when it ships no claims file."""
    f = claims_file(paper)
    if not f.is_file():
        return None
    return parse_claims(yaml.safe_load(f.read_text()) or {}, paper)


def parse_claims(doc: dict[str, Any], paper: str) -> list[Claim]:
    errs, out, seen = [], [], set()
    if doc.get("paper") != paper:
        errs.append(f"paper: {doc.get('paper')!r} is not {paper!r}")
    for i, c in enumerate(doc.get("claims") or []):
        where = f"claims.{i} ({c.get('id', '?')})"
        missing = [k for k in ("id", "claim", "where", "tiers", "test") if k not in c]
        if missing:
            errs.append(f"{where}: missing {', '.join(missing)}")
            continue
        extra = set(c) - {"id", "claim", "where", "tiers", "test", "note", "quote"}
        if extra:
            errs.append(f"{where}: unknown keys {sorted(extra)}")
        if c["id"] in seen:
            errs.append(f"{where}: id declared twice")
        seen.add(c["id"])
        bad_tiers = [t for t in c["tiers"] if t not in TIERS]
        if bad_tiers:
            errs.append(f"{where}.tiers: unknown tiers {bad_tiers}")
        t = c["test"]
        p = PREDICATES.get(t.get("predicate"))
        if p is None:
            errs.append(f"{where}.test.predicate: {t.get('predicate')!r} is not one of {sorted(PREDICATES)}")
            continue
        if set(t) - p.params:
            errs.append(f"{where}.test: unknown parameters {sorted(set(t) - p.params)} of {t['predicate']}")
        if p.required - set(t):
            errs.append(f"{where}.test: missing parameters {sorted(p.required - set(t))} of {t['predicate']}")
        out.append(Claim(paper, str(c["id"]), c["claim"].strip(), c["where"], tuple(c["tiers"]), dict(t), c.get("note", "").strip()))
    if errs:
        raise ClaimsError(f"published/{paper}.claims.yaml:\n  " + "\n  ".join(errs))
    return out


# --- judging ------------------------------------------------------------------------------------


def judge(claim: Claim, tables: dict[str, pd.DataFrame | None], tier: str) -> Verdict:
    """The verdict of ``claim`` at ``tier`` on ``tables`` (target name -> its CSV; None: not built)."""
    if tier == "smoke" or tier not in claim.tiers:
        judged = ", ".join(t for t in claim.tiers if t != "smoke") or "no tier"
        return Verdict(claim, NO_VERDICT, f"{tier}: no verdict (judged at: {judged})")
    if claim.table not in tables:
        return Verdict(claim, INCONCLUSIVE, f"missing data: target {claim.table} is not part of this tier's plan")
    df = tables[claim.table]
    if df is None:
        return Verdict(claim, INCONCLUSIVE, f"missing data: target {claim.table} is not built yet")
    params = {k: v for k, v in claim.test.items() if k not in ("predicate", "table")}
    rows, dropped = select(df, params.pop("filter", None), params.pop("largest", None))
    if not len(rows):
        why = "only synthetic-data rows" if dropped else "no rows match the filter"
        return Verdict(claim, INCONCLUSIVE, f"missing data: {why} in {claim.table}")
    try:
        v = PREDICATES[claim.test["predicate"]].fn(claim, rows, **params)
    except KeyError as e:
        # A column the claim's test needs is absent: that claim gets no verdict, the report still builds.
        return Verdict(claim, INCONCLUSIVE, f"cannot judge: {claim.table} has no column {e}")
    if dropped:
        v.evidence += f"; {dropped} synthetic-data rows left out"
    return v


def select(df: pd.DataFrame, filt: dict[str, Any] | None, largest: dict[str, Any] | None) -> tuple[pd.DataFrame, int]:
    """Rows of ``df`` matching ``filt`` (and ``largest``), real data only; also how many synthetic rows were left out."""
    from .reporting import same_value

    keep = pd.Series(True, index=df.index)
    for col, want in (filt or {}).items():
        if col not in df:
            return df.iloc[0:0], 0
        wants = want if isinstance(want, list) else [want]
        keep &= df[col].map(lambda v, wants=wants: any(same_value(v, w) for w in wants))
    df = df[keep]
    if largest:
        col, count, per = largest["column"], int(largest["count"]), list(largest.get("per", []))
        num = df[col].map(_num)
        ranks = num.groupby([df[p].astype(str) for p in per] if per else np.zeros(len(df)), dropna=False).rank(method="dense", ascending=False)
        df = df[ranks <= count]
    real = df["data"].eq("real") if "data" in df else pd.Series(True, index=df.index)
    return df[real], int((~real).sum())


def _num(v) -> float:
    from .eps import parse_eps

    try:
        return float(parse_eps(str(v)))
    except (ValueError, ZeroDivisionError):
        return math.nan


def _se(rows: pd.DataFrame, value: str, noise: str, scale: float) -> pd.Series:
    if noise == "none":
        return pd.Series(0.0, index=rows.index)
    if noise.startswith("se:"):
        return rows[noise[3:]].astype(float)
    if noise != "binomial":
        raise ValueError(f"noise {noise!r}: not binomial, none or se:<column>")
    n = rows["n"].astype(float)
    p = (rows[value].astype(float) / scale * n + 1) / (n + 2)
    return scale * np.sqrt(p * (1 - p) / (n + 2))


def _decide(d: float, s: float, margin: float, z: float) -> str:
    if math.isnan(d):
        return NOISE
    if d - z * s > margin:
        return HOLD
    if d + z * s <= margin:
        return FAIL
    return NOISE


def _overall(outcomes: list[str]) -> str:
    if not outcomes:
        return INCONCLUSIVE
    if FAIL in outcomes:
        return REFUTED
    return SUPPORTED if all(o == HOLD for o in outcomes) else INCONCLUSIVE


def _cell_label(key, over: list[str]) -> str:
    key = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{c}={_fmt(k)}" for c, k in zip(over, key)) or "all rows"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def _cells(rows: pd.DataFrame, over: list[str]):
    if not over:
        yield (), rows
        return
    yield from rows.groupby([rows[c].astype(str) for c in over], sort=True, dropna=False)


def _group_value(sub: pd.DataFrame, by: str, group, value: str, se: pd.Series, min_n: int):
    from .reporting import same_value

    hit = sub[sub[by].map(lambda v: same_value(v, group))]
    if not len(hit) or pd.isna(hit[value].iloc[0]):
        return None
    if "n" in hit and (pd.isna(hit["n"].iloc[0]) or float(hit["n"].iloc[0]) < min_n):
        return None
    return float(hit[value].iloc[0]), float(se[hit.index[0]]), (int(hit["n"].iloc[0]) if "n" in hit and not pd.isna(hit["n"].iloc[0]) else None)


def _pairs(claim, rows, *, by, left, right, value, over=(), margin=0.0, noise="binomial", scale=100.0, z=1.96, min_n=1, mode="greater", published=None):
    """Compare each group of ``left`` with each of ``right`` in every cell; ``mode``: greater, less, close.

    ``left`` and ``right`` are a group or a list of groups (every pair is one comparison)."""
    from .reporting import same_value

    lefts = left if isinstance(left, list) else [left]
    rights = right if isinstance(right, list) else [right]
    over = list(over)
    # Only the compared groups: rows of other groups (a baseline without these cells) make no cell.
    rows = rows[rows[by].map(lambda v: any(same_value(v, g) for g in [*lefts, *rights]))]
    se = _se(rows, value, noise, scale) if len(rows) else pd.Series(dtype=float)
    out, outcomes, ns = [], [], set()
    for key, sub in _cells(rows, over):
        for lg, r in ((lg, r) for lg in lefts for r in rights):
            a = _group_value(sub, by, lg, value, se, min_n)
            b = _group_value(sub, by, r, value, se, min_n)
            if a is None or b is None:
                outcomes.append(NOISE)
                out.append({"cell": _cell_label(key, over), "left": lg, "right": r, "left_value": a and a[0], "right_value": b and b[0], "verdict": "missing"})
                continue
            s = math.hypot(a[1], b[1])
            if mode == "close":
                d = abs(a[0] - b[0])
                o = HOLD if d + z * s <= margin else FAIL if d - z * s > margin else NOISE
            else:
                d = a[0] - b[0] if mode == "greater" else b[0] - a[0]
                o = _decide(d, s, margin, z)
            ns.update(x for x in (a[2], b[2]) if x)
            outcomes.append(o)
            out.append(
                {
                    "cell": _cell_label(key, over),
                    "left": lg,
                    "right": r,
                    "left_value": a[0],
                    "right_value": b[0],
                    "diff": a[0] - b[0],
                    "pm": z * s,
                    "verdict": o,
                }
            )
    cells = pd.DataFrame(out)
    status = _overall(outcomes)
    others = " and ".join(map(str, rights))
    if mode == "close":
        rel = f"within {_fmt(margin)} of {others}"
    else:
        rel = f"{'above' if mode == 'greater' else 'below'} {others}" + (f" by more than {_fmt(margin)}" if margin else "")
    ev = f"{by} {' and '.join(map(str, lefts))} {rel} ({value}): holds in {outcomes.count(HOLD)}/{len(outcomes)} comparisons"
    ev += _tally(cells, outcomes) + _sample_text(ns, noise, z)
    worst = _worst(cells)
    if worst:
        ev += f"; weakest: {worst}"
    v = Verdict(claim, status, ev, cells)
    if published:
        pub = _pairs(claim, rows, by=by, left=left, right=right, value=published, over=over, margin=margin, noise="none", z=z, min_n=0, mode=mode)
        known = pub.cells is not None and len(pub.cells) and (pub.cells["verdict"] != "missing").any()
        v.on_published = "" if not known else {SUPPORTED: "holds", REFUTED: "fails"}.get(pub.status, "partly missing")
    return v


def _tally(cells: pd.DataFrame, outcomes: list[str]) -> str:
    missing = int((cells["verdict"] == "missing").sum()) if len(cells) else 0
    out = f", fails in {outcomes.count(FAIL)}" if outcomes.count(FAIL) else ""
    if outcomes.count(NOISE) - missing:
        out += f", within noise in {outcomes.count(NOISE) - missing}"
    if missing:
        out += f", data missing in {missing}"
    return out


def _sample_text(ns: set, noise: str, z: float) -> str:
    if noise == "binomial" and ns:
        n = f"n = {min(ns)}" if len(ns) == 1 else f"n = {min(ns)} to {max(ns)}"
        return f" ({n} per value; ± is {z:g} binomial standard errors of the difference)"
    return ""


def _worst(cells: pd.DataFrame) -> str:
    if cells is None or not len(cells) or "diff" not in cells:
        return ""
    judged = cells.dropna(subset=["diff"])
    if not len(judged):
        return ""
    order = {FAIL: 0, NOISE: 1, HOLD: 2}
    r = judged.assign(o=judged["verdict"].map(order), a=judged["diff"].abs()).sort_values(["o", "a"]).iloc[0]
    return (
        f"{r['cell']}: {r['left']} {_fmt(r['left_value'])} vs {r['right']} {_fmt(r['right_value'])} (diff {_fmt(r['diff'])} ± {_fmt(r['pm'])}, {r['verdict']})"
    )


_PAIR_PARAMS = {"by", "left", "right", "value", "over", "margin", "noise", "scale", "z", "published"}


@predicate("all_greater", _PAIR_PARAMS, {"by", "left", "right", "value"})
def all_greater(claim, rows, **kw):
    return _pairs(claim, rows, mode="greater", **kw)


@predicate("all_less", _PAIR_PARAMS, {"by", "left", "right", "value"})
def all_less(claim, rows, **kw):
    return _pairs(claim, rows, mode="less", **kw)


@predicate("all_close", (_PAIR_PARAMS - {"margin"}) | {"tolerance"}, {"by", "left", "right", "value", "tolerance"})
def all_close(claim, rows, *, tolerance, **kw):
    return _pairs(claim, rows, mode="close", margin=float(tolerance), **kw)


def _extreme(claim, rows, *, by, expect, value, over=(), margin=0.0, noise="binomial", scale=100.0, z=1.96, min_n=1, published=None, largest_wins=True):
    over = list(over)
    sign = 1.0 if largest_wins else -1.0
    se = _se(rows, value, noise, scale)
    out, outcomes, ns = [], [], set()
    for key, sub in _cells(rows, over):
        a = _group_value(sub, by, expect, value, se, min_n)
        others = [(g, _group_value(sub, by, g, value, se, min_n)) for g in sub[by].unique() if not pd.isna(g) and str(g) != str(expect)]
        others = [(g, o) for g, o in others if o is not None]
        if a is None or not others:
            outcomes.append(NOISE)
            out.append({"cell": _cell_label(key, over), "left": expect, "right": "", "left_value": a and a[0], "verdict": "missing"})
            continue
        g, b = max(others, key=lambda go: sign * go[1][0])
        d, s = sign * (a[0] - b[0]), math.hypot(a[1], b[1])
        o = _decide(d, s, margin, z)
        ns.update(x for x in (a[2], b[2]) if x)
        outcomes.append(o)
        out.append(
            {
                "cell": _cell_label(key, over),
                "left": expect,
                "right": g,
                "left_value": a[0],
                "right_value": b[0],
                "diff": a[0] - b[0],
                "pm": z * s,
                "verdict": o,
            }
        )
    cells = pd.DataFrame(out)
    word = "largest" if largest_wins else "smallest"
    ev = f"{by} {expect} has the {word} {value} in {outcomes.count(HOLD)}/{len(outcomes)} cells"
    ev += _tally(cells, outcomes).replace("fails in", "not in") + _sample_text(ns, noise, z)
    worst = _worst(cells)
    if worst:
        ev += f"; closest runner-up: {worst}"
    v = Verdict(claim, _overall(outcomes), ev, cells)
    if published:
        pub = _extreme(claim, rows, by=by, expect=expect, value=published, over=over, margin=margin, noise="none", z=z, min_n=0, largest_wins=largest_wins)
        known = len(pub.cells) and (pub.cells["verdict"] != "missing").any()
        v.on_published = "" if not known else {SUPPORTED: "holds", REFUTED: "fails"}.get(pub.status, "partly missing")
    return v


_EXTREME_PARAMS = {"by", "expect", "value", "over", "margin", "noise", "scale", "z", "published"}


@predicate("argmax_is", _EXTREME_PARAMS, {"by", "expect", "value"})
def argmax_is(claim, rows, **kw):
    return _extreme(claim, rows, largest_wins=True, **kw)


@predicate("argmin_is", _EXTREME_PARAMS, {"by", "expect", "value"})
def argmin_is(claim, rows, **kw):
    return _extreme(claim, rows, largest_wins=False, **kw)


@predicate("all_true", {"column", "equals"}, {"column"})
def all_true(claim, rows, *, column, equals=True, min_n=1):
    from .reporting import same_value

    def truth(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(equals, bool):
            return str(v).strip().lower() in ("true", "1", "yes") if not isinstance(v, bool) else v
        return same_value(v, equals)

    if column not in rows:
        return Verdict(claim, INCONCLUSIVE, f"missing data: no column {column}")
    if "n" in rows:
        rows = rows[rows["n"].astype(float) >= min_n]
    t = rows[column].map(truth)
    ok, bad, unk = int((t == True).sum()), int((t == False).sum()), int(t.isna().sum())  # noqa: E712
    want = "true" if equals is True else repr(equals)
    ev = f"{column} is {want} in {ok}/{len(t)} rows" + (f", not in {bad}" if bad else "") + (f", unknown in {unk}" if unk else "")
    status = INCONCLUSIVE if not len(t) else REFUTED if bad else SUPPORTED if ok == len(t) else INCONCLUSIVE
    cells = rows.assign(verdict=t.map({True: HOLD, False: FAIL}).fillna("missing"))
    return Verdict(claim, status, ev, cells)


@predicate("correlation_positive", {"x", "y", "method", "margin", "level", "resamples", "seed"}, {"x", "y"})
def correlation_positive(claim, rows, *, x, y, method="spearman", margin=0.0, level=0.95, resamples=2000, seed=0, min_n=5):
    from scipy import stats

    xy = rows[[x, y]].astype(float).dropna()
    n = len(xy)
    if n < max(min_n, 3):
        return Verdict(claim, INCONCLUSIVE, f"too few samples: n = {n} < {max(min_n, 3)}")
    corr = {"spearman": lambda a, b: stats.spearmanr(a, b)[0], "kendall": lambda a, b: stats.kendalltau(a, b)[0]}[method]
    r = float(corr(xy[x], xy[y]))
    rng = np.random.default_rng(seed)
    xs, ys = xy[x].to_numpy(), xy[y].to_numpy()
    boot = []
    for _ in range(int(resamples)):
        i = rng.integers(0, n, n)
        c = corr(xs[i], ys[i])
        if not math.isnan(c):
            boot.append(c)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]) if boot else (math.nan, math.nan)
    status = SUPPORTED if lo > margin else REFUTED if hi <= margin else INCONCLUSIVE
    ev = f"{method} correlation of {x} and {y}: {r:.3f}, {100 * level:g} % bootstrap interval [{lo:.3f}, {hi:.3f}] ({resamples} resamples), n = {n}"
    cells = pd.DataFrame([{"cell": "all rows", "n": n, "correlation": r, "low": lo, "high": hi, "verdict": status}])
    return Verdict(claim, status, ev, cells, details={"r": r, "interval": (float(lo), float(hi)), "n": n})


def counts(verdicts: list[Verdict]) -> dict[str, int]:
    return {s: sum(v.status == s for v in verdicts) for s in STATUSES}
