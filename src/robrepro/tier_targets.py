"""Which tiers build a target: the answer to a table or figure asked for at a tier that has none.

A target exists only where its tier's configuration enables it (``node_fig1`` at smoke and paper,
not at lite, say). Snakemake alone answers "No rule to produce node_fig1"; the workflow asks this
module instead, only when such a name is requested, so a parse pays nothing for it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

TIERS = ("smoke", "lite", "paper")


def target_names(user: dict[str, Any], tier: str, config_dir: str | Path, cache_dir: str | Path | None) -> set[str]:
    """The target (and paper) names the plan of ``user``'s configuration at ``tier`` declares; none
    when that configuration does not compose at that tier."""
    from .composed import compose_cached
    from .config import ConfigError
    from .plan import Plan

    try:
        plan = Plan(compose_cached({**copy.deepcopy(user), "tier": tier}, config_dir, cache_dir))
    except ConfigError:
        return set()
    return set(plan.targets) | set(plan.papers)


def absent_message(name: str, user: dict[str, Any], config_dir: str | Path, cache_dir: str | Path | None) -> str:
    """Why ``name`` cannot be built with ``user``'s configuration, and which tiers build it."""
    tier = user.get("tier", "paper")
    tiers = [t for t in TIERS if t != tier and name in target_names(user, t, config_dir, cache_dir)]
    if not tiers:
        known = sorted(target_names(user, tier, config_dir, cache_dir))
        return f"{name!r} is no target of any tier; the targets of the {tier} tier are: {', '.join(known)} (snakemake --list-target-rules)"
    files = " or ".join(f"--configfile config/{t}.yaml" if t != "paper" else "no --configfile (the paper tier)" for t in tiers)
    which = f"the {tiers[0]} tier builds it" if len(tiers) == 1 else f"the {' and '.join(tiers)} tiers build it"
    return f"{name} is not built at the {tier} tier (its configuration does not enable it); {which}: run with {files}"
