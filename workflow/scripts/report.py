# Build the reproduction report from the composed configuration Snakemake holds (see workflow/rules/report.smk).
from robrepro.failures import logged_script
from robrepro.report import build
from robrepro.verdicts import status_label

with logged_script(snakemake.log[0], snakemake.output) as log:  # noqa: F821
    rep = build(snakemake.config, snakemake.output.html, snakemake.output.md)  # noqa: F821
    for p in rep.papers:
        print(p.name, [(v.claim.id, status_label(v.status, rep.tier)) for v in p.verdicts or []], file=log)
