# Reproduction of four papers on neural-network robustness (SSP, TRDNN, NODE, GM-CROWN-IBP).
# This file is the table of contents: configuration, rule files, targets. Logic lives in the
# robrepro package (src/robrepro): each paper is a plug-in module (src/robrepro/papers/<paper>.py)
# with its configuration (config/papers/<paper>.yaml); the rules below follow from its declarations.
#
#   snakemake --cores 2 --configfile config/smoke.yaml        # everything, CPU smoke tier
#   snakemake --profile slurm all                             # everything, paper tier, on SLURM
#   snakemake --list-target-rules                             # every table and figure by name
#   snakemake node_fig1 --cores 2 --configfile config/smoke.yaml   # one figure
#   snakemake report --cores 2 --configfile config/smoke.yaml      # the reproduction report

from snakemake.utils import min_version

min_version("9.12")


configfile: "config/config.yaml"


# Jobs find `python -m robrepro` on PATH (common.smk puts this environment first); pass it on.
envvars:
    "PATH",


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/warm.smk"
include: "workflow/rules/jobs.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cost.smk"


rule all:
    default_target: True
    input:
        PLAN.all_targets(),
        REPORT.values(),
    localrule: True
