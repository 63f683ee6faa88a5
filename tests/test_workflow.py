"""The Snakemake workflow end to end, at smoke tier, in a temporary copy of the repository.

The copy holds its own copy of the package (``src/``, file times kept), which the Snakemake runs
import through PYTHONPATH: a test may change a module there to see what re-runs, never touching the
repository.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import snakemake  # the shared smoke run lives in conftest

from robrepro.results import load_result

pytestmark = pytest.mark.slow


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table as rule -> count ({} when there is nothing to do)."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    return {w[0]: int(w[1]) for w in (line.split() for line in table.splitlines()) if len(w) == 2 and w[1].isdigit()}


R = "results/smoke"


def test_smoke_workflow_builds_every_target(workdir, smoke_run):
    res, seconds = smoke_run
    for f in ["node/figures/node_fig1.", "node/tables/node_table1.", "node/tables/node_clean."]:
        for ext in ("png", "pdf", "csv") if "figures" in f else ("csv", "md", "tex"):
            assert (workdir / R / (f + ext)).stat().st_size > 0, f + ext
    md = (workdir / R / "node/tables/node_table1.md").read_text()
    assert "SYNTHETIC DATA" in md and "| synthetic |" in md and "| real |" in md
    import pandas as pd

    t1 = pd.read_csv(workdir / R / "node/tables/node_table1.csv")
    assert len(t1) == 2 * 2 * 2 * 4  # datasets x attacks x models x columns
    assert set(t1.data) == {"real", "synthetic"}
    assert t1.published.notna().all()
    # The worst case up to a radius is never above that radius attacked alone.
    assert (t1.worst_case_up_to_eps <= t1.reproduced + 1e-9).all()
    ev = load_result(workdir / R / "node/eval/t1-mnist-odenet/attack/pgd.json", "attack")
    assert ev["cost"]["nfe_per_clean_forward_mean"] >= 7 and ev["cost"]["attack_gradient_passes"] > 0
    assert ev["batch_dependence"]["n_checked"] > 0
    assert ev["provenance"]["data_source"] == "real"
    assert ev["provenance"]["spec"]["tier"] == "smoke"
    page = (workdir / R / "report/index.html").read_text()
    assert "smoke: no verdict" in page and (workdir / R / "report/REPORT.md").stat().st_size > 0
    print(f"smoke workflow: {seconds:.0f} s")


def test_gm_outputs_are_consistent(workdir, smoke_run):
    import pandas as pd

    for f in ["tables/gm_table3.csv", "tables/gm_table3.md", "tables/gm_table3.tex", "figures/gm_fig3.png", "figures/gm_fig3.pdf", "figures/gm_fig4.png"]:
        assert (workdir / R / "gm" / f).stat().st_size > 0, f
    t3 = pd.read_csv(workdir / R / "gm/tables/gm_table3.csv")
    cert = t3[t3.method != "nominal"]
    assert set(cert.method) == {"ibp", "crown_ibp", "gm_crown_ibp"}
    # Verified error (an upper bound of the robust error) is never below the attack error (a lower bound).
    for b in ("ibp", "crown_ibp"):
        assert (cert[f"verified_err_{b}"] >= cert.pgd_err - 1e-9).all()
    assert set(t3[t3.dataset == "cifar10"].data) == {"synthetic"} and set(t3[t3.dataset == "mnist"].data) == {"real"}
    assert t3[t3.method == "nominal"].std_err_published.notna().all()
    fig4 = pd.read_csv(workdir / R / "gm/figures/gm_fig4.csv")
    assert set(fig4.panel) == {"(a) weight types", "(b) decreasing weights", "(c) robustness size N"}
    # MNIST certified models see raw pixels (CROWN-IBP's recipe); CIFAR keeps its normalisation.
    spec = load_result(workdir / R / "gm/models/mnist-ibp-e0.1/train.json", "train")["provenance"]["spec"]
    assert spec["data"]["mean"] == [0.0] and spec["data"]["std"] == [1.0]


def test_second_run_has_nothing_to_do(workdir, smoke_run):
    res = snakemake(workdir, "-n")
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_one_figure_rebuilds_alone(workdir, smoke_run):
    (workdir / R / "node/figures/node_fig1.png").unlink()
    res = snakemake(workdir, "node_fig1")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "1 of 1 steps (100%) done" in out
    assert (workdir / R / "node/figures/node_fig1.png").exists()


def test_changed_setting_reruns_exactly_what_it_affects(workdir, smoke_run, repo_root):
    from robrepro.config import load
    from robrepro.plan import Plan

    plan = Plan(load(workdir / "config/config.yaml", workdir / "config/smoke.yaml"))
    fig1_jobs = sum(1 for (paper, _run, kind, _name), spec in plan.jobs.items() if paper == "node" and spec["labels"].get("h") is not None)
    assert plan.config["node"]["fig1"]["eps"] != "4/255"  # a real change, not the default again
    (workdir / "more.yaml").write_text(yaml.safe_dump({"node": {"fig1": {"eps": "4/255"}}}))
    res = snakemake(workdir, "-n", configs=["more.yaml"])
    assert res.returncode == 0, res.stderr[-3000:]
    # The reproduction report reads every figure: it is rebuilt too.
    assert job_counts(res.stdout + res.stderr) == {"evaluate": fig1_jobs, "node_fig1": 1, "report": 1, "all": 1}


def _plan(workdir):
    from robrepro.config import load
    from robrepro.plan import Plan

    return Plan(load(workdir / "config/config.yaml", workdir / "config/smoke.yaml"))


@pytest.mark.parametrize(
    "setting",
    [
        {"device": "auto"},
        {"data": {"root": "elsewhere"}},
        {"data": {"mirrors": []}},
        {"data": {"download": True}},
        {"resources": {"train": {"threads": 2, "runtime": 99, "mem_mb": 999}, "attack": {"threads": 2, "gpu": 1}}},
    ],
    ids=["device", "data.root", "data.mirrors", "data.download", "resources"],
)
def test_an_execution_setting_reruns_nothing(workdir, smoke_run, setting):
    """Where and how jobs run is not what they compute: over a finished run, the setting schedules
    nothing. Compared with a dry run without it, since tests before this one may have rebuilt a
    figure (test_one_figure_rebuilds_alone), which leaves the report due whatever the setting."""
    base = snakemake(workdir, "-n")
    assert base.returncode == 0, base.stderr[-3000:]
    (workdir / "execution.yaml").write_text(yaml.safe_dump(setting))
    res = snakemake(workdir, "-n", configs=["execution.yaml"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout + res.stderr) == job_counts(base.stdout + base.stderr), res.stdout[-3000:]
    assert not set(job_counts(res.stdout + res.stderr)) - {"report", "all"}, res.stdout[-3000:]


def predicted_reruns(plan, module: str) -> dict[str, int]:
    """Rule -> jobs that a change to ``module`` re-runs, from the import graph: the jobs whose code
    imports it, and every job downstream of them (here: the tables and figures reading their
    results, the report reading every target)."""
    from robrepro.importgraph import job_modules

    name = "robrepro." + module.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    kinds = {k for k, kind in plan.kinds.items() if name in job_modules([kind.module])}
    assert name not in job_modules(["robrepro.engine"]), "a change that retrains: not a cheap case"
    rerun = {plan.job_file(*key): key for key in plan.jobs if key[2] in kinds}
    counts = {}
    for key in rerun.values():
        rule = "evaluate" if plan.kinds[key[2]].needs_model else "standalone"
        counts[rule] = counts.get(rule, 0) + 1
    targets = {t.name for t in plan.targets.values() if set(t.inputs) & rerun.keys() or name in job_modules([t.builder.partition(":")[0]])}
    report = bool(targets) or name in job_modules(["robrepro.report"], cli=False)
    return {**counts, **{t: 1 for t in targets}, **({"report": 1, "all": 1} if report else {})}


@pytest.mark.parametrize("module", ["evaluations/certified.py", "papers/gm.py", "tables_figures.py"])
def test_a_changed_module_reruns_exactly_the_jobs_that_import_it(workdir, smoke_run, module):
    """A module changed in the copy: the jobs the import graph says import it, and what depends on
    them, re-run; nothing else. (The graph itself, and the code stamps through which the rules
    declare it, are tested module by module in test_importgraph.)"""
    expected = predicted_reruns(_plan(workdir), module)
    assert expected.get("report")  # each case re-runs something
    f = workdir / "src/robrepro" / module
    text, st = f.read_text(), f.stat()
    try:
        f.write_text(text + "\n# a change\n")
        res = snakemake(workdir, "-n")
    finally:
        f.write_text(text)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout + res.stderr) == expected
    assert f.read_text() == text and f.stat().st_mtime_ns == st.st_mtime_ns  # restored for the other tests


def test_table_and_figure_builders_do_not_import_torch(workdir, smoke_run, tmp_path):
    """Each table and figure job's command, as the rule runs it, over the smoke run's results; the
    builders that compute with torch are named here (node_fig3: its threshold accuracies)."""
    computes_with_torch = {"node_fig3"}
    plan = _plan(workdir)
    code = "import json, sys\nfrom robrepro.cli import main\nmain(sys.argv[1:])\nprint('TORCH-IMPORTED', 'torch' in sys.modules)\n"
    for t in plan.targets.values():
        if t.name in computes_with_torch:
            continue
        outs = [str(tmp_path / f"{t.name}.{e}") for e in t.outputs]
        args = ["report", t.builder, "--params", json.dumps(t.params), "--inputs", *t.inputs, "--out", *outs]
        res = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(workdir / "src")},
        )
        assert res.returncode == 0, (t.name, res.stderr[-2000:])
        assert "TORCH-IMPORTED False" in res.stdout, t.name


def test_smoke_and_synthetic_outputs_carry_their_labels(workdir, smoke_run, monkeypatch, tmp_path):
    import pandas as pd

    from robrepro import tables_figures as reporting
    from robrepro.plan import builder

    plan = _plan(workdir)
    # Result files: every one says smoke tier, and synthetic exactly where its data were.
    results = [p for p in (workdir / R).rglob("*.json") if "/data/" not in str(p)]
    assert len(results) >= len(plan.jobs) + len(plan.runs)
    sources = set()
    for p in results:
        doc = json.loads(p.read_text())
        prov = doc["provenance"]
        assert prov["spec"]["tier"] == "smoke", p
        assert prov["data_source"] == prov["spec"]["data"]["source"], p
        sources.add((prov["spec"]["data"]["name"], prov["data_source"]))
    assert ("cifar10", "synthetic") in sources and ("mnist", "real") in sources
    # Tables: the smoke note everywhere; the synthetic note and rows where there are synthetic rows.
    captured = {}
    monkeypatch.setattr(reporting, "save_figure", lambda fig, outputs: captured.__setitem__("fig", fig))
    monkeypatch.chdir(workdir)
    for t in plan.targets.values():
        if t.kind == "table":
            md, tex = (workdir / t.outputs["md"]).read_text(), (workdir / t.outputs["tex"]).read_text()
            data = set(pd.read_csv(workdir / t.outputs["csv"])["data"])
            assert "SMOKE TIER" in md and "SMOKE TIER" in tex, t.name
            assert ("SYNTHETIC DATA" in md) == ("synthetic" in data) == ("SYNTHETIC DATA" in tex), t.name
        else:
            # Figure titles: rebuilt from the same results, the title is read from the figure itself.
            outs = {e: str(tmp_path / f"{t.name}.{e}") for e in t.outputs}
            builder(t.builder)(t.inputs, outs, **t.params)
            fig = captured.pop("fig")
            title = " ".join([fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes])
            data = set(pd.read_csv(workdir / t.outputs["csv"])["data"])
            assert "[smoke tier]" in title, (t.name, title)
            assert ("SYNTHETIC DATA" in title) == ("synthetic" in data), (t.name, title)
    assert any("synthetic" in set(pd.read_csv(workdir / t.outputs["csv"])["data"]) for t in plan.targets.values() if t.kind == "figure")


def test_report_lists_figures_and_tables(workdir, smoke_run):
    res = snakemake(workdir, "--report", "report.zip", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    import zipfile

    names = zipfile.ZipFile(workdir / "report.zip").namelist()
    plan_targets = ["node_fig1.png", "node_table1.csv", "node_clean.csv", "gm_table3.csv", "gm_fig3.png", "gm_fig4.png", "index.html"]
    for t in plan_targets:
        assert any(n.endswith(t) for n in names), t


def test_every_table_and_figure_is_a_named_target(repo_root):
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-target-rules", "--configfile", "config/smoke.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    names = set(res.stdout.split())
    from robrepro.config import load
    from robrepro.plan import Plan

    plan = Plan(load(repo_root / "config/config.yaml", repo_root / "config/smoke.yaml"))
    assert {"all", *plan.targets, *plan.papers} <= names


def test_the_report_job_does_not_import_torch(workdir, smoke_run, tmp_path):
    """The report rule's script, on the configuration Snakemake hands it (composed)."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(_plan(workdir).config))
    code = (
        "import json, sys\n"
        "from robrepro.report import build\n"
        f"build(json.load(open({str(cfg)!r})), {str(tmp_path / 'index.html')!r}, {str(tmp_path / 'REPORT.md')!r})\n"
        "print('TORCH-IMPORTED', 'torch' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(workdir / "src")}
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "TORCH-IMPORTED False" in res.stdout
