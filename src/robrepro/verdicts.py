"""Claims of the papers as data, judged on the reproduced tables.

Each paper may ship ``published/<paper>.claims.yaml`` beside its published numbers: the qualitative
statements of the paper that no single table states, each with the predicate that decides it on
the CSV of one of the paper's targets (a table, or the data behind a figure). This module reads
those files and turns each claim into one of four outcomes: ``supported``, ``refuted``,
``inconclusive`` (differences within noise, missing data) or ``not decidable`` (every value the
claim compares sits at the metric's floor or ceiling, or the test is too weak at this sample size
to resolve the claim's margin or tolerance), or ``no verdict`` at a tier the claim is not meaningful
at. The smoke tier never judges a claim, whatever its file says. Below the paper tier the same
outcomes are worded for the scale they were measured at (:func:`status_label`): "effect shown at
lite scale", never "supported".

Claims file::

    paper: <paper>
    claims:
      - id: short-id                      # unique in the file
        claim: One sentence of our own.
        where: Where the paper makes it (section, table, figure).
        quote: Verbatim words of the paper (a string or a list of strings).   # optional
        tiers: [lite, paper]              # tiers whose results can decide it (smoke never does)
        note: Optional remark shown beside the verdict.
        test:
          predicate: all_greater          # one of PREDICATES below
          table: <target name>            # the CSV it is judged on
          ...                             # the predicate's parameters
    unclaimed:                            # optional: targets that carry no claim, and why
      - {target: <target name>, reason: Why no claim is judged on it.}

Parameters shared by every predicate: ``filter`` ({column: value or [values]}; values match as
numbers when both read as numbers, "8/255" included), ``largest`` ({column, count, per}: keep the
rows whose ``column`` is among the ``count`` largest values within each ``per`` group), ``min_n``
(the least sample size, read from the ``n`` column, a cell needs to be judged). Rows whose ``data``
column is not ``real`` never enter a verdict.

Predicates (a "cell" is one combination of the ``over`` columns):

* ``all_greater`` / ``all_less``: ``by`` names the column whose values are the groups, ``left`` one
  group or several, ``right`` one or several; ``value`` the compared column. In every cell, each
  left's value must exceed (be below) each right's by more than ``margin`` (default 0).
* ``all_close``: the same pairs, ``|left - right| <= tolerance`` in every cell.
* ``argmax_is`` / ``argmin_is``: in every cell, group ``expect`` of ``by`` has the largest
  (smallest) ``value``, by more than ``margin``: it is compared with every other group of the cell
  (so the runner-up that is hardest to beat, given its noise, is always among the comparisons).
* ``all_true``: every row's ``column`` is true (or equals ``equals``).
* ``correlation_positive``: the ``method`` (spearman, kendall) correlation of ``x`` and ``y`` is
  above ``margin`` (default 0) with its bootstrap interval (``level``, ``resamples``) excluding it.

Noise of a comparison (``noise``):

* ``binomial`` (default): ``value`` is an accuracy or error rate in percent (``scale``: 100) measured
  on ``n`` test points; each value gets the standard error of an Agresti-Caffo proportion, (k+1)/(n+2)
  (never 0). The two compared values are taken as independent, which overstates the noise of the
  difference when the models share their test points (their successes are positively correlated):
  the unpaired test is conservative, and the evidence says it was used.
* paired: when both compared rows carry a ``points`` column (one character per test point, ``1``
  where the point counts towards ``value``, the same points in the same order), the difference is
  judged on the discordant points: McNemar's exact test for a margin of 0, the paired standard error
  sqrt(b + c - (b - c)^2/n)/n otherwise.
* seeds: when the rows carry a ``seed`` column and a group has several seeds in a cell, its value is
  their mean and its standard error the seed-to-seed standard deviation over sqrt(seeds) (never
  below the mean's binomial error), with a Student t of Welch-Satterthwaite degrees of freedom.
* ``se:<column>`` reads a standard error column.
* ``none`` takes the values as exact. Only for deterministic quantities: a claim that asks for it
  must say why in ``noise_reason`` (a sampled quantity always carries its sampling error).

Deciding a claim over K comparisons, at the one-sided level alpha = P(Z > ``z``) (z = 1.96: 2.5 %):

* Supported when every comparison holds at level alpha, uncorrected. "Every cell holds" is an
  intersection of alternatives; the intersection-union test that rejects each cell's null at level
  alpha has level alpha for the whole (to claim it wrongly, the one cell where it is false must pass
  its own alpha-test), so a correction here would only cost power.
* Refuted when some comparison fails after Holm's step-down correction over all K comparisons.
  "Some cell fails" is a union: with K chances to fail, an uncorrected alpha per cell refutes a true
  claim with probability up to K alpha (8 cells of a true 1.5-point advantage: about 10 %). Holm
  controls the family-wise error at alpha under any dependence between the cells, and is uniformly
  more powerful than Bonferroni.
* A comparison whose every value lies within ``saturation`` (a fraction of ``scale``, default 1 %
  for an ordering, 0 for ``all_close``) of the same floor (0) or ceiling (``scale``) is *at
  floor/ceiling*: 0 % against 0 % PGD accuracy, 100 % against 99.2 % verified error say nothing
  about which model is more robust. Binomial quantities only (the others have no known bounds).
  Closeness stays measurable at a bound, where binomial errors shrink: 99.0 % against 99.3 % clean
  accuracy on 10 000 points each is shown within 1 point.
* A comparison that neither holds nor fails is *too weak* when the test cannot resolve the claim's
  scale at this sample size: power below ``min_power`` (default 0.8), where the power is
  2 Phi(tolerance/se - z) - 1 for a tolerance (the chance to show closeness were the two values
  exactly equal) and Phi(|margin|/se - z) for a non-zero margin (the chance to refute were there no
  effect). With a noise band wider than the tolerance a tie cannot be told from a miss. A margin of
  0 has no scale: such a comparison stays within noise.
* The claim is not decidable when nothing fails, some comparison is at a floor/ceiling or too weak,
  and every comparison that does not hold is one of these; inconclusive otherwise.

A comparison predicate given ``published: <column>`` is also run on the paper's own numbers (no
noise): the verdict then says whether the claim, as encoded, holds on the published table, which
checks the encoding and shows where the paper contradicts its own summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import yaml

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_DECIDABLE, NO_VERDICT = "supported", "refuted", "inconclusive", "not decidable", "no verdict"
STATUSES = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_DECIDABLE, NO_VERDICT)
TIERS = ("smoke", "lite", "paper")
HOLD, FAIL, NOISE, SATURATED, WEAK, MISSING = "holds", "fails", "within noise", "at floor/ceiling", "test too weak", "missing"
UNDECIDABLE = (SATURATED, WEAK)

# Below the paper tier a verdict speaks for the stand-in models it was measured on, not the paper's.
_SCALED = {SUPPORTED: "effect shown", REFUTED: "effect not shown", INCONCLUSIVE: "inconclusive", NOT_DECIDABLE: "not decidable"}


def status_label(status: str, tier: str) -> str:
    """The words a report prints for ``status`` at ``tier``: "supported" and "refuted" only at the paper tier."""
    if tier == "paper" or status not in _SCALED:
        return status
    return f"{_SCALED[status]} at {tier} scale"


_COMMON = {"predicate", "table", "filter", "largest", "min_n"}
_CLAIM_KEYS = {"id", "claim", "where", "tiers", "test", "note", "quote"}
_FILE_KEYS = {"paper", "claims", "unclaimed"}


@dataclass(frozen=True)
class Claim:
    paper: str
    id: str
    claim: str
    where: str
    tiers: tuple[str, ...]
    test: dict[str, Any]
    note: str = ""
    quote: tuple[str, ...] = ()

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


def _doc(paper: str) -> dict[str, Any] | None:
    f = claims_file(paper)
    return (yaml.safe_load(f.read_text()) or {}) if f.is_file() else None


def load_claims(paper: str) -> list[Claim] | None:
    """The claims of ``paper``, or None when it ships no claims file."""
    doc = _doc(paper)
    return None if doc is None else parse_claims(doc, paper)


def load_unclaimed(paper: str) -> list[dict[str, str]]:
    """The targets of ``paper`` its claims file names as carrying no claim, each with the reason."""
    doc = _doc(paper)
    if doc is None:
        return []
    parse_claims(doc, paper)  # the same validation as the claims
    return [{"target": str(u["target"]), "reason": str(u["reason"]).strip()} for u in doc.get("unclaimed") or []]


def _quotes(q, where: str, errs: list[str]) -> tuple[str, ...]:
    qs = [q] if isinstance(q, str) else q
    if not isinstance(qs, list) or not qs or not all(isinstance(x, str) and x.strip() for x in qs):
        errs.append(f"{where}.quote: a non-empty string or list of strings")
        return ()
    return tuple(x.strip() for x in qs)


def _check_noise(t: dict[str, Any], where: str, errs: list[str]) -> None:
    noise = t.get("noise", "binomial")
    if noise not in ("binomial", "none") and not str(noise).startswith("se:"):
        errs.append(f"{where}.test.noise: {noise!r} is not binomial, none or se:<column>")
    if noise == "none" and not str(t.get("noise_reason", "")).strip():
        errs.append(f"{where}.test: noise none takes the values as exact; say why they are deterministic in noise_reason")
    if "noise_reason" in t and noise != "none":
        errs.append(f"{where}.test.noise_reason: only for noise none")


def _unclaimed_errors(doc: dict[str, Any]) -> list[str]:
    errs = []
    items = doc.get("unclaimed") or []
    if not isinstance(items, list):
        return ["unclaimed: a list of {target, reason}"]
    for i, u in enumerate(items):
        if not isinstance(u, dict) or set(u) != {"target", "reason"} or not str(u.get("reason", "")).strip():
            errs.append(f"unclaimed.{i}: exactly the keys target and reason, with a reason")
    return errs


def parse_claims(doc: dict[str, Any], paper: str) -> list[Claim]:
    errs, out, seen = [], [], set()
    if doc.get("paper") != paper:
        errs.append(f"paper: {doc.get('paper')!r} is not {paper!r}")
    if set(doc) - _FILE_KEYS:
        errs.append(f"unknown top-level keys {sorted(set(doc) - _FILE_KEYS)}")
    errs += _unclaimed_errors(doc)
    for i, c in enumerate(doc.get("claims") or []):
        where = f"claims.{i} ({c.get('id', '?')})"
        missing = [k for k in ("id", "claim", "where", "tiers", "test") if k not in c]
        if missing:
            errs.append(f"{where}: missing {', '.join(missing)}")
            continue
        extra = set(c) - _CLAIM_KEYS
        if extra:
            errs.append(f"{where}: unknown keys {sorted(extra)}")
        if c["id"] in seen:
            errs.append(f"{where}: id declared twice")
        seen.add(c["id"])
        bad_tiers = [t for t in c["tiers"] if t not in TIERS]
        if bad_tiers:
            errs.append(f"{where}.tiers: unknown tiers {bad_tiers}")
        quote = _quotes(c["quote"], where, errs) if "quote" in c else ()
        t = c["test"]
        p = PREDICATES.get(t.get("predicate"))
        if p is None:
            errs.append(f"{where}.test.predicate: {t.get('predicate')!r} is not one of {sorted(PREDICATES)}")
            continue
        if set(t) - p.params:
            errs.append(f"{where}.test: unknown parameters {sorted(set(t) - p.params)} of {t['predicate']}")
        if p.required - set(t):
            errs.append(f"{where}.test: missing parameters {sorted(p.required - set(t))} of {t['predicate']}")
        if "noise" in p.params:
            _check_noise(t, where, errs)
        out.append(Claim(paper, str(c["id"]), c["claim"].strip(), c["where"], tuple(c["tiers"]), dict(t), str(c.get("note", "")).strip(), quote))
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
    params = {k: v for k, v in claim.test.items() if k not in ("predicate", "table", "noise_reason")}
    try:
        rows, dropped = select(df, params.pop("filter", None), params.pop("largest", None))
        if not len(rows):
            why = "only synthetic-data rows" if dropped else "no rows match the filter"
            return Verdict(claim, INCONCLUSIVE, f"missing data: {why} in {claim.table}")
        v = PREDICATES[claim.test["predicate"]].fn(claim, rows, **params)
    except KeyError as e:
        # A column the claim's test needs is absent (an empty table has none): that claim gets no
        # verdict, the report still builds.
        return Verdict(claim, INCONCLUSIVE, f"cannot judge: {claim.table} has no column {e}")
    except ValueError as e:
        # Rows the test cannot read: a value that is not a number, replicates it cannot tell apart.
        return Verdict(claim, INCONCLUSIVE, f"cannot judge: {claim.table}: {e}")
    if dropped:
        v.evidence += f"; {dropped} synthetic-data rows left out"
    return v


def select(df: pd.DataFrame, filt: dict[str, Any] | None, largest: dict[str, Any] | None) -> tuple[pd.DataFrame, int]:
    """Rows of ``df`` matching ``filt`` (and ``largest``), real data only; also how many synthetic rows were left out."""
    from .tables_figures import same_value

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


# --- the statistics of one comparison -------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """One group's value in one cell, with its standard error and that error's degrees of freedom."""

    value: float
    se: float
    dof: float = math.inf  # inf: a normal error; finite: estimated from seeds (Student t)
    n: int | None = None
    seeds: int = 1
    points: str | None = None  # per-point 0/1 results, when the table carries them


def binomial_se(value: float, n: float, scale: float = 100.0) -> float:
    """Agresti-Caffo standard error of a percentage ``value`` measured on ``n`` points (never 0)."""
    p = (value / scale * n + 1) / (n + 2)
    return scale * math.sqrt(p * (1 - p) / (n + 2))


def _row_se(row: pd.Series, value: str, noise: str, scale: float) -> float:
    if noise == "none":
        return 0.0
    if noise.startswith("se:"):
        return float(row[noise[3:]])
    return binomial_se(float(row[value]), float(row["n"]), scale)


def _points(hit: pd.DataFrame) -> str | None:
    if "points" not in hit or len(hit) != 1 or not isinstance(hit["points"].iloc[0], str):
        return None
    p = hit["points"].iloc[0].strip()
    return p if p and set(p) <= {"0", "1"} else None


def measure(sub: pd.DataFrame, by: str, group, value: str, noise: str, scale: float, min_n: float) -> Measure | None:
    """``group``'s value in the cell ``sub``; None when it is missing or measured on fewer than ``min_n`` points."""
    from .tables_figures import same_value

    hit = sub[sub[by].map(lambda v: same_value(v, group))]
    hit = hit[hit[value].notna()]
    if not len(hit):
        return None
    n = None
    if "n" in hit:
        if hit["n"].isna().any() or float(hit["n"].min()) < min_n:
            return None
        n = int(hit["n"].min())
    if len(hit) > 1 and ("seed" not in hit or hit["seed"].duplicated().any()):
        # Replicates that no seed tells apart: judging on one of them would hide the others.
        raise ValueError(f"{len(hit)} rows of {by}={group} in one cell, not told apart by a seed column")
    if len(hit) == 1:
        row = hit.iloc[0]
        # Exact values (noise none: the paper's own numbers, say) have no per-point results to pair:
        # the table's points belong to the values it measured.
        return Measure(float(row[value]), _row_se(row, value, noise, scale), math.inf, n, 1, _points(hit) if noise != "none" else None)
    # Several training seeds: the spread between them is the training noise. Every seed is evaluated
    # on the same test points, so the test sample's own error is shared by all of them: it neither
    # shows in their spread nor shrinks with their number. Three seeds can also agree by chance. The
    # mean's error is therefore never below one evaluation's own error (not that error / sqrt(k)).
    vals = hit[value].astype(float).to_numpy()
    k = len(vals)
    own = float(np.mean([_row_se(r, value, noise, scale) for _, r in hit.iterrows()]))
    return Measure(float(vals.mean()), max(float(vals.std(ddof=1)) / math.sqrt(k), own), k - 1.0, n, k)


def _sf(x: float, dof: float) -> float:
    """P(T > x) for a normal (``dof`` inf) or Student t."""
    if math.isinf(dof):
        return 0.5 * math.erfc(x / math.sqrt(2))
    from scipy import stats

    return float(stats.t.sf(x, dof))


def _quantile(alpha: float, dof: float) -> float:
    if math.isinf(dof):
        return NormalDist().inv_cdf(1 - alpha)
    from scipy import stats

    return float(stats.t.isf(alpha, dof))


def _welch(a: Measure, b: Measure) -> float:
    if math.isinf(a.dof) and math.isinf(b.dof):
        return math.inf
    va, vb = a.se**2, b.se**2
    den = (va**2 / a.dof if not math.isinf(a.dof) else 0.0) + (vb**2 / b.dof if not math.isinf(b.dof) else 0.0)
    return (va + vb) ** 2 / den if den > 0 else math.inf


def holm(p: list[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: reject where adjusted <= alpha controls the family-wise error at alpha."""
    p = np.asarray(p, dtype=float)
    adj, running = np.empty(len(p)), 0.0
    for i, j in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (len(p) - i) * p[j]))
        adj[j] = running
    return adj


def compare(a: Measure, b: Measure, mode: str, margin: float, alpha: float, scale: float, family: int = 1) -> dict[str, Any]:
    """One comparison of ``a`` (left) with ``b`` (right): the difference in the claim's direction, its
    standard error, the p-value against the claim holding (``p_hold``: small when it holds) and against
    it failing (``p_fail``: small when it fails), and the power to resolve the claim's margin or tolerance.
    ``family``: how many comparisons the claim makes; a refutation survives Holm over all of them, so
    the power to refute is computed at alpha / family (Holm's strictest step: a lower bound).

    ``mode``: greater (a - b > margin), less (b - a > margin), close (|a - b| <= margin)."""
    raw = a.value - b.value
    d = -raw if mode == "less" else raw
    paired = a.points is not None and b.points is not None and len(a.points) == len(b.points)
    if paired:
        left = np.frombuffer(a.points.encode(), np.uint8) == ord("1")
        right = np.frombuffer(b.points.encode(), np.uint8) == ord("1")
        n = len(left)
        wins, losses = int((left & ~right).sum()), int((~left & right).sum())
        if mode == "less":
            wins, losses = losses, wins
        s, dof = scale * math.sqrt(max(wins + losses - (wins - losses) ** 2 / n, 0.0)) / n, math.inf
    else:
        s, dof = math.hypot(a.se, b.se), _welch(a, b)
    if mode == "close":
        if s == 0:
            p_hold, p_fail = (0.0, 1.0) if abs(d) <= margin else (1.0, 0.0)
        else:
            # Two one-sided tests for |d| <= tolerance; one for |d| > tolerance.
            p_hold = max(_sf((d + margin) / s, dof), _sf((margin - d) / s, dof))
            p_fail = _sf((abs(d) - margin) / s, dof)
    elif paired and margin == 0:
        from scipy import stats

        # McNemar's exact test: under no difference each discordant point is a fair coin.
        k = wins + losses
        p_hold = float(stats.binom.sf(wins - 1, k, 0.5)) if k else 1.0
        p_fail = float(stats.binom.cdf(wins, k, 0.5)) if k else 1.0
    elif s == 0:
        p_hold, p_fail = (0.0, 1.0) if d > margin else (1.0, 0.0)
    else:
        p_hold, p_fail = _sf((d - margin) / s, dof), _sf((margin - d) / s, dof)
    q = _quantile(alpha, dof)
    power = None
    if s > 0 and (mode == "close" or margin != 0):
        # close: the chance to show closeness were the two exactly equal (two one-sided tests);
        # a margin: the chance to refute were there no effect at all (and to support at twice the margin).
        if mode == "close":
            power = float(max(0.0, 2 * NormalDist().cdf(abs(margin) / s - q) - 1))
        else:
            power = float(NormalDist().cdf(abs(margin) / s - _quantile(alpha / max(family, 1), dof)))
    return {"diff": raw, "pm": q * s, "se": s, "dof": dof, "p_hold": p_hold, "p_fail": p_fail, "power": power, "paired": paired}


def saturated(values: list[float], noise: str, scale: float, saturation: float) -> bool:
    """Every value within ``saturation`` x ``scale`` of the same floor (0) or ceiling (``scale``): a bounded
    (binomial) quantity that cannot tell the compared models apart."""
    if noise != "binomial":
        return False
    band = saturation * scale
    return all(abs(v) <= band for v in values) or all(abs(scale - v) <= band for v in values)


def decide(comps: list[dict[str, Any]], alpha: float, min_power: float) -> None:
    """Each comparison's outcome, in place: holds at alpha (intersection-union: no correction needed to
    support 'every cell'), fails when Holm's correction over all comparisons still rejects (a union of
    chances to fail needs it), at floor/ceiling or too weak when neither and the data cannot decide."""
    judged = [c for c in comps if c["verdict"] != MISSING]
    for c, p in zip(judged, holm([c["p_fail"] for c in judged])):
        c["p_fail_holm"] = float(p)
        if c["saturated"]:
            c["verdict"] = SATURATED
        elif c["p_hold"] <= alpha:
            c["verdict"] = HOLD
        elif p <= alpha:
            c["verdict"] = FAIL
        elif c["power"] is not None and c["power"] < min_power:
            c["verdict"] = WEAK
        else:
            c["verdict"] = NOISE


def overall(outcomes: list[str]) -> str:
    if not outcomes:
        return INCONCLUSIVE
    if FAIL in outcomes:
        return REFUTED
    rest = [o for o in outcomes if o != HOLD]
    if not rest:
        return SUPPORTED
    return NOT_DECIDABLE if all(o in UNDECIDABLE for o in rest) else INCONCLUSIVE


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


_NUMERIC = ("diff", "pm", "se", "p_hold", "p_fail_holm", "power")


def judge_pairs(
    pairs: list[tuple[Measure, Measure] | None], mode: str, margin: float = 0.0, *, noise="binomial", scale=100.0, z=1.96, saturation=None, min_power=0.8
) -> list[dict[str, Any]]:
    """The outcome of each comparison of one claim (None: a value is missing), decided together
    (Holm runs over all of them): the statistics of :func:`compare` and a ``verdict``."""
    alpha = _sf(float(z), math.inf)
    # Two values at the same bound cannot be ordered, but they can be shown close (their errors shrink there).
    band = float(saturation if saturation is not None else 0.0 if mode == "close" else 0.01)
    comps = []
    for pair in pairs:
        if pair is None:
            comps.append({"verdict": MISSING})
            continue
        a, b = pair
        sat = saturated([a.value, b.value], noise, float(scale), band)
        comps.append({**compare(a, b, mode, float(margin), alpha, float(scale), family=len(pairs)), "saturated": sat, "verdict": ""})
    decide(comps, alpha, float(min_power))
    return comps


def _compare_cells(
    claim, rows, pairs_of, *, by, value, mode, over=(), margin=0.0, noise="binomial", scale=100.0, z=1.96, min_n=1, saturation=None, min_power=0.8
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every comparison of the claim: for each cell, each (left, right) pair ``pairs_of(cell rows)`` gives."""
    labels, measures, info = [], [], {"n": set(), "seeds": set()}
    for key, sub in _cells(rows, list(over)):
        pairs = pairs_of(sub) or [("", "")]  # a cell without the groups to compare: one missing comparison
        for lg, r in pairs:
            a, b = (measure(sub, by, g, value, noise, float(scale), min_n) if g != "" else None for g in (lg, r))
            labels.append({"cell": _cell_label(key, list(over)), "left": lg, "right": r, "left_value": a and a.value, "right_value": b and b.value})
            measures.append((a, b) if a and b else None)
            info["n"].update(x.n for x in (a, b) if x and x.n)
            info["seeds"].update(x.seeds for x in (a, b) if x)
    comps = judge_pairs(measures, mode, margin, noise=noise, scale=scale, z=z, saturation=saturation, min_power=min_power)
    cols = ["cell", "left", "right", "left_value", "right_value", *_NUMERIC, "verdict"]
    cells = pd.DataFrame([{**lab, **c} for lab, c in zip(labels, comps)])
    cells = cells[[c for c in cols if c in cells]] if len(cells) else cells
    band = saturation if saturation is not None else 0.0 if mode == "close" else 0.01
    info.update(
        alpha=_sf(float(z), math.inf),
        min_power=float(min_power),
        saturation=float(band),
        scale=float(scale),
        noise=noise,
        margin=float(margin),
        mode=mode,
        paired=sum(bool(c.get("paired")) for c in comps),
    )
    return cells, info


def _tally(cells: pd.DataFrame) -> str:
    words = ((FAIL, "fails in"), (NOISE, "within noise in"), (SATURATED, "at floor/ceiling in"), (WEAK, "test too weak in"), (MISSING, "data missing in"))
    v = cells["verdict"] if len(cells) else pd.Series(dtype=str)
    return "".join(f", {w} {int((v == o).sum())}" for o, w in words if (v == o).any())


def _method_text(cells: pd.DataFrame, info: dict[str, Any]) -> str:
    """How the comparisons were tested: level, correction, sample sizes, pairing and seeds."""
    k = int((cells["verdict"] != MISSING).sum()) if len(cells) else 0
    out = f"; one-sided level {100 * info['alpha']:.3g} % per comparison"
    if k > 1:
        out += f", Holm over {k} comparisons before one may refute"
    ns = sorted(info["n"])
    if ns:
        out += f"; n = {ns[0]}" if len(ns) == 1 else f"; n = {ns[0]} to {ns[-1]}"
        out += " per value"
    if info["noise"] == "binomial":
        if info["paired"] == k and k:
            out += (
                "; paired on shared test points ("
                + ("McNemar's exact test" if info["margin"] == 0 and info["mode"] != "close" else "paired standard error")
                + ")"
            )
        else:
            out += "; unpaired binomial errors (the table has no per-point results; conservative when the models share test points)"
    seeds = sorted(info["seeds"])
    if info["noise"] == "none":
        several = bool(seeds) and seeds[-1] > 1
        out += "; each model's value taken as exact (noise none)" + ("; the seeds' spread is the only noise" if several else "")
    if seeds and seeds[-1] > 1:
        out += (
            f"; {seeds[0]}-{seeds[-1]} seeds per value, seed-to-seed variance (Student t)"
            if len(seeds) > 1
            else f"; {seeds[0]} seeds per value, seed-to-seed variance (Student t)"
        )
    if len(cells) and (cells["verdict"] == WEAK).any():
        p = float(cells.loc[cells["verdict"] == WEAK, "power"].max())
        what = "tolerance" if info["mode"] == "close" else "margin"
        out += f"; power to resolve the {what} {_fmt(abs(info['margin']))} at this n: {p:.2f} at most (needs {info['min_power']:g})"
    if len(cells) and (cells["verdict"] == SATURATED).any():
        out += f"; at floor/ceiling: both values within {_fmt(info['saturation'] * info['scale'])} of 0 or {_fmt(info['scale'])}"
    return out


def _worst(cells: pd.DataFrame) -> str:
    if cells is None or not len(cells) or "diff" not in cells:
        return ""
    judged = cells.dropna(subset=["diff"])
    if not len(judged):
        return ""
    order = {FAIL: 0, NOISE: 1, WEAK: 2, SATURATED: 3, HOLD: 4}
    r = judged.assign(o=judged["verdict"].map(order), p=-judged["p_hold"]).sort_values(["o", "p"]).iloc[0]
    return (
        f"{r['cell']}: {r['left']} {_fmt(r['left_value'])} vs {r['right']} {_fmt(r['right_value'])} (diff {_fmt(r['diff'])} ± {_fmt(r['pm'])}, {r['verdict']})"
    )


def _on_published(run, published: str | None) -> str:
    """The predicate on the paper's own numbers (exact values): holds, fails, partly missing, or ''."""
    if not published:
        return ""
    pub = run(value=published, noise="none", min_n=0)
    known = pub.cells is not None and len(pub.cells) and (pub.cells["verdict"] != MISSING).any()
    return "" if not known else {SUPPORTED: "holds", REFUTED: "fails"}.get(pub.status, "partly missing")


def _pairs(claim, rows, *, by, left, right, value, mode="greater", published=None, **kw):
    """Compare each group of ``left`` with each of ``right`` in every cell; ``mode``: greater, less, close."""
    from .tables_figures import same_value

    lefts = left if isinstance(left, list) else [left]
    rights = right if isinstance(right, list) else [right]
    # Only the compared groups: rows of other groups (a baseline without these cells) make no cell.
    rows = rows[rows[by].map(lambda v: any(same_value(v, g) for g in [*lefts, *rights]))]
    cells, info = _compare_cells(claim, rows, lambda sub: [(lg, r) for lg in lefts for r in rights], by=by, value=value, mode=mode, **kw)
    margin = info["margin"]
    others = " and ".join(map(str, rights))
    if mode == "close":
        rel = f"within {_fmt(margin)} of {others}"
    else:
        rel = f"{'above' if mode == 'greater' else 'below'} {others}" + (f" by more than {_fmt(margin)}" if margin else "")
    k = len(cells)
    holds = int((cells["verdict"] == HOLD).sum()) if k else 0
    ev = f"{by} {' and '.join(map(str, lefts))} {rel} ({value}): holds in {holds}/{k} comparisons" + (_tally(cells) + _method_text(cells, info) if k else "")
    worst = _worst(cells)
    if worst:
        ev += f"; weakest: {worst}"
    v = Verdict(claim, overall(list(cells["verdict"]) if k else []), ev, cells, details=info)
    v.on_published = _on_published(lambda **o: _pairs(claim, rows, by=by, left=left, right=right, mode=mode, **{**kw, **o}), published)
    return v


_PAIR_PARAMS = {"by", "left", "right", "value", "over", "margin", "noise", "noise_reason", "scale", "z", "published", "saturation", "min_power"}


@predicate("all_greater", _PAIR_PARAMS, {"by", "left", "right", "value"})
def all_greater(claim, rows, **kw):
    return _pairs(claim, rows, mode="greater", **kw)


@predicate("all_less", _PAIR_PARAMS, {"by", "left", "right", "value"})
def all_less(claim, rows, **kw):
    return _pairs(claim, rows, mode="less", **kw)


@predicate("all_close", (_PAIR_PARAMS - {"margin"}) | {"tolerance"}, {"by", "left", "right", "value", "tolerance"})
def all_close(claim, rows, *, tolerance, **kw):
    return _pairs(claim, rows, mode="close", margin=float(tolerance), **kw)


def _extreme(claim, rows, *, by, expect, value, largest_wins=True, published=None, **kw):
    """``expect`` against every other group of each cell: the closest runner-up is always among them."""
    from .tables_figures import same_value

    def pairs_of(sub):
        others = [g for g in sub[by].unique() if not pd.isna(g) and not same_value(g, expect)]
        return [(expect, g) for g in others] if others else []

    cells, info = _compare_cells(claim, rows, pairs_of, by=by, value=value, mode="greater" if largest_wins else "less", **kw)
    k = len(cells)
    n_cells = cells["cell"].nunique() if k else 0
    held = int(cells.groupby("cell")["verdict"].apply(lambda v: (v == HOLD).all()).sum()) if k else 0
    word = "largest" if largest_wins else "smallest"
    ev = f"{by} {expect} has the {word} {value} in {held}/{n_cells} cells ({k} comparisons with the other groups"
    ev += (_tally(cells) + ")" + _method_text(cells, info)) if k else ")"
    worst = _worst(cells)
    if worst:
        ev += f"; closest runner-up: {worst}"
    v = Verdict(claim, overall(list(cells["verdict"]) if k else []), ev, cells, details=info)
    v.on_published = _on_published(lambda **o: _extreme(claim, rows, by=by, expect=expect, largest_wins=largest_wins, **{**kw, **o}), published)
    return v


_EXTREME_PARAMS = {"by", "expect", "value", "over", "margin", "noise", "noise_reason", "scale", "z", "published", "saturation", "min_power"}


@predicate("argmax_is", _EXTREME_PARAMS, {"by", "expect", "value"})
def argmax_is(claim, rows, **kw):
    return _extreme(claim, rows, largest_wins=True, **kw)


@predicate("argmin_is", _EXTREME_PARAMS, {"by", "expect", "value"})
def argmin_is(claim, rows, **kw):
    return _extreme(claim, rows, largest_wins=False, **kw)


@predicate("all_true", {"column", "equals"}, {"column"})
def all_true(claim, rows, *, column, equals=True, min_n=1):
    from .tables_figures import same_value

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
