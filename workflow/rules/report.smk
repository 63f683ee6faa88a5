# The reproduction report: one self-contained page (and its Markdown) per tier that answers which
# results of the papers hold up. It reads every table and figure of the active papers, their claims
# files (src/robrepro/published/<paper>.claims.yaml) and the benchmark files of the jobs behind them;
# the builder is robrepro.report (robrepro.verdicts judges the claims). Names no paper.

REPORT = __import__("robrepro.report", fromlist=["outputs"]).outputs(P.root)


rule report:
    input:
        targets=PLAN.all_targets(),
        claims=[str(f) for p in PLAN.active_papers() if (f := SRC / "published" / f"{p}.claims.yaml").exists()],
        # The schema parts name the settings the papers do not give ([UNKNOWN]/[INF]).
        code=code_files(
            "robrepro.report",
            extra=(str(SRC / "schemas" / "config.schema.yaml"), *sorted(str(f) for f in (SRC / "papers").glob("*.schema.yaml"))),
            cli=False,
        ),
    output:
        html=report(
            REPORT["html"],
            caption="../report/report.rst",
            category="Reproduction report",
            labels={"target": "report", "content": "verdicts, tables and figures of every paper"},
        ),
        md=REPORT["md"],
    log:
        P.log("report", "report"),
    # A few seconds of reading CSV files: runs where Snakemake runs.
    localrule: True
    conda:
        "../../envs/robrepro.yaml"
    # The script gets the composed configuration (snakemake.config), as every rule sees it.
    script:
        "../scripts/report.py"
