"""The Snakemake workflow end to end, at smoke tier, in a temporary copy of the repository."""

import shutil
import subprocess
import sys
import time

import pytest
import yaml

from robrepro.results import load_result

pytestmark = pytest.mark.slow


def snakemake(cwd, *args, configs=(), timeout=900):
    # Targets and flags first: --configfile takes every following word as a file.
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "config/smoke.yaml", "local.yaml", *configs],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, repo_root, data_root):
    """A copy of the workflow (the package itself is the installed one) with data from the mirror."""
    wd = tmp_path_factory.mktemp("wf")
    shutil.copy(repo_root / "Snakefile", wd)
    shutil.copytree(repo_root / "workflow", wd / "workflow")
    shutil.copytree(repo_root / "config", wd / "config")
    shutil.copytree(repo_root / "envs", wd / "envs")
    (wd / "src").symlink_to(repo_root / "src")
    (wd / "local.yaml").write_text(yaml.safe_dump({"data": {"mirrors": [str(data_root)], "download": False}}))
    return wd


@pytest.fixture(scope="module")
def smoke_run(workdir):
    t0 = time.time()
    res = snakemake(workdir)
    assert res.returncode == 0, res.stderr[-5000:]
    return res, time.time() - t0


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table as rule -> count."""
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
    assert job_counts(res.stdout + res.stderr) == {"evaluate": fig1_jobs, "node_fig1": 1, "all": 1}


def test_report_lists_figures_and_tables(workdir, smoke_run):
    res = snakemake(workdir, "--report", "report.zip", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    import zipfile

    names = zipfile.ZipFile(workdir / "report.zip").namelist()
    plan_targets = ["node_fig1.png", "node_table1.csv", "node_clean.csv", "gm_table3.csv", "gm_fig3.png", "gm_fig4.png"]
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
