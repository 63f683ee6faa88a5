# Reproduction of four papers on neural-network robustness (SSP, TRDNN, NODE, GM-CROWN-IBP).
# This file is the table of contents: configuration, rule files, targets. Logic lives in
# workflow/rules/common.smk and in the robrepro package (src/robrepro).
#
#   snakemake --cores 2 --configfile config/smoke.yaml        # everything, CPU smoke tier
#   snakemake --profile slurm all                             # everything, paper tier, on SLURM
#   snakemake --list-target-rules                             # every table and figure by name
#   snakemake node_fig1 --configfile config/smoke.yaml        # one figure

from snakemake.utils import min_version

min_version("9.12")


configfile: "config/config.yaml"


# Jobs find `python -m robrepro` on PATH (common.smk puts this environment first); pass it on.
envvars:
    "PATH",


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/core.smk"
include: "workflow/rules/node.smk"
include: "workflow/rules/gm.smk"


# Run where Snakemake runs (a cluster's login node): downloads need internet, tables are instant.
localrules:
    all,
    prepare_data,
    node_fig1,
    node_table1,
    node_clean,
    gm_table3,
    gm_fig3,
    gm_fig4,


wildcard_constraints:
    paper="ssp|trdnn|node|gm",
    run="[A-Za-z0-9_.+-]+",
    attack="[A-Za-z0-9_]+",
    dataset="mnist|cifar10",


rule all:
    default_target: True
    input:
        PLAN.all_targets(),
