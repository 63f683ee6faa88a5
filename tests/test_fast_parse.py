"""Parsing the workflow does not import torch: the composed configuration is kept between parses
(robrepro.composed), the job kinds are read from the source, and the plan, the import graph, the
code stamps and the report's module need no torch."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import copy_workflow

from robrepro import composed
from robrepro.config import ConfigError, compose, load


@pytest.fixture
def config_dir(tmp_path, repo_root):
    d = tmp_path / "config"
    shutil.copytree(repo_root / "config", d)
    return d


def _forbid_composing(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("composed again")

    monkeypatch.setattr("robrepro.config.compose", fail)


def test_a_kept_configuration_is_reused_until_its_inputs_change(tmp_path, config_dir, monkeypatch):
    cache = tmp_path / "cache"
    user = {"tier": "smoke", "device": "cpu"}
    first = composed.compose_cached(user, config_dir, cache)
    assert first == compose(user, config_dir)
    with monkeypatch.context() as m:
        _forbid_composing(m)
        assert composed.compose_cached(user, config_dir, cache) == first
    # A changed user setting, or a changed paper configuration file: composed (and validated) again.
    assert composed.compose_cached({**user, "seed": 3}, config_dir, cache)["seed"] == 3
    f = config_dir / "papers" / "node.smoke.yaml"
    f.write_text(f.read_text() + "\n# changed\n")
    with monkeypatch.context() as m:
        _forbid_composing(m)
        with pytest.raises(AssertionError, match="composed again"):
            composed.compose_cached(user, config_dir, cache)


def test_the_parse_that_composes_reads_as_the_parses_that_reuse(tmp_path, config_dir):
    """Same values and the same key order on a miss as on a hit: a rule's params built from a dict
    (a table's notes) would otherwise differ between the first parse and later ones, and re-run."""
    cache = tmp_path / "cache"
    for tier in ("smoke", "paper"):
        user = {"tier": tier}
        first = composed.compose_cached(user, config_dir, cache)
        again = composed.compose_cached(user, config_dir, cache)
        assert json.dumps(first) == json.dumps(again)


def test_the_key_covers_the_package_files(config_dir, monkeypatch, tmp_path):
    user = {"tier": "smoke"}
    pkg = tmp_path / "pkg"
    shutil.copytree(composed.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(composed, "PACKAGE_DIR", pkg)
    before = composed.key(user, config_dir)
    (pkg / "objectives" / "trades.py").write_text((pkg / "objectives" / "trades.py").read_text() + "\n")
    assert composed.key(user, config_dir) != before


def test_an_invalid_configuration_is_never_kept(tmp_path, config_dir):
    cache = tmp_path / "cache"
    for _ in range(2):
        with pytest.raises(ConfigError, match="seed"):
            composed.compose_cached({"tier": "smoke", "seed": "x"}, config_dir, cache)
    assert not cache.exists() or not list(cache.glob("*.json"))


def test_planning_from_a_kept_configuration_does_not_import_torch(tmp_path, repo_root):
    """What the rule files do once the configuration is kept: plan every job and target, read the
    job kinds, write every rule's code stamp, name the report's files."""
    cfg = tmp_path / "composed.json"
    cfg.write_text(json.dumps(load(repo_root / "config/config.yaml")))
    code = textwrap.dedent(
        f"""
        import json, os, sys
        from robrepro.composed import compose_cached
        from robrepro.codestamp import code_stamp
        from robrepro.plan import Plan
        import robrepro.report
        plan = Plan(json.load(open({str(cfg)!r})))
        root, stamps = os.path.dirname(robrepro.__file__), {str(tmp_path / "stamps")!r}
        for k in plan.kinds.values():
            code_stamp(stamps, [k.module], root)
        for t in plan.targets.values():
            code_stamp(stamps, [t.builder.partition(":")[0]], root)
        code_stamp(stamps, ["robrepro.engine"], root), code_stamp(stamps, ["robrepro.report"], root, cli=False)
        robrepro.report.outputs(plan.paths.root)
        print(len(plan.jobs), sorted(m for m in ("torch", "torchvision") if m in sys.modules))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    n_jobs, heavy = res.stdout.split(maxsplit=1)
    assert int(n_jobs) > 100 and heavy.strip() == "[]"


# Runs Snakemake in this process and says, when it exits, whether torch was imported.
SNAKEMAKE_REPORTING_TORCH = """
import atexit, runpy, sys
atexit.register(lambda: print("TORCH-IMPORTED", "torch" in sys.modules, file=sys.__stdout__))
sys.argv = ["snakemake", *sys.argv[1:]]
runpy.run_module("snakemake", run_name="__main__")
"""


def test_a_second_parse_of_the_workflow_does_not_import_torch(tmp_path, repo_root):
    wd = tmp_path / "wf"
    wd.mkdir()
    copy_workflow(repo_root, wd)
    args = [sys.executable, "-c", SNAKEMAKE_REPORTING_TORCH, "-n", "all", "--configfile", "config/smoke.yaml"]
    env = {**os.environ, "PYTHONPATH": str(wd / "src")}
    runs = [subprocess.run(args, cwd=wd, env=env, capture_output=True, text=True, timeout=600) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    # The first parse composes and validates the configuration (component checks import torch).
    assert "TORCH-IMPORTED True" in runs[0].stdout and "TORCH-IMPORTED False" in runs[1].stdout
