# Build the reproduction report from the composed configuration Snakemake holds (see workflow/rules/report.smk).
import sys

from robrepro.report import build
from robrepro.verdicts import status_label

with open(snakemake.log[0], "w") as log:  # noqa: F821
    sys.stderr = log
    rep = build(snakemake.config, snakemake.output.html, snakemake.output.md)  # noqa: F821
    for p in rep.papers:
        print(p.name, [(v.claim.id, status_label(v.status, rep.tier)) for v in p.verdicts or []], file=log)
