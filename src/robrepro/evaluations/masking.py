"""Gradient-masking audit: sanity checks and a verdict per model and radius, from per-attack accuracies.

Pure functions, no models: the inputs are robust accuracies (each radius attacked alone, on the same
points) of several attacks on one model. The checks are the standard ones of Athalye, Carlini and
Wagner (2018, "Obfuscated gradients give a false sense of security") and Carlini et al. (2019, "On
evaluating adversarial robustness"); each names the attacks that violate it.

Sanity checks (``tol`` is the slack allowed between two attacks on the same points):

* ``iterative>=one-step``: an iterative white-box attack is at least as strong as a one-step one
  (FGSM) at the same radius: fails if acc(one-step) < acc(iterative) - tol.
* ``white-box>=black-box``: the strongest white-box attack is at least as strong as every
  black-box, decision-based or transfer attack: fails if acc(black-box) < min acc(white-box) - tol.
  Score-based and transfer attacks see less than a white-box attack; beating it means the white-box
  attack's gradients are uninformative.
* ``monotone-in-eps``: each attack's accuracy does not increase with the radius (a larger ball
  contains the smaller one): fails at eps2 if acc(eps2) > acc(eps1) + tol for some eps1 < eps2.
* ``near-0-at-large-eps``: every iterative white-box attack brings accuracy to at most ``near_zero``
  at the very large radius ``large_eps`` (an unbounded attack that cannot flip a label is broken).

Verdict per radius, rules in this order (the first that fires decides, and is reported):

1. ``sanity``: some sanity check failed for this radius or for the model as a whole (the
   large-eps and monotonicity checks) -> "gradient masking".
2. ``gap``: the strongest attack's accuracy is more than ``gap`` below the paper's attack's, and the
   paper's attack is iterative -> "gradient masking": the iterative attack stalls where a longer,
   restarted, gradient-free or transfer attack succeeds (on an honest model PGD-20 and PGD-1000 agree).
3. ``gap-one-step``: the same for a one-step paper attack (FGSM) -> "weak attack": a one-step attack
   is expected to be weaker than an iterative one, so its number is no robustness claim, but neither
   is the gap evidence of masking.
4. ``holds``: otherwise -> "robustness holds": every stronger attack confirms the paper's attack's
   number within ``gap`` (which may itself be 0 %: the number stands, whatever it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field

WHITE_BOX = "white-box"
NOT_WHITE_BOX = ("black-box", "decision", "transfer")
HOLDS, MASKING, WEAK = "robustness holds", "gradient masking", "weak attack"


@dataclass(frozen=True)
class AttackResult:
    """One attack on one model: accuracy per radius (each radius attacked alone, same points)."""

    label: str
    access: str  # white-box | black-box | decision | transfer
    acc: dict[float, float]
    one_step: bool = False


@dataclass(frozen=True)
class Thresholds:
    tol: float = 0.02
    gap: float = 0.05
    near_zero: float = 0.05


@dataclass
class AuditRow:
    eps: float
    paper_attack: str
    paper_acc: float
    strongest_attack: str
    strongest_acc: float
    failed: list[str] = field(default_factory=list)
    verdict: str = HOLDS
    rule: str = ""


def _at(r: AttackResult, eps: float) -> float | None:
    return r.acc.get(float(eps))


def check_iterative_vs_one_step(results: list[AttackResult], eps: float, tol: float) -> list[str]:
    out = []
    for one in (r for r in results if r.one_step and r.access == WHITE_BOX and _at(r, eps) is not None):
        for it in (r for r in results if not r.one_step and r.access == WHITE_BOX and _at(r, eps) is not None):
            if _at(one, eps) < _at(it, eps) - tol:
                out.append(f"iterative>=one-step: {one.label} {_at(one, eps):.4f} < {it.label} {_at(it, eps):.4f}")
    return out


def check_white_vs_black(results: list[AttackResult], eps: float, tol: float) -> list[str]:
    white = [r for r in results if r.access == WHITE_BOX and _at(r, eps) is not None]
    if not white:
        return []
    best = min(white, key=lambda r: _at(r, eps))
    out = []
    for r in results:
        if r.access in NOT_WHITE_BOX and _at(r, eps) is not None and _at(r, eps) < _at(best, eps) - tol:
            out.append(f"white-box>=black-box: {r.label} ({r.access}) {_at(r, eps):.4f} < {best.label} {_at(best, eps):.4f}")
    return out


def check_monotone(results: list[AttackResult], tol: float) -> dict[float, list[str]]:
    """eps2 -> failures where some attack's accuracy at eps2 exceeds its accuracy at a smaller eps1."""
    out: dict[float, list[str]] = {}
    for r in results:
        radii = sorted(r.acc)
        for i, e2 in enumerate(radii):
            worse = [e1 for e1 in radii[:i] if r.acc[e2] > r.acc[e1] + tol]
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


def audit(results: list[AttackResult], paper_attack: str, radii: list[float], *, large_eps: float | None, th: Thresholds = Thresholds()) -> list[AuditRow]:
    """One :class:`AuditRow` per radius of ``radii`` (the radii of the paper's table)."""
    by_label = {r.label: r for r in results}
    if paper_attack not in by_label:
        raise KeyError(f"paper attack {paper_attack!r} not among the results {sorted(by_label)}")
    # Model-wide checks: reported on every radius of the model.
    model_wide = [f for fs in check_monotone(results, th.tol).values() for f in fs]
    model_wide += check_large_eps(results, large_eps, th.near_zero) if large_eps is not None else []
    rows = []
    for eps in (float(e) for e in radii):
        have = [r for r in results if _at(r, eps) is not None]
        strongest = min(have, key=lambda r: (_at(r, eps), r.label != paper_attack))
        paper_acc = _at(by_label[paper_attack], eps)
        if paper_acc is None:
            raise KeyError(f"paper attack {paper_attack!r} has no result at eps {eps:g}")
        failed = check_iterative_vs_one_step(results, eps, th.tol) + check_white_vs_black(results, eps, th.tol)
        failed += model_wide
        row = AuditRow(eps, paper_attack, paper_acc, strongest.label, _at(strongest, eps), failed)
        if failed:
            row.verdict, row.rule = MASKING, f"sanity: {failed[0]}"
        elif paper_acc - row.strongest_acc > th.gap:
            one = by_label[paper_attack].one_step
            row.verdict = WEAK if one else MASKING
            row.rule = (
                f"{'gap-one-step' if one else 'gap'}: {strongest.label} {row.strongest_acc:.4f} is more than {th.gap:g} below {paper_attack} {paper_acc:.4f}"
            )
        else:
            row.verdict, row.rule = HOLDS, f"holds: every attack within {th.gap:g} of {paper_attack} and every sanity check passed"
        rows.append(row)
    return rows
