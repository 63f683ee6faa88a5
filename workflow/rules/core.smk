# Rules shared by every paper: datasets, training, attack evaluation. Their specs come from the
# plan (robrepro.plan) as JSON params, so a changed setting re-runs exactly the jobs it affects.


rule prepare_data:
    output:
        "results/data/{dataset}.json",
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../../envs/robrepro.yaml"
    resources:
        runtime=60,
    params:
        args=data_args,
    shell:
        "python -m robrepro prepare-data --dataset {wildcards.dataset} {params.args} --out {output} > {log} 2>&1"


rule train:
    input:
        data=dataset_manifest,
        code=TRAIN_CODE,
    output:
        model="results/{paper}/models/{run}/model.pt",
        result="results/{paper}/models/{run}/train.json",
    log:
        "results/logs/{paper}/train/{run}.log",
    benchmark:
        "results/benchmarks/{paper}/train/{run}.tsv"
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
        checkpoint="results/{paper}/checkpoints/{run}.pt",
        root=config["data"]["root"],
        device=config["device"],
    shell:
        "python -m robrepro train --spec {params.spec:q} --data-root {params.root:q} --device {params.device}"
        " --threads {threads} --checkpoint {params.checkpoint:q} --model-out {output.model:q}"
        " --result-out {output.result:q} > {log} 2>&1"


rule attack:
    input:
        model="results/{paper}/models/{run}/model.pt",
        code=ATTACK_CODE,
    output:
        "results/{paper}/eval/{run}/{attack}.json",
    log:
        "results/logs/{paper}/attack/{run}/{attack}.log",
    benchmark:
        "results/benchmarks/{paper}/attack/{run}/{attack}.tsv"
    # Cluster profiles bundle evaluation jobs (group-components: eval=N) into fewer scheduler jobs.
    group:
        "eval"
    conda:
        "../../envs/robrepro.yaml"
    threads: res("attack", "threads")
    resources:
        gpu=res("attack", "gpu"),
        runtime=res("attack", "runtime"),
        mem_mb=res("attack", "mem_mb"),
    params:
        spec=eval_spec_json,
        root=config["data"]["root"],
        device=config["device"],
    shell:
        "python -m robrepro attack --spec {params.spec:q} --model {input.model:q} --data-root {params.root:q}"
        " --device {params.device} --threads {threads} --out {output:q} > {log} 2>&1"


rule verify:
    input:
        model="results/{paper}/models/{run}/model.pt",
        code=VERIFY_CODE,
    output:
        "results/{paper}/verify/{run}.json",
    log:
        "results/logs/{paper}/verify/{run}.log",
    benchmark:
        "results/benchmarks/{paper}/verify/{run}.tsv"
    # Cluster profiles bundle evaluation jobs (group-components: eval=N) into fewer scheduler jobs.
    group:
        "eval"
    conda:
        "../../envs/robrepro.yaml"
    threads: res("attack", "threads")
    resources:
        gpu=res("attack", "gpu"),
        runtime=res("attack", "runtime"),
        mem_mb=res("attack", "mem_mb"),
    params:
        spec=verify_spec_json,
        root=config["data"]["root"],
        device=config["device"],
    shell:
        "python -m robrepro verify --spec {params.spec:q} --model {input.model:q} --data-root {params.root:q}"
        " --device {params.device} --threads {threads} --out {output:q} > {log} 2>&1"
