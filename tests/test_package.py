"""The package installs: a wheel built from the repository holds every file the package reads, and
from a fresh environment (no access to the repository's src/) it validates the configuration and
plans every job of the paper tier. The conda environment file is self-contained, as Snakemake
copies it before creating the environment."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import yaml


def _build_wheel(repo_root: Path, tmp_path: Path) -> Path:
    # From a copy: a build in place would leave build/ and *.egg-info in the checkout.
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, tree / name)
    shutil.copytree(repo_root / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # The build backend called directly, as `pip wheel --no-build-isolation` would (no index needed).
    code = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=tree, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp_path / "dist" / res.stdout.strip().splitlines()[-1]


def test_the_wheel_holds_every_data_file_installs_validates_and_plans(repo_root, tmp_path):
    wheel = _build_wheel(repo_root, tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    pkg = repo_root / "src"
    data = sorted(str(f.relative_to(pkg)) for f in (pkg / "robrepro").rglob("*") if f.is_file() and f.suffix not in (".py", ".pyc"))
    assert any(d.endswith(".schema.yaml") for d in data) and any(d.endswith(".claims.yaml") for d in data)
    assert not [d for d in data if d not in names], "data files missing from the wheel"

    # A fresh environment with the wheel; the pinned stack comes from this one's site-packages,
    # added by a .pth after the environment's own (so the wheel's robrepro comes first).
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    py = env / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)]
    res = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    site = Path(
        subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    )
    (site / "_project_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert (env / "bin" / "robrepro").is_file()

    cfg = repo_root / "config"
    script = textwrap.dedent(
        f"""
        import robrepro
        assert robrepro.__file__.startswith({str(env)!r}), robrepro.__file__
        from robrepro.cli import main
        main(["validate-config", {str(cfg / "config.yaml")!r}, {str(cfg / "smoke.yaml")!r}])
        from robrepro import tables_figures as reporting, verdicts
        from robrepro.config import load
        from robrepro.plan import Plan
        plan = Plan(load({str(cfg / "config.yaml")!r}))
        claims = sum(len(verdicts.load_claims(p) or []) for p in plan.active_papers())
        published = sum(len(reporting.published(p)) for p in plan.active_papers())
        print("planned", len(plan.runs), len(plan.jobs), len(plan.all_targets()), claims, published)
        """
    )
    # -I: no PYTHONPATH (the tests run with src/ on it), no user site; outside the repository.
    res = subprocess.run([py, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "valid (smoke tier)" in res.stdout
    runs, jobs, targets, claims, published = map(int, res.stdout.split("planned", 1)[1].split())
    assert runs > 50 and jobs > 100 and targets > 20 and claims > 0 and published > 0, res.stdout


def _requirements(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def test_the_conda_env_is_self_contained_and_its_post_deploy_finds_the_checkout(repo_root, tmp_path):
    """As Snakemake does it (--sdm conda): the env file and its post-deploy script are copied to
    .snakemake/conda/<hash>.*, the environment is created from the copy, the script runs inside it
    from the working directory. conda itself is not needed: a bare environment stands in for the one
    conda would create (the pinned stack reached through a .pth, as pip would have installed it)."""
    rules = "\n".join(f.read_text() for f in (repo_root / "workflow" / "rules").glob("*.smk"))
    named = set(re.findall(r'^\s+conda:\s*\n\s+"([^"]+)"', rules, flags=re.M))
    assert named == {"../../envs/robrepro.yaml"}, named
    conda_dir = tmp_path / ".snakemake" / "conda"
    conda_dir.mkdir(parents=True)
    copy = conda_dir / "0123abcd.yaml"
    shutil.copy(repo_root / "envs" / "robrepro.yaml", copy)
    env = yaml.safe_load(copy.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # Only pinned names: no option or path that would be read relative to the copy.
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.]+", p) for p in pip), pip
    assert set(pip) == _requirements(repo_root / "envs" / "requirements.txt"), "envs/robrepro.yaml and envs/requirements.txt disagree"
    assert _requirements(repo_root / "envs" / "constraints.txt") <= set(pip)

    prefix = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, timeout=120)
    py = prefix / "bin" / "python"
    site = Path(
        subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    )
    (site / "zz_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after the script's own .pth
    script = conda_dir / "0123abcd.post-deploy.sh"
    shutil.copy(repo_root / "envs" / "robrepro.post-deploy.sh", script)
    run_env = {**os.environ, "PATH": f"{prefix / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": ""}
    bad = subprocess.run(["bash", str(script)], cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "run Snakemake from the repository root" in bad.stderr
    res = subprocess.run(["bash", str(script)], cwd=repo_root, env=run_env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    found = subprocess.run(
        [py, "-I", "-c", "import robrepro, torchattacks; print(robrepro.__file__)"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert found.returncode == 0, found.stderr[-3000:]
    assert Path(found.stdout.strip()) == repo_root / "src" / "robrepro" / "__init__.py"
