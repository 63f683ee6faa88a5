"""Gradient-masking audit: sanity checks and a verdict per model and radius, from per-point attack results.

Pure functions, no models: the inputs are, per attack of a suite run on one model (each radius
attacked alone, on the same points), its robust accuracy and, per point, whether the point survived.
The checks are the standard ones of Athalye, Carlini and Wagner (2018, "Obfuscated gradients give a
false sense of security") and Carlini et al. (2019, "On evaluating adversarial robustness").

**Worst case.** A point is robust at eps only if *every* attack of the suite failed on it there (the
union of the attacks' successes); its accuracy, ``worst_acc``, is the robust accuracy the verdict
uses. Every success counts, whatever the attack: each adversarial point is evaluated on the model
itself. Two attacks that break disjoint halves of the points leave a worst case far below either.

**Gap and its sampling error.** The worst case is a subset of the paper's attack's survivors, so the
gap ``paper_acc - worst_acc`` is the fraction k/n of points that survived the paper's attack but not
the suite. Its Wilson interval (``z``) is compared with the tolerance ``gap``: a gap whose lower end
exceeds it is real at this n; one whose upper end stays within it confirms the paper's number.

**Usable legs.** An attack that finds nothing proves nothing unless it is known to work. A
gradient-free leg (score-based or decision attack) is *weak* when, on the undefended reference model
(e.g. the plain ResNet beside an ODE-Net), it leaves more than ``gap`` above the best iterative
white-box attack (:func:`weak_legs`); a transfer leg is *unusable* when its surrogate agrees with
the model on fewer than ``min_agreement`` of the clean predictions, or when that agreement was not
measured (:func:`transfer_gate`). Their successes still count in the worst case, but a confirmation
needs at least one usable leg that does not follow the audited model's gradients (gradient-free, or
transfer from a surrogate): gradient attacks alone cannot confirm a number that masked gradients may
inflate.

Sanity checks (``slack``: the larger of ``tol`` and ``z`` standard errors of the difference):

* ``iterative>=one-step``: acc(one-step) < acc(iterative) - slack fails.
* ``white-box>=black-box``: a score-based, decision or transfer attack below the best white-box
  attack by more than the slack fails (it sees less than a white-box attack).
* ``monotone-in-eps``: an attack's accuracy rising with the radius by more than the slack fails.
* ``near-0-at-large-eps``: an iterative white-box attack above ``near_zero`` at ``large_eps`` fails.

Verdict per radius (labels say what they mean; the first rule that fires decides and is reported):

1. ``sanity``: a check failed -> "masking suspected".
2. ``floor``: the paper's attack leaves no point -> "not testable" (0 % is no robustness to confirm).
3. ``gap``: the gap's lower end exceeds ``gap`` -> "masking suspected" for an iterative paper attack;
   ``gap-one-step``: for a one-step one (FGSM) -> "weak attack": expected to be weaker, and no
   evidence of masking.
4. ``worst-floor``: the suite leaves no point where the paper's attack left some -> "not testable":
   whatever the tolerance says of the gap, no robustness is left to confirm.
5. ``no-usable-leg``: no usable gradient-free or transfer attack at this radius -> "not testable".
6. ``confirmed``: the gap's upper end is within ``gap`` -> "paper's number confirmed by stronger
   attacks" (the number, whatever it is: 3 % confirmed is 3 %, not robustness).
7. ``inconclusive``: otherwise (the gap is within its sampling error of the tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

WHITE_BOX = "white-box"
GRADIENT_FREE = ("black-box", "decision")
NOT_WHITE_BOX = (*GRADIENT_FREE, "transfer")
CONFIRMED = "paper's number confirmed by stronger attacks"
MASKING = "masking suspected"
WEAK = "weak attack"
NOT_TESTABLE = "not testable"
INCONCLUSIVE = "inconclusive"
VERDICTS = (CONFIRMED, MASKING, WEAK, NOT_TESTABLE, INCONCLUSIVE)


def encode_mask(mask: Iterable[bool]) -> str:
    """Per-point booleans as a string of 0/1 (one character per test point, in order)."""
    return "".join("1" if bool(b) else "0" for b in mask)


def decode_mask(s: str) -> tuple[bool, ...]:
    return tuple(c == "1" for c in s)


@dataclass(frozen=True)
class AttackResult:
    """One attack on one model: accuracy per radius and, per radius, which points survived it."""

    label: str
    access: str  # white-box | black-box | decision | transfer
    acc: dict[float, float]
    one_step: bool = False
    robust: dict[float, tuple[bool, ...]] = field(default_factory=dict)
    unusable: str = ""  # why a failure of this attack is no evidence (empty: usable)


@dataclass(frozen=True)
class Thresholds:
    tol: float = 0.02
    gap: float = 0.05
    near_zero: float = 0.05
    z: float = 1.96
    min_agreement: float = 0.95


@dataclass
class AuditRow:
    eps: float
    paper_attack: str
    paper_acc: float
    strongest_attack: str
    strongest_acc: float
    worst_acc: float = float("nan")
    gap: float = 0.0
    gap_low: float = 0.0
    gap_high: float = 0.0
    n: int = 0
    one_step: bool = False
    unusable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    verdict: str = CONFIRMED
    rule: str = ""


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (never of width 0, even at k = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    d = 1 + z2 / n
    c = (p + z2 / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _at(r: AttackResult, eps: float) -> float | None:
    return r.acc.get(float(eps))


def _slack(a: float, b: float, n: int, th: Thresholds) -> float:
    """Allowed difference of two accuracies on n points: ``tol``, or z standard errors if larger."""
    se = math.sqrt((a * (1 - a) + b * (1 - b)) / n) if n else 0.0
    return max(th.tol, th.z * se)


def check_iterative_vs_one_step(results: list[AttackResult], eps: float, n: int, th: Thresholds) -> list[str]:
    out = []
    for one in (r for r in results if r.one_step and r.access == WHITE_BOX and _at(r, eps) is not None):
        for it in (r for r in results if not r.one_step and r.access == WHITE_BOX and _at(r, eps) is not None):
            a, b = _at(one, eps), _at(it, eps)
            if a < b - _slack(a, b, n, th):
                out.append(f"iterative>=one-step: {one.label} {a:.4f} < {it.label} {b:.4f}")
    return out


def check_white_vs_black(results: list[AttackResult], eps: float, n: int, th: Thresholds) -> list[str]:
    white = [r for r in results if r.access == WHITE_BOX and _at(r, eps) is not None]
    if not white:
        return []
    best = min(white, key=lambda r: _at(r, eps))
    b = _at(best, eps)
    out = []
    for r in results:
        a = _at(r, eps)
        if r.access in NOT_WHITE_BOX and a is not None and a < b - _slack(a, b, n, th):
            out.append(f"white-box>=black-box: {r.label} ({r.access}) {a:.4f} < {best.label} {b:.4f}")
    return out


def check_monotone(results: list[AttackResult], n: int, th: Thresholds) -> dict[float, list[str]]:
    """eps2 -> failures where some attack's accuracy at eps2 exceeds its accuracy at a smaller eps1."""
    out: dict[float, list[str]] = {}
    for r in results:
        radii = sorted(r.acc)
        for i, e2 in enumerate(radii):
            worse = [e1 for e1 in radii[:i] if r.acc[e2] > r.acc[e1] + _slack(r.acc[e2], r.acc[e1], n, th)]
            if worse:
                out.setdefault(e2, []).append(f"monotone-in-eps: {r.label} {r.acc[e2]:.4f} at {e2:g} > {r.acc[worse[0]]:.4f} at {worse[0]:g}")
    return out


def check_large_eps(results: list[AttackResult], large_eps: float, near_zero: float) -> list[str]:
    out = []
    for r in results:
        a = _at(r, large_eps)
        if r.access == WHITE_BOX and not r.one_step and a is not None and a > near_zero:
            out.append(f"near-0-at-large-eps: {r.label} {a:.4f} > {near_zero:g} at eps {large_eps:g}")
    return out


def worst_case(results: list[AttackResult], eps: float) -> tuple[float, tuple[bool, ...] | None]:
    """Accuracy when a point counts as robust only if every attack failed on it, and that mask.

    Without per-point results for every attack at eps (older payloads) the best available is the
    smallest accuracy of any one attack (mask None), which can overstate the worst case."""
    have = [r for r in results if _at(r, eps) is not None]
    masks = [r.robust[float(eps)] for r in have if float(eps) in r.robust]
    if not have:
        return float("nan"), None
    if len(masks) < len(have) or len({len(m) for m in masks}) != 1:
        return min(_at(r, eps) for r in have), None
    joint = tuple(all(col) for col in zip(*masks))
    return sum(joint) / len(joint), joint


def weak_legs(reference: list[AttackResult], radii: list[float], th: Thresholds = Thresholds()) -> dict[str, str]:
    """Gradient-free legs that do not succeed on the undefended reference model: label -> reason.

    On a model without any defence an honest score-based or decision attack should come near the best
    iterative white-box attack; one that leaves more than ``gap`` above it at some radius has too
    small a budget to be evidence of anything on the audited model."""
    out: dict[str, str] = {}
    for eps in (float(e) for e in radii):
        white = [r for r in reference if r.access == WHITE_BOX and not r.one_step and _at(r, eps) is not None]
        if not white:
            continue
        best = min(white, key=lambda r: _at(r, eps))
        for r in reference:
            a = _at(r, eps)
            if r.access in GRADIENT_FREE and a is not None and a - _at(best, eps) > th.gap and r.label not in out:
                out[r.label] = f"weak attack on the undefended reference: {a:.2f} at eps {eps:g} where {best.label} leaves {_at(best, eps):.2f}"
    return out


def transfer_gate(agreement: float | None, th: Thresholds = Thresholds()) -> str:
    """Why a transfer leg is unusable ("" if usable): its surrogate must be shown to predict like the model."""
    if agreement is None:
        return "surrogate's agreement with the model not measured"
    if agreement < th.min_agreement:
        return f"surrogate agrees with the model on {100 * agreement:.1f} % of clean predictions (< {100 * th.min_agreement:g} %)"
    return ""


def audit(
    results: list[AttackResult],
    paper_attack: str,
    radii: list[float],
    *,
    large_eps: float | None,
    n: int,
    th: Thresholds = Thresholds(),
    unusable: dict[str, str] | None = None,
) -> list[AuditRow]:
    """One :class:`AuditRow` per radius of ``radii`` (the radii of the paper's table); ``n`` test
    points; ``unusable``: label -> reason, added to the attacks' own (e.g. from :func:`weak_legs`)."""
    by_label = {r.label: r for r in results}
    if paper_attack not in by_label:
        raise KeyError(f"paper attack {paper_attack!r} not among the results {sorted(by_label)}")
    bad = {r.label: r.unusable for r in results if r.unusable} | {k: v for k, v in (unusable or {}).items() if k in by_label}
    model_wide = [f for fs in check_monotone(results, n, th).values() for f in fs]
    model_wide += check_large_eps(results, large_eps, th.near_zero) if large_eps is not None else []
    paper = by_label[paper_attack]
    rows = []
    for eps in (float(e) for e in radii):
        paper_acc = _at(paper, eps)
        if paper_acc is None:
            raise KeyError(f"paper attack {paper_attack!r} has no result at eps {eps:g}")
        have = [r for r in results if _at(r, eps) is not None]
        strongest = min(have, key=lambda r: (_at(r, eps), r.label != paper_attack))
        worst, joint = worst_case(results, eps)
        if joint is not None and eps in paper.robust:
            k = sum(p and not w for p, w in zip(paper.robust[eps], joint))
        else:
            k = round((paper_acc - worst) * n)
        low, high = wilson(k, n, th.z)
        row = AuditRow(eps, paper_attack, paper_acc, strongest.label, _at(strongest, eps), worst, k / n if n else 0.0, low, high, n, paper.one_step)
        row.unusable = [f"{k_}: {v}" for k_, v in sorted(bad.items())]
        row.failed = check_iterative_vs_one_step(results, eps, n, th) + check_white_vs_black(results, eps, n, th) + model_wide
        usable_free = [r.label for r in have if r.access in NOT_WHITE_BOX and r.label not in bad]
        gap_text = f"worst case {worst:.4f} vs {paper_attack} {paper_acc:.4f}: gap {k}/{n}, interval [{low:.3f}, {high:.3f}] against {th.gap:g}"
        if row.failed:
            row.verdict, row.rule = MASKING, f"sanity: {row.failed[0]}"
        elif paper_acc == 0:
            row.verdict, row.rule = NOT_TESTABLE, f"floor: {paper_attack} leaves no point at eps {eps:g}, no robustness to confirm"
        elif low > th.gap:
            row.verdict = WEAK if paper.one_step else MASKING
            row.rule = f"{'gap-one-step' if paper.one_step else 'gap'}: {gap_text}"
        elif worst == 0:
            row.verdict, row.rule = NOT_TESTABLE, f"worst-floor: the suite leaves no point at eps {eps:g}, no robustness to confirm; " + gap_text
        elif not usable_free:
            row.verdict, row.rule = NOT_TESTABLE, "no-usable-leg: no usable gradient-free or transfer attack; " + gap_text
        elif high <= th.gap:
            row.verdict, row.rule = CONFIRMED, f"confirmed by {', '.join(usable_free)} and the rest: {gap_text}"
        else:
            row.verdict, row.rule = INCONCLUSIVE, f"inconclusive: {gap_text}"
        rows.append(row)
    return rows


def as_attack_results(suite_results: dict[str, dict[str, Any]], th: Thresholds = Thresholds()) -> list[AttackResult]:
    """The suite's measurements as the audit's inputs; a transfer leg whose surrogate disagrees with
    the model (``twin_agreement`` below ``th.min_agreement``) is marked unusable."""
    return [
        AttackResult(
            label,
            r["access"],
            {float(e["eps"]): float(e["robust_acc"]) for e in r["per_eps"]},
            bool(r["one_step"]),
            {float(e["eps"]): decode_mask(e["robust"]) for e in r["per_eps"] if "robust" in e},
            transfer_gate(r.get("twin_agreement"), th) if r["access"] == "transfer" else "",
        )
        for label, r in suite_results.items()
    ]
