# Every table and figure of every paper, as a named rule: generated from the targets each paper
# module declares (robrepro.papers), so adding a table is a declaration there, not a rule here.
# A paper's rule `<paper>` builds all of its tables and figures.


for _t in PLAN.targets.values():
    _caption = Path(workflow.basedir) / "workflow" / "report" / _t.paper / f"{_t.name}.rst"

    rule:
        name:
            _t.name
        input:
            results=_t.inputs,
            code=report_code(_t.paper, _t.builder),
        output:
            **{
                ext: (
                    report(
                        path,
                        caption=str(_caption if _caption.exists() else Path(workflow.basedir) / "workflow" / "report" / "default.rst"),
                        category=PLAN.papers[_t.paper].title,
                        subcategory=_t.title,
                        labels={"target": _t.name, "content": _t.title},
                    )
                    if ext in ("png", "csv") and i == 0
                    else path
                )
                for i, (ext, path) in enumerate(_t.outputs.items())
            },
        log:
            P.log(_t.paper, "report", _t.name),
        # Tables and figures are instant: they run where Snakemake runs.
        localrule: True
        conda:
            "../../envs/robrepro.yaml"
        params:
            builder=_t.builder,
            spec=json_param(_t.params),
        shell:
            on_failure("python -m robrepro report {params.builder} --params {params.spec:q} --inputs {input.results:q} --out {output:q} > {log} 2>&1")


for _paper in PLAN.papers:

    rule:
        name:
            _paper
        input:
            [f for t in PLAN.paper_targets(_paper) for f in t.outputs.values()],
        localrule: True


# A bare name that no rule above produces (a target of another tier, or a typo): fails when the DAG
# is built (a dry run too) with the tiers that build it, instead of "No rule to produce <name>".
rule absent_target:
    input:
        target_of_other_tiers,
    output:
        "{target}",
    wildcard_constraints:
        target="[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+",
    localrule: True
