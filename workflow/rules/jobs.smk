# One rule per kind of work, shared by every paper: datasets, training, evaluation jobs (of every kind
# declared in robrepro.evaluations). Their specs come from the plan as JSON params, so a changed
# setting re-runs exactly the jobs it affects. Execution settings (device, data folder, threads)
# reach the commands through the environment (ROBREPRO_RUN_ARGS/ROBREPRO_DATA_ARGS, common.smk),
# outside params: moving the data or the device re-runs nothing. Paths come from robrepro.paths.


rule prepare_data:
    output:
        P.data("{dataset}"),
    log:
        P.log("prepare_data", "{dataset}"),
    # Runs where Snakemake runs (a cluster's login node): downloads need internet.
    localrule: True
    conda:
        "../../envs/robrepro.yaml"
    resources:
        runtime=60,
    params:
        source=lambda wildcards: config["data"][wildcards.dataset]["source"],
    shell:
        on_failure(
            'eval "set -- $ROBREPRO_DATA_ARGS"; python -m robrepro prepare-data --dataset {wildcards.dataset}'
            ' --source {params.source} "$@" --out {output} > {log} 2>&1'
        )


rule train:
    input:
        data=dataset_manifest,
        code=TRAIN_CODE,
    output:
        model=P.model("{paper}", "{run}"),
        result=P.train_result("{paper}", "{run}"),
    log:
        P.log("{paper}", "train", "{run}"),
    benchmark:
        P.train_benchmark("{paper}", "{run}")
    conda:
        "../../envs/robrepro.yaml"
    threads: res("train", "threads")
    resources:
        gpu=res("train", "gpu"),
        runtime=res("train", "runtime"),
        mem_mb=res("train", "mem_mb"),
    params:
        spec=train_spec_json,
        # Undeclared on purpose: Snakemake deletes declared outputs before a job (re)starts.
        checkpoint=P.checkpoint("{paper}", "{run}"),
    shell:
        on_failure(
            'eval "set -- $ROBREPRO_RUN_ARGS"; python -m robrepro train --spec {params.spec:q} "$@"'
            " --threads {threads} --checkpoint {params.checkpoint:q} --model-out {output.model:q}"
            " --result-out {output.result:q} > {log} 2>&1"
        )


rule evaluate:
    input:
        model=P.model("{paper}", "{run}"),
        code=job_code,
    output:
        P.evaluation("{paper}", "{run}", "{kind}", "{name}"),
    log:
        P.log("{paper}", "eval", "{run}", "{kind}", "{name}"),
    benchmark:
        P.evaluation_benchmark("{paper}", "{run}", "{kind}", "{name}")
    # Cluster profiles bundle evaluation jobs (group-components: eval=N) into fewer scheduler jobs.
    group:
        "eval"
    conda:
        "../../envs/robrepro.yaml"
    threads: kind_res("threads")
    resources:
        gpu=kind_res("gpu"),
        runtime=kind_res("runtime"),
        mem_mb=kind_res("mem_mb"),
    params:
        spec=eval_spec_json,
        # Undeclared on purpose, as the training checkpoint: resumable state of long jobs.
        partial=lambda wildcards, output: P.partial(output[0]),
    shell:
        on_failure(
            'eval "set -- $ROBREPRO_RUN_ARGS"; python -m robrepro evaluate --spec {params.spec:q} --model {input.model:q} "$@"'
            " --threads {threads} --partial {params.partial:q} --out {output:q} > {log} 2>&1"
        )


rule standalone:
    input:
        data=job_manifest,
        code=job_code,
    output:
        P.standalone("{paper}", "{kind}", "{name}"),
    log:
        P.log("{paper}", "jobs", "{kind}", "{name}"),
    benchmark:
        P.standalone_benchmark("{paper}", "{kind}", "{name}")
    conda:
        "../../envs/robrepro.yaml"
    threads: kind_res("threads")
    resources:
        gpu=kind_res("gpu"),
        runtime=kind_res("runtime"),
        mem_mb=kind_res("mem_mb"),
    params:
        spec=standalone_spec_json,
        partial=lambda wildcards, output: P.partial(output[0]),
    shell:
        on_failure(
            'eval "set -- $ROBREPRO_RUN_ARGS"; python -m robrepro evaluate --spec {params.spec:q} "$@"'
            " --threads {threads} --partial {params.partial:q} --out {output:q} > {log} 2>&1"
        )
