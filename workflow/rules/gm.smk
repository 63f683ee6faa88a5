# GM: GM-CROWN-IBP (Liang et al., FITEE 2023) against IBP and CROWN-IBP.
# Tables and figures, each a named target: snakemake gm_table3 | gm_fig3 | gm_fig4.


rule gm_table3:
    input:
        verify=PLAN.verify_files("gm", "table3", "nominal"),
        code=REPORT_CODE,
    output:
        csv=report(
            "results/gm/tables/table3.csv",
            caption="../report/gm_table3.rst",
            category="GM",
            subcategory="Table 3",
            labels={"item": "Table 3", "content": "standard and verified errors"},
        ),
        md="results/gm/tables/table3.md",
        tex="results/gm/tables/table3.tex",
    log:
        "results/logs/gm/report/table3.log",
    conda:
        "../../envs/robrepro.yaml"
    params:
        table=json_param({"settings": config["gm"]["table3"]["settings"], "compare_with": config["gm"]["eval"]["compare_with"]}),
    shell:
        "python -m robrepro report gm_table3 {input.verify:q} --params {params.table:q} --out {output:q} > {log} 2>&1"


rule gm_fig3:
    input:
        verify=PLAN.verify_files("gm", "table3"),
        code=REPORT_CODE,
    output:
        png=report(
            "results/gm/figures/fig3.png",
            caption="../report/gm_fig3.rst",
            category="GM",
            subcategory="Fig. 3",
            labels={"item": "Fig. 3", "content": "verified error vs eps (drawdown)"},
        ),
        pdf="results/gm/figures/fig3.pdf",
        csv="results/gm/figures/fig3.csv",
    log:
        "results/logs/gm/report/fig3.log",
    conda:
        "../../envs/robrepro.yaml"
    shell:
        "python -m robrepro report gm_fig3 {input.verify:q} --out {output:q} > {log} 2>&1"


rule gm_fig4:
    input:
        verify=PLAN.variant_files("gm"),
        code=REPORT_CODE,
    output:
        png=report(
            "results/gm/figures/fig4.png",
            caption="../report/gm_fig4.rst",
            category="GM",
            subcategory="Fig. 4",
            labels={"item": "Fig. 4", "content": "GM ablations"},
        ),
        pdf="results/gm/figures/fig4.pdf",
        csv="results/gm/figures/fig4.csv",
    log:
        "results/logs/gm/report/fig4.log",
    conda:
        "../../envs/robrepro.yaml"
    shell:
        "python -m robrepro report gm_fig4 {input.verify:q} --out {output:q} > {log} 2>&1"
