"""AutoAttack's standard suite (Croce & Hein 2020), l-inf, through torchattacks' implementation.

The standard version runs, each on the points the previous ones did not break: APGD-CE, APGD-T
(targeted, DLR loss, ``n_classes - 1`` targets), FAB-T (multi-targeted) and Square. The default
budgets are the standard version's of the AutoAttack paper and reference code: 100 iterations for
APGD and FAB, 5 000 Square queries (torchattacks' own ``AutoAttack`` wrapper leaves its attacks at
10 steps, which is *not* the standard suite). The budgets are parameters so that smoke and lite tiers
can run a cheaper suite of the same composition; the tables name the budgets in force.
Guarantees: points in the eps-ball around x and in the input box (torchattacks clips to [0, 1]; the
result is projected again).
"""

from __future__ import annotations

from . import register_attack
from ._torchattacks import run_seeded


@register_attack("autoattack", threat="linf", access="white-box")
def autoattack(
    model,
    x,
    y,
    eps,
    generator=None,
    *,
    n_classes: int = 10,
    apgd_steps: int = 100,
    fab_steps: int = 100,
    square_queries: int = 5000,
    version: str = "standard",
):
    import torchattacks
    from torchattacks.wrappers.multiattack import MultiAttack

    if version != "standard":
        raise ValueError(f"autoattack: only the standard version is supported, got {version!r}")

    def make(seed):
        common = {"norm": "Linf", "eps": eps, "seed": seed, "n_restarts": 1}
        return MultiAttack(
            [
                torchattacks.APGD(model, steps=apgd_steps, loss="ce", **common),
                torchattacks.APGDT(model, steps=apgd_steps, n_classes=n_classes, **common),
                torchattacks.FAB(model, steps=fab_steps, multi_targeted=True, n_classes=n_classes, **common),
                torchattacks.Square(model, n_queries=square_queries, **common),
            ]
        )

    return run_seeded(make, x, y, eps, generator)
