# Time every distinct job of the composed configuration on this job's device (see workflow/rules/cost.smk).
from robrepro.cost import estimate, write_outputs
from robrepro.failures import logged_script
from robrepro.plan import Plan

with logged_script(snakemake.log[0], snakemake.output) as log:  # noqa: F821
    plan = Plan(snakemake.config)  # noqa: F821
    result = estimate(plan, device=snakemake.params.device, log=lambda m: print(m, file=log, flush=True))  # noqa: F821
    print(write_outputs(plan, result, dict(snakemake.output)), file=log)  # noqa: F821
