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


def test_smoke_workflow_builds_every_target(workdir, smoke_run):
    res, seconds = smoke_run
    for f in [
        "figures/fig1.png",
        "figures/fig1.pdf",
        "figures/fig1.csv",
        "tables/table1.csv",
        "tables/table1.md",
        "tables/table1.tex",
        "tables/clean.csv",
        "tables/clean.md",
        "tables/clean.tex",
    ]:
        assert (workdir / "results/node" / f).stat().st_size > 0, f
    md = (workdir / "results/node/tables/table1.md").read_text()
    assert "SYNTHETIC DATA" in md and "| synthetic |" in md and "| real |" in md
    import pandas as pd

    t1 = pd.read_csv(workdir / "results/node/tables/table1.csv")
    assert len(t1) == 2 * 2 * 2 * 4  # datasets x attacks x models x columns
    assert set(t1.data) == {"real", "synthetic"}
    assert t1.published.notna().all()
    # PGD never leaves a model more robust than FGSM at the same radius.
    wide = t1.pivot_table(index=["dataset", "model", "column"], columns="attack", values="reproduced")
    assert (wide["PGD"] <= wide["FGSM"] + 1e-9).all()
    ev = load_result(workdir / "results/node/eval/t1-mnist-odenet/pgd.json", "attack")
    assert ev["nfe_mean"] and ev["nfe_mean"] >= 7
    assert ev["provenance"]["data_source"] == "real"
    assert ev["provenance"]["spec"]["tier"] == "smoke"
    print(f"smoke workflow: {seconds:.0f} s")


def test_gm_outputs_are_consistent(workdir, smoke_run):
    import pandas as pd

    for f in ["tables/table3.csv", "tables/table3.md", "tables/table3.tex", "figures/fig3.png", "figures/fig3.pdf", "figures/fig4.png", "figures/fig4.pdf"]:
        assert (workdir / "results/gm" / f).stat().st_size > 0, f
    t3 = pd.read_csv(workdir / "results/gm/tables/table3.csv")
    cert = t3[t3.method != "nominal"]
    assert set(cert.method) == {"ibp", "crown_ibp", "gm_crown_ibp"}
    # Verified error (an upper bound of the robust error) is never below the attack error (a lower bound).
    for b in ("ibp", "crown_ibp"):
        assert (cert[f"verified_err_{b}"] >= cert.pgd_err - 1e-9).all()
    assert set(t3[t3.dataset == "cifar10"].data) == {"synthetic"} and set(t3[t3.dataset == "mnist"].data) == {"real"}
    assert t3[t3.method == "nominal"].std_err_published.tolist() and t3.std_err_published.notna().any()
    fig4 = pd.read_csv(workdir / "results/gm/figures/fig4.csv")
    assert set(fig4.panel) == {"(a) weight types", "(b) decreasing weights", "(c) robustness size N"}


def test_second_run_has_nothing_to_do(workdir, smoke_run):
    res = snakemake(workdir, "-n")
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_one_figure_rebuilds_alone(workdir, smoke_run):
    (workdir / "results/node/figures/fig1.png").unlink()
    res = snakemake(workdir, "node_fig1")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "1 of 1 steps (100%) done" in out
    assert (workdir / "results/node/figures/fig1.png").exists()


def test_changed_setting_reruns_only_what_it_affects(workdir, smoke_run):
    (workdir / "more.yaml").write_text(yaml.safe_dump({"node": {"table1": {"table_eps": {"mnist": [0.1, 0.2, 0.3, 0.4]}}, "fig1": {"eps": "4/255"}}}))
    res = snakemake(workdir, "-n", configs=["more.yaml"])
    out = res.stdout + res.stderr
    assert res.returncode == 0
    # Only the Fig. 1 attacks (11) and the figure change; no training re-runs.
    assert "train " not in out.split("Job stats")[1].split("total")[0]
    assert "attack" in out and "node_fig1" in out


def test_report_lists_figures_and_tables(workdir, smoke_run):
    res = snakemake(workdir, "--report", "report.zip", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (workdir / "report.zip").stat().st_size > 10_000


def test_lint_is_clean(repo_root):
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/smoke.yaml"], cwd=repo_root, capture_output=True, text=True, timeout=300
    )
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr, res.stdout + res.stderr


def test_every_table_and_figure_is_a_named_target(repo_root):
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-target-rules", "--configfile", "config/smoke.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    names = set(res.stdout.split())
    assert {"all", "node_fig1", "node_table1", "node_clean", "gm_table3", "gm_fig3", "gm_fig4"} <= names
