# NODE: "Towards Natural Robustness Against Adversarial Examples" (Chu, Wei, Zhao).
# Tables and figures, each a named target: snakemake node_fig1 | node_table1 | node_clean.


rule node_fig1:
    input:
        evals=PLAN.eval_files("node", "fig1"),
        code=REPORT_CODE,
    output:
        png=report(
            "results/node/figures/fig1.png",
            caption="../report/node_fig1.rst",
            category="NODE",
            subcategory="Fig. 1",
            labels={"item": "Fig. 1", "content": "accuracy vs step size h"},
        ),
        pdf="results/node/figures/fig1.pdf",
        csv="results/node/figures/fig1.csv",
    log:
        "results/logs/node/report/fig1.log",
    conda:
        "../../envs/robrepro.yaml"
    shell:
        "python -m robrepro report node_fig1 {input.evals:q} --out {output:q} > {log} 2>&1"


rule node_table1:
    input:
        evals=PLAN.eval_files("node", "table1"),
        code=REPORT_CODE,
    output:
        csv=report(
            "results/node/tables/table1.csv",
            caption="../report/node_table1.rst",
            category="NODE",
            subcategory="Table 1",
            labels={"item": "Table 1", "content": "robust accuracy, FGSM and PGD"},
        ),
        md="results/node/tables/table1.md",
        tex="results/node/tables/table1.tex",
    log:
        "results/logs/node/report/table1.log",
    conda:
        "../../envs/robrepro.yaml"
    params:
        table=json_param({"table_eps": config["node"]["table1"]["table_eps"]}),
    shell:
        "python -m robrepro report node_table1 {input.evals:q} --params {params.table:q} --out {output:q} > {log} 2>&1"


rule node_clean:
    input:
        evals=PLAN.eval_files("node", "table1"),
        code=REPORT_CODE,
    output:
        csv=report(
            "results/node/tables/clean.csv",
            caption="../report/node_clean.rst",
            category="NODE",
            subcategory="Clean accuracy",
            labels={"item": "Sec. 4.2", "content": "clean accuracy"},
        ),
        md="results/node/tables/clean.md",
        tex="results/node/tables/clean.tex",
    log:
        "results/logs/node/report/clean.log",
    conda:
        "../../envs/robrepro.yaml"
    shell:
        "python -m robrepro report node_clean {input.evals:q} --out {output:q} > {log} 2>&1"
