"""The reproduction report: which results of the papers hold up, on one self-contained page.

For the tier in force it writes ``results/<tier>/report/index.html`` (figures inline as PNG data,
sortable tables, a short navigation, no external resource: it opens from disk and inside
``snakemake --report``) and ``REPORT.md`` beside it. One section per active paper of the plan,
each led by its verdict summary: the claims of ``published/<paper>.claims.yaml`` judged by
:mod:`robrepro.verdicts` (smoke: no verdict) and the counts of published numbers reproduced within
tolerance, outside it, or without a published value. Each claim is shown with where the paper makes
it, its quotation and note, its verdict in the tier's words (below the paper tier "effect shown at
lite scale" and the like, naming the stand-in models and their clean accuracy: "supported" and
"refuted" are the paper tier's), the evidence, and the same test on the paper's own numbers. Then every table and figure with its notes
(the bullet lines of its Markdown), the settings it used, its data provenance (real or synthetic),
the code version of its results and the compute its jobs took (the rules' benchmark files).
Audits are added without being asked for: certified error >= attack error for every certified
model and radius; the verdict column of any audit table (a target whose CSV has a ``verdict``
column); and every setting whose schema description is marked [UNKNOWN] or [INF], with the value in
force. Tables come from the targets' CSV files, never from the Markdown.

Everything is read from the plan (:class:`robrepro.plan.Plan`): no paper is named here, and a
paper without claims, or whose outputs are not built yet, gets a line saying so while the rest
builds.

The package, one module per job: :mod:`.collect` reads the results once into one structure,
:mod:`.html_page` and :mod:`.markdown_page` render that same structure, :mod:`.words` says what it means.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..results import write_text_atomic
from .collect import PaperReport, Report, TargetInfo, _Docs, certified_audit, collect, number_counts, stand_ins, unknown_settings
from .html_page import _verdict_class, render_html
from .markdown_page import render_md
from .words import audit_summary, certified_summary

__all__ = [
    "PaperReport",
    "Report",
    "TargetInfo",
    "_Docs",
    "_verdict_class",
    "audit_summary",
    "build",
    "certified_audit",
    "certified_summary",
    "collect",
    "number_counts",
    "outputs",
    "render_html",
    "render_md",
    "stand_ins",
    "unknown_settings",
]


def outputs(root: str) -> dict[str, str]:
    """The report's files under a tier's results root (``Paths.root``)."""
    return {"html": f"{root}/report/index.html", "md": f"{root}/report/REPORT.md"}


def build(config: dict[str, Any], html_out: str, md_out: str, root: str | os.PathLike = ".") -> Report:
    """Collect and write the report of the tier in force; paths are relative to ``root``."""
    rep = collect(config, root)
    write_text_atomic(Path(root) / html_out, render_html(rep, root))
    write_text_atomic(Path(root) / md_out, render_md(rep, Path(root) / md_out))
    return rep
