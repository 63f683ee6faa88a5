"""``python -m robrepro.report``: build the report outside Snakemake."""

from __future__ import annotations

import argparse

from ..plan import Plan
from . import build, outputs


def main(argv: list[str] | None = None) -> None:
    """``python -m robrepro.report --configfile config/config.yaml config/smoke.yaml``: build the report outside Snakemake."""
    from ..config import load

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--configfile", nargs="+", default=["config/config.yaml"])
    a = ap.parse_args(argv)
    cfg = load(*a.configfile)
    out = outputs(Plan(cfg).paths.root)
    build(cfg, out["html"], out["md"])
    print(out["html"])


if __name__ == "__main__":
    main()
