# Time every distinct job of the composed configuration on this job's device (see workflow/rules/cost.smk).
import sys

from robrepro.cost import estimate, write_outputs
from robrepro.plan import Plan

with open(snakemake.log[0], "w") as log:  # noqa: F821
    sys.stderr = log
    plan = Plan(snakemake.config)  # noqa: F821
    result = estimate(plan, device=snakemake.params.device, log=lambda m: print(m, file=log, flush=True))  # noqa: F821
    print(write_outputs(plan, result, dict(snakemake.output)), file=log)  # noqa: F821
