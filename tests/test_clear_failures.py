"""What a user sees when something cannot run: a target of another tier, a configuration file
outside config/, a job that fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from robrepro.cli import main
from robrepro.failures import RERUN_VAR, rerun_args
from robrepro.tier_targets import absent_message

REPO = Path(__file__).resolve().parents[1]


def test_a_target_of_other_tiers_names_them(tmp_path):
    # node_fig1 is built at the smoke and paper tiers, not at lite (config/papers/node.lite.yaml).
    msg = absent_message("node_fig1", {"tier": "lite"}, REPO / "config", tmp_path)
    assert "not built at the lite tier" in msg and "smoke and paper tiers build it" in msg
    assert "--configfile config/smoke.yaml" in msg
    assert "no target of any tier" in absent_message("node_fig9", {"tier": "lite"}, REPO / "config", tmp_path)


def test_validate_config_composes_as_snakemake(tmp_path, monkeypatch, capsys):
    """A file outside config/ is checked on top of config/config.yaml with config/papers/, as
    Snakemake composes it, not alone with the (absent) paper files beside it."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("tier: lite\ngm: {fig4: {enabled: false}}\n")
    monkeypatch.chdir(REPO)
    main(["validate-config", str(mine)])
    out = capsys.readouterr().out
    assert out.startswith("valid (lite tier)")
    assert f"composed {Path('config', 'config.yaml')} + {mine}" in out and str(Path("config", "papers")) in out


def test_a_failed_job_prints_its_log_tail_and_the_rerun_command(tmp_path):
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            from robrepro.failures import on_failure

            rule boom:
                output: "out/boom.txt"
                log: "boom.log"
                shell: on_failure("for i in $(seq 1 40); do echo line$i; done > {log}; false")
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), RERUN_VAR: rerun_args(["my.yaml"])}
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    # The job itself fails with its command's status (not only Snakemake, for a missing output).
    assert res.returncode != 0 and "returned non-zero exit status 1" in res.stderr
    err = res.stderr
    assert "failed (exit 1); last 30 lines of boom.log:" in err
    assert "line11\n" in err and "line40\n" in err and "line10\n" not in err
    assert "rerun: snakemake out/boom.txt --cores 1 --configfile my.yaml" in err


def test_a_failed_script_rule_says_the_same(tmp_path):
    """A ``script:`` rule (the report, the cost model) through failures.logged_script: its traceback in
    its log, the log's tail and the rerun command on the terminal, a failed job."""
    (tmp_path / "boom.py").write_text(
        textwrap.dedent(
            """
            import sys
            from robrepro.failures import logged_script

            with logged_script(snakemake.log[0], snakemake.output) as log:
                for i in range(1, 41):
                    print(f"line{i}", file=log)
                print("written before the failure", file=sys.stderr)
                raise RuntimeError("no tables to read")
            """
        )
    )
    (tmp_path / "Snakefile").write_text('rule boom:\n    output: "out/boom.html"\n    log: "boom.log"\n    script: "boom.py"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), RERUN_VAR: rerun_args(["my.yaml"])}
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    err = res.stderr
    assert res.returncode != 0 and "failed (exit 1); last 30 lines of boom.log:" in err
    assert "RuntimeError: no tables to read" in err and "rerun: snakemake out/boom.html --cores 1 --configfile my.yaml" in err
    log = (tmp_path / "boom.log").read_text()
    assert log.startswith("line1\n") and "written before the failure" in log and "Traceback" in log


def test_snakemake_names_the_tiers_of_a_target_absent_at_lite(repo_root):
    """The workflow's own answer, on a real dry run (not Snakemake's "No rule to produce")."""
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "node_fig1", "--configfile", "config/lite.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "No rule to produce" not in out
    assert "node_fig1 is not built at the lite tier" in out and "smoke and paper tiers build it" in out
