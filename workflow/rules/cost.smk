# The cost model: times a few steps of every distinct training and evaluation of the tier in force on
# the device this job runs on, and writes per job, per target and per paper the predicted hours and
# memory (robrepro.cost). Its runtimes.json then sets each job's time limit (common.smk: res).
# Not part of `all`: run it on a cluster's GPU node first, then `all`:
#
#   snakemake --profile slurm cost          # ~1 s to a few s of timing per distinct job
#   snakemake --profile slurm all           # every job asks for its predicted time x 3
#
# Timings hold for the device that measured them: after moving to other hardware, re-measure with
# `snakemake --forcerun cost cost`.

COST = runtimes_outputs(P.root)


rule cost:
    output:
        **COST,
    log:
        P.log("cost", "cost"),
    conda:
        "../../envs/robrepro.yaml"
    threads: res("train", "threads")
    resources:
        gpu=res("train", "gpu"),
        runtime=120,
        mem_mb=res("train", "mem_mb"),
    params:
        device=config["device"],
    # The script gets the composed configuration (snakemake.config), as every rule sees it.
    script:
        "../scripts/cost.py"
